import Testing
import BlockGraph
@testable import QMP

/// `qcowkit serve`'s QEMU-style command line.
@Suite struct ServeCommandLineTests {
    private func failure(_ arguments: [String]) -> String? {
        do { _ = try ServeCommandLine.parse(arguments); return nil } catch { return "\(error)" }
    }

    @Test func iotest191Part1() throws {
        let configuration = try ServeCommandLine.parse([
            "-nodefaults", "-display", "none", "-machine", "accel=qtest", "-qmp-pretty", "stdio",
            "--blockdev", "driver=qcow2,file.driver=file,file.filename=/d/t.qcow2.base,node-name=base",
            "--blockdev", "driver=qcow2,file.driver=file,file.filename=/d/t.qcow2.mid,node-name=mid,backing=base",
        ])
        #expect(configuration.monitors == [.init(origin: "-qmp-pretty stdio", endpoint: .stdio, pretty: true)])
        #expect(configuration.blockDevices.count == 2)
        #expect(configuration.blockDevices[1].origin
            == "--blockdev driver=qcow2,file.driver=file,file.filename=/d/t.qcow2.mid,node-name=mid,backing=base")
        #expect(configuration.blockDevices[1].device == .blockdev(BlockdevOptions(
            driver: "qcow2", nodeName: "mid",
            file: .options(BlockdevOptions(driver: "file", filename: "/d/t.qcow2.mid")), backing: .node("base"))))
    }

    @Test func monitorsInEverySpelling() throws {
        let configuration = try ServeCommandLine.parse([
            "-qmp", "unix:/run/a.sock,server=on,wait=off",
            "-qmp", "unix:/run/b.sock,server,nowait",
            "--chardev", "socket,path=/run/c.sock,server=on,wait=off,id=c", "--monitor", "chardev=c",
            "-chardev", "stdio,id=s", "-mon", "s,mode=control,pretty=on",
            "--chardev=socket,id=d,path=/run/d.sock,server=on", "-mon", "chardev=d,mode=control",
        ])
        #expect(configuration.monitors.map(\.endpoint) == [
            .unixSocket(path: "/run/a.sock"),
            .unixSocket(path: "/run/b.sock"),
            .unixSocket(path: "/run/c.sock"),
            .stdio,
            .unixSocket(path: "/run/d.sock"),
        ])
        #expect(configuration.monitors.map(\.pretty) == [false, false, false, true, false])
    }

    @Test func blockdevAsJSONAndDriveOrder() throws {
        let configuration = try ServeCommandLine.parse([
            "-drive", "file=/a,if=none", "-blockdev", #"{"driver": "file", "node-name": "f", "filename": "/b"}"#,
            "-drive", "file=/c",
        ])
        #expect(configuration.blockDevices.map(\.device) == [
            .drive(try DriveOptions(QemuOpts("file=/a"), index: 0)),
            .blockdev(.file("/b", nodeName: "f")),
            .drive(try DriveOptions(QemuOpts("file=/c"), index: 1)),
        ])
        #expect(try ServeCommandLine.parse(["-drive", "file=/c"]).blockDevices.first?.device
            == .drive(DriveOptions(QemuOpts("file=/c"), index: 0)))
    }

    @Test func errorsNameTheOptionAsGiven() {
        #expect(failure(["--blockdev", "qcow2,file.filename=/x"]) == "--blockdev qcow2,file.filename=/x: Parameter 'file.driver' is missing")
        #expect(failure(["-blockdev", "driver=qcow2,,x"]) == "-blockdev driver=qcow2,,x: Parameter 'driver' does not accept value 'qcow2,x'")
        #expect(failure(["-blockdev", "driver=qcow2,node-name=x,file=f,read-only=maybe"])
            == "-blockdev driver=qcow2,node-name=x,file=f,read-only=maybe: Parameter 'read-only' expects 'on' or 'off'")
        #expect(failure(["-blockdev", #"{"driver":"qcow2""#]) == #"-blockdev {"driver":"qcow2": JSON parse error, premature EOI"#)
        #expect(failure(["-blockdev", ""]) == "-blockdev : Parameter 'driver' is missing")
        #expect(failure(["-blockdev"]) == "-blockdev: requires an argument")
        #expect(failure(["--bogus"]) == "--bogus: invalid option")
        #expect(failure(["image.qcow2"]) == "Unexpected argument: image.qcow2")
        #expect(failure(["-qmp", "stdio", "-qmp-pretty", "stdio"]) == "-qmp-pretty stdio: cannot use stdio by multiple character devices")
        #expect(failure(["-qmp", "bogus"]) == "-qmp bogus: 'bogus' is not a valid char driver")
        #expect(failure(["-qmp", "unix:/x,wait=off"]) == "-qmp unix:/x,wait=off: 'wait' option is incompatible with socket in client connect mode")
        #expect(failure(["-chardev", "socket,id=m,fd=3,server=on"])
            == "-chardev socket,id=m,fd=3,server=on: chardev: a listening socket from 'fd' is not supported here: use path=PATH,server=on")
        #expect(failure(["-chardev", "socket,id=m,fd=3,path=/x"]) == "-chardev socket,id=m,fd=3,path=/x: chardev: socket takes 'path' or 'fd', not both")
        #expect(failure(["--chardev", "stdio"]) == "--chardev stdio: chardev: no id specified")
        #expect(failure(["--chardev", "bogus,id=a"]) == "--chardev bogus,id=a: 'bogus' is not a valid char driver name")
        #expect(failure(["--chardev", "stdio,id=a,foo=1"]) == "--chardev stdio,id=a,foo=1: Invalid parameter 'foo'")
        #expect(failure(["--monitor", "nochar"]) == "--monitor nochar: chardev \"nochar\" not found")
        #expect(failure(["-chardev", "stdio,id=a", "-mon", "a"]) == "-mon a: Only QMP is supported")
        #expect(failure(["--chardev", "stdio,id=a", "--monitor", "a,pretty=maybe"])
            == "--monitor a,pretty=maybe: Parameter 'pretty' expects 'on' or 'off'")
        #expect(failure(["--chardev", "stdio,id=a", "--chardev", "stdio,id=a"]) == "--chardev stdio,id=a: Duplicate ID 'a' for chardev")
    }

    /// The command lines test harnesses start a VM with, to drive it over
    /// QMP only. QEMUMachine (python/qemu/machine, 7.2): -display none -vga
    /// none, its monitor a socket it listens on (QEMU connects: no
    /// server=on), then the test's own options; from QEMU 8.1 on the monitor
    /// is one end of a socketpair (fd=N).
    @Test func harnessCommandLines() throws {
        let vmOnly = ["-machine", "none", "-monitor", "none", "-nographic", "-serial", "none", "-accel", "qtest",
                      "-nodefaults", "-display", "none", "-S", "-name", "vm1"]
        let machine = try ServeCommandLine.parse([
            "-display", "none", "-vga", "none", "-chardev", "socket,id=mon,path=/run/vm1-monitor.sock",
            "-mon", "chardev=mon,mode=control",
        ] + vmOnly + ["-blockdev", "driver=file,node-name=f,filename=/d/a.img"])
        #expect(machine.monitors == [.init(origin: "-chardev socket,id=mon,path=/run/vm1-monitor.sock",
                                           endpoint: .unixConnect(path: "/run/vm1-monitor.sock"), pretty: false)])
        #expect(machine.blockDevices.count == 1)
        let socketpair = try ServeCommandLine.parse([
            "-display", "none", "-vga", "none", "-chardev", "socket,id=mon,fd=7", "-mon", "chardev=mon,mode=control",
        ] + vmOnly)
        #expect(socketpair.monitors.map(\.endpoint) == [.socketDescriptor(7)])
        // The issue's own example: no HMP monitor, QMP on stdio.
        #expect(try ServeCommandLine.parse(["-monitor", "none", "-qmp", "stdio"]).monitors.map(\.endpoint) == [.stdio])
        // iotests' QemuStorageDaemon: its socket, --monitor by chardev ID, --pidfile.
        let daemon = try ServeCommandLine.parse([
            "--blockdev", "file,node-name=f,filename=/d/a.img", "--pidfile", "/t/qsd-a-pid",
            "--chardev", "socket,id=qmp-sock,path=/t/qsd-a.sock", "--monitor", "qmp-sock",
        ])
        #expect(daemon.monitors.map(\.endpoint) == [.unixConnect(path: "/t/qsd-a.sock")])
        #expect(daemon.pidFile == "/t/qsd-a-pid")
        #expect(try ServeCommandLine.parse(["-qmp", "unix:/x"]).monitors.map(\.endpoint) == [.unixConnect(path: "/x")])
        // QEMUQtestMachine adds its qtest channel (qemu_chr_parse_compat: "path" implied after "unix:").
        let qtest = try ServeCommandLine.parse(["-qtest", "unix:path=/t/qtest.sock", "-accel", "qtest"])
        #expect(qtest.qtest?.endpoint == .unixConnect(path: "/t/qtest.sock"))
        #expect(try ServeCommandLine.parse(["-qmp", "unix:path=/x,server=on,wait=off"]).monitors.map(\.endpoint)
            == [.unixSocket(path: "/x")])
        #expect(failure(["-qtest", "tcp:localhost:4444"])
            == "-qtest tcp:localhost:4444: 'tcp' is not supported here: use stdio or unix:PATH,server=on,wait=off")
    }

    /// -monitor's two meanings, kept apart as QEMU keeps them: qemu-system's
    /// `-monitor none|null|stdio|unix:...|chardev:ID` (a compat chardev and
    /// an HMP monitor; "none" by its first four characters, as vl.c
    /// compares) and qemu-storage-daemon's `--monitor [chardev=]ID` (QMP).
    @Test func monitorMeanings() throws {
        #expect(try ServeCommandLine.parse(["-monitor", "none"]).monitors.isEmpty)
        #expect(try ServeCommandLine.parse(["-monitor", "none,anything"]).monitors.isEmpty)
        #expect(try ServeCommandLine.parse(["-monitor", "null", "-qmp", "stdio"]).monitors.map(\.endpoint) == [.stdio])
        let hmp = "HMP (readline) monitors are not supported: use -qmp, or -mon with mode=control"
        #expect(failure(["-monitor", "stdio"]) == "-monitor stdio: \(hmp)")
        #expect(failure(["-monitor", "unix:/x,server=on,wait=off"]) == "-monitor unix:/x,server=on,wait=off: \(hmp)")
        #expect(failure(["-monitor", "mon:stdio"]) == "-monitor mon:stdio: \(hmp)")
        #expect(failure(["-monitor", "/dev/ttyS0"]) == "-monitor /dev/ttyS0: \(hmp)")
        #expect(failure(["-chardev", "stdio,id=c", "-monitor", "chardev:c"]) == "-monitor chardev:c: \(hmp)")
        // qemu-system-x86_64 7.2's first line for these (it adds "parse error: VALUE").
        #expect(failure(["-monitor", "chardev:nope"]) == "-monitor chardev:nope: chardev \"nope\" not found")
        #expect(failure(["-monitor", "bogus:1"]) == "-monitor bogus:1: 'bogus:1' is not a valid char driver")
        // A chardev of that ID makes it the daemon's QMP monitor, whatever the ID.
        let daemon = try ServeCommandLine.parse(["--chardev", "stdio,id=stdio", "--monitor", "stdio"])
        #expect(daemon.monitors == [.init(origin: "--chardev stdio,id=stdio", endpoint: .stdio, pretty: false)])
        #expect(try ServeCommandLine.parse(["--chardev", "stdio,id=none", "--monitor", "chardev=none,pretty=on"])
            .monitors.map(\.pretty) == [true])
        #expect(failure(["--monitor", "chardev=nope"]) == "--monitor chardev=nope: chardev \"nope\" not found")
    }

    /// What only a VM uses is accepted and changes nothing; devices are
    /// refused by name (there is no guest to plug them into).
    @Test func vmOnlyOptionsAndDevices() throws {
        let configuration = try ServeCommandLine.parse([
            "-S", "-nodefaults", "-nographic", "-display", "none", "-vga", "none", "-serial", "none", "-M", "none",
            "-machine", "accel=qtest", "-accel", "tcg", "-name", "guest=vm,debug-threads=on", "--pidfile=/t/p",
        ])
        #expect(configuration.monitors.isEmpty && configuration.blockDevices.isEmpty)
        #expect(configuration.pidFile == "/t/p")
        let refusal = "is not supported: qcowkit serve has no guest devices"
        #expect(failure(["-device", "virtio-blk,drive=d0"]) == "-device virtio-blk,drive=d0: device 'virtio-blk' \(refusal)")
        #expect(failure(["-device", "driver=scsi-hd,drive=d0"]) == "-device driver=scsi-hd,drive=d0: device 'scsi-hd' \(refusal)")
        #expect(failure(["--device", #"{"driver": "ide-hd", "drive": "d0"}"#])
            == #"--device {"driver": "ide-hd", "drive": "d0"}: device 'ide-hd' "# + refusal)
        #expect(failure(["-device", "drive=d0"]) == "-device drive=d0: Parameter 'driver' is missing")
        #expect(failure(["-device"]) == "-device: requires an argument")
    }

    @Test func helpIsRecognised() throws {
        #expect(try ServeCommandLine.parse(["--help"]).wantsHelp)
        #expect(try ServeCommandLine.parse(["-h"]).wantsHelp)
    }
}
