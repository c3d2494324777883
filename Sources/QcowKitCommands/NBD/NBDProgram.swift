// `qcowkit nbd` / qemu-nbd: serves one image over NBD as qemu-nbd 7.2 does.
// The order of qemu-nbd's main: options, the checks that need no image,
// --fork, listening, opening the image (with -s's temporary overlay), the
// export, the pid file, then serving until the last client that reached
// transmission leaves (unless -t) or a signal arrives.
import NBD
import QMP
import Qcow2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum NBDProgram {
    /// Runs qemu-nbd's command line (`arguments` after the program name);
    /// returns the exit status.
    static func main(_ arguments: [String]) -> Int32 {
        switch NBDOptions.parse(arguments) {
        case let .exit(status): return status
        case let .run(options):
            do {
                return try run(options)
            } catch let failure as CommandFailure {
                if !failure.message.isEmpty { Terminal.printError(ProgramName.prefixed(failure.message)) }
                return failure.status
            } catch {
                Terminal.printError(ProgramName.prefixed("\(error)"))
                return 1
            }
        }
    }

    private static func run(_ options: NBDOptions) throws -> Int32 {
        // qemu-nbd creates each --object as it reads the option.
        let objects = UserObjects()
        for object in options.objects {
            do { try objects.add(commandLine: object) } catch let error as QMPError { throw CommandFailure(error.desc) }
        }
        let tls = try checkTLS(options, objects: objects)
        if options.selinuxLabel != nil { throw CommandFailure("SELinux support not enabled in this binary") }
        if options.list {
            throw CommandFailure("-L/--list: listing another server's exports is not supported by qcowkit")
        }
        if options.disconnect { return try disconnect(options.file ?? "") }
        if options.offset != 0 { throw CommandFailure("-o/--offset is not supported by qcowkit") }

        // -c forks too, unless -v keeps it in the foreground.
        let daemon = options.fork || (options.device != nil && !options.verbose) ? try NBDDaemon.fork() : nil
        let signals = TerminationSignals()
        // -c without -k listens where qemu-nbd does (SOCKET_PATH), not on TCP.
        let socketPath = options.socketPath ?? options.device.map { device in
            "/var/lock/qemu-nbd-" + (device.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        }
        let address: NBDListenAddress = socketPath.map { .unix(path: $0) }
            ?? .inet(host: options.bind ?? "0.0.0.0", port: try port(options.port ?? "10809"))
        var configuration = NBDServerConfiguration()
        configuration.maxConnections = options.shared
        // qemu-nbd's: SOMAXCONN for -t or -e 0, else -e's number (at most SOMAXCONN).
        let somaxconn = Int(SOMAXCONN)
        configuration.listenBacklog = Int32(options.persistent || options.shared == 0 ? somaxconn : min(options.shared, somaxconn))
        configuration.handshakeTimeout = 10  // NBD_DEFAULT_HANDSHAKE_MAX_SECS (qemu-nbd 7.2.14 on)
        configuration.tls = tls
        let persistent = options.persistent
        configuration.onClientClosed = { negotiated in
            if negotiated && !persistent { signals.clientLeft() }
        }
        configuration.log = { Terminal.printError(ProgramName.prefixed($0)) }
        let server = NBDServer(configuration: configuration)
        do {
            try server.listen(on: address, accepting: false)
        } catch {
            throw CommandFailure("\(error)")
        }
        if options.imageOpts && options.format != nil { throw CommandFailure("--image-opts and -f are mutually exclusive") }
        let opened = try NBDImage.open(options)
        defer { opened.close() }
        let bitmaps = try options.bitmaps.map { name in
            do {
                return try NBDExportBitmap.lookup(name, from: opened.image, readOnlyExport: options.readOnly)
            } catch let error as NBDServerError {
                throw CommandFailure(error.description)
            }
        }
        let backend = ImageExportBackend(image: opened.image, readOnly: options.readOnly,
                                         discardUnmap: options.discardUnmap, detectZeroes: options.detectZeroes,
                                         writeThrough: options.writeThrough)
        try server.addExport(NBDExport(name: options.exportName, description: options.description, backend: backend,
                                       allocationDepth: options.allocationDepth,
                                       multiConnection: options.shared != 1, bitmaps: bitmaps))
        let kernelClient = try options.device.map { device in
            try KernelClientThread.start(device: device, socket: socketPath ?? "", image: options.file ?? "",
                                         verbose: options.verbose && !options.fork,
                                         detach: options.fork ? nil : daemon)
        }
        server.startAccepting()
        if let pidFile = options.pidFile { try NBDDaemon.writePIDFile(pidFile) }
        guard chdir("/") == 0 else {
            throw CommandFailure("Could not chdir to root directory: \(String(cString: strerror(errno)))")
        }
        if options.fork { daemon?.detach() }
        signals.waitForTermination()
        server.stop()
        // With -c the status is the kernel client's.
        guard let kernelClient else { return 0 }
        return kernelClient.waitForResult() ? 0 : 1
    }

    /// -d: asks the kernel to disconnect the device (nbd_disconnect; the
    /// ioctls' failures are not reported, as in qemu-nbd).
    private static func disconnect(_ device: String) throws -> Int32 {
        let fd = open(device, O_RDWR)
        guard fd >= 0 else {
            throw CommandFailure("Cannot open \(device): \(String(cString: strerror(errno)))")
        }
        KernelNBDClient.disconnect(device: fd)
        close(fd)
        Terminal.print("\(device) disconnected")
        return 0
    }

    /// The tcp port, as a service name or number getaddrinfo takes.
    private static func port(_ text: String) throws -> UInt16 {
        guard let number = UInt32(text) else { throw CommandFailure("address resolution failed for \(text)") }
        return UInt16(truncatingIfNeeded: number)
    }

    /// qemu-nbd's TLS checks, then the server's credentials (--tls-creds).
    private static func checkTLS(_ options: NBDOptions, objects: UserObjects) throws -> (any NBDTLSProvider)? {
        guard let id = options.tlsCreds else {
            if options.tlsAuthz != nil { throw CommandFailure("--tls-authz is not permitted without --tls-creds") }
            if options.tlsHostname != nil { throw CommandFailure("--tls-hostname is not permitted without --tls-creds") }
            return nil
        }
        if options.device != nil { throw CommandFailure("TLS is not supported with a host device") }
        if options.tlsAuthz != nil && options.list { throw CommandFailure("TLS authorization is incompatible with export list") }
        if options.tlsHostname != nil && !options.list { throw CommandFailure("TLS hostname is only supported with export list") }
        if let authz = options.tlsAuthz {
            throw CommandFailure("--tls-authz \(authz): authorization objects are not supported by qcowkit")
        }
        do {
            let credentials = try objects.tlsCredentials(id: id, endpoint: options.list ? .client : .server)
            return try TLSCredentialsProvider(credentials)
        } catch let error as QMPError {
            throw CommandFailure("Failed to get TLS creds: \(error.desc)")
        }
    }
}
