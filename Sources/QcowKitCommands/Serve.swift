// `qcowkit serve`: QEMU's QMP monitor over a block graph, for the block-job
// part of what qemu-system-x86_64 or qemu-storage-daemon would do. The
// command line takes QEMU's own spellings (ServeCommandLine in the QMP
// module), so scripts written for QEMU run unchanged.
import QMP

enum Serve {
    /// QMP's greeting and query-version: the QEMU release whose QMP this
    /// speaks, and QcowKit as the package.
    static let qmpVersion = QMPVersion(major: 7, minor: 2, micro: 0, package: "QcowKit \(QcowKit.version)")

    /// `arguments` start after the verb's name.
    static func run(_ arguments: [String]) throws {
        let configuration: ServeConfiguration
        do {
            configuration = try ServeCommandLine.parse(arguments)
        } catch let error as QMPServiceError {
            throw CommandFailure(error.message)
        }
        if configuration.wantsHelp {
            Terminal.print(Self.usage, terminator: "")
            return
        }
        let service: QMPService
        do {
            service = try QMPService(version: Self.qmpVersion)
        } catch {
            throw CommandFailure(error.message)
        }
        service.handleSignals()
        do {
            try service.configure(configuration)
        } catch let error as QMPServiceError {
            throw CommandFailure(error.message)
        }
        service.serve()
    }

    static let usage = """
        usage: qcowkit serve [options]
        Serves QMP over block devices, with QEMU's option spellings (one or two dashes):

        Block devices, opened in the order given:
          -blockdev driver=qcow2,node-name=N,file.driver=file,file.filename=PATH[,backing=NODE|null][,read-only=on]
          -blockdev '{"driver": "qcow2", ...}'     the same as JSON
          -drive file=PATH[,driver=qcow2][,node-name=N][,id=ID][,backing.node-name=N][,backing.backing=NODE]

        TLS credentials and NBD exports (qemu-storage-daemon's):
          -object tls-creds-x509,id=ID,dir=DIR,endpoint=server[,verify-peer=on|off] | tls-creds-psk,id=ID,dir=DIR,endpoint=server
          --nbd-server addr.type=unix,addr.path=PATH | addr.type=inet,addr.host=H,addr.port=P [,tls-creds=ID][,max-connections=N]
          --export [type=]nbd,id=ID,node-name=NODE[,name=NAME][,description=D][,writable=on][,writethrough=on][,allocation-depth=on]

        Monitors (QMP only; every connection to a listening socket is a client of its own):
          -qmp stdio | -qmp unix:PATH,server=on[,wait=off] | -qmp unix:PATH (connects to PATH)
          -qmp-pretty (the same, pretty-printed)
          -chardev stdio,id=ID | -chardev socket,id=ID,path=PATH,server=on[,wait=off]
          -chardev socket,id=ID,path=PATH (connects to PATH) | -chardev socket,id=ID,fd=N (a connected socket)
          -mon chardev=ID,mode=control[,pretty=on]    --monitor [chardev=]ID[,pretty=on] (qemu-storage-daemon's)
          -monitor none | -monitor null    (qemu-system's: no HMP monitor; other -monitor values are HMP, refused)
          -pidfile PATH                    written before any monitor client is greeted, removed at exit
          -qtest unix:PATH|stdio           qtest's channel (QEMUQtestMachine): every command answered as unknown

        Accepted and ignored (they only matter to a virtual machine):
          -S -nodefaults -nographic -display X -vga X -serial X -machine X -M X -accel X -name X
        Refused by name: -device (there are no guest devices).

        The service runs until the QMP command quit, SIGTERM or SIGINT; images are flushed and closed.

        """
}
