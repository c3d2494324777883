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
        #expect(failure(["-qmp", "unix:/x"]) == "-qmp unix:/x: only listening sockets are supported: add server=on")
        #expect(failure(["--chardev", "stdio"]) == "--chardev stdio: chardev: no id specified")
        #expect(failure(["--chardev", "bogus,id=a"]) == "--chardev bogus,id=a: 'bogus' is not a valid char driver name")
        #expect(failure(["--chardev", "stdio,id=a,foo=1"]) == "--chardev stdio,id=a,foo=1: Invalid parameter 'foo'")
        #expect(failure(["--monitor", "nochar"]) == "--monitor nochar: chardev \"nochar\" not found")
        #expect(failure(["-chardev", "stdio,id=a", "-mon", "a"]) == "-mon a: Only QMP is supported")
        #expect(failure(["--chardev", "stdio,id=a", "--monitor", "a,pretty=maybe"])
            == "--monitor a,pretty=maybe: Parameter 'pretty' expects 'on' or 'off'")
        #expect(failure(["--chardev", "stdio,id=a", "--chardev", "stdio,id=a"]) == "--chardev stdio,id=a: Duplicate ID 'a' for chardev")
    }

    @Test func helpIsRecognised() throws {
        #expect(try ServeCommandLine.parse(["--help"]).wantsHelp)
        #expect(try ServeCommandLine.parse(["-h"]).wantsHelp)
    }
}
