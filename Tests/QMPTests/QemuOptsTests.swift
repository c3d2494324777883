import Testing
import BlockGraph
@testable import QMP

/// -drive / -chardev / -mon syntax (QemuOpts) and -drive's translation into
/// the graph's options.
@Suite struct QemuOptsTests {
    @Test func flatKeysFlagsAndEscapes() throws {
        let opts = QemuOpts("file=/a,,b,readonly,nofoo,backing.node-name=mid,x=1,x=2")
        #expect(opts["file"] == "/a,b")
        #expect(opts["readonly"] == "on")
        #expect(opts["foo"] == "off")
        #expect(opts["backing.node-name"] == "mid")
        #expect(opts["x"] == "2")
        #expect(opts.names == ["file", "readonly", "foo", "backing.node-name", "x"])
    }

    @Test func impliedNameTakesTheFirstBareValue() {
        let opts = QemuOpts("socket,id=c,path=/s,server=on,wait=off", impliedName: "backend")
        #expect(opts["backend"] == "socket")
        #expect(opts["path"] == "/s")
        // Unlike keyval, the implied value honours ",,".
        #expect(QemuOpts("a,,b,id=x", impliedName: "backend")["backend"] == "a,b")
    }

    @Test func booleans() throws {
        #expect(try QemuOpts("pretty=on").bool("pretty") == true)
        #expect(try QemuOpts("pretty=no").bool("pretty") == false)
        #expect(try QemuOpts("").bool("pretty") == nil)
        #expect(throws: QMPServiceError("Parameter 'pretty' expects 'on' or 'off'")) {
            try QemuOpts("pretty=maybe").bool("pretty")
        }
    }

    // MARK: -drive

    @Test func iotest191Drives() throws {
        let top = try DriveOptions(QemuOpts("driver=qcow2,file=/d/t.qcow2,node-name=top,backing.node-name=mid"), index: 0)
        #expect(top.id == "none0")
        #expect(top.options == BlockdevOptions(driver: "qcow2", nodeName: "top", file: .filename("/d/t.qcow2"),
                                               backing: .fromImage(BlockdevOptions(nodeName: "mid"))))
        let top2 = try DriveOptions(QemuOpts("driver=qcow2,file=/d/t.qcow2.ovl3,node-name=top2,backing.backing=mid"), index: 1)
        #expect(top2.id == "none1")
        #expect(top2.options == BlockdevOptions(driver: "qcow2", nodeName: "top2", file: .filename("/d/t.qcow2.ovl3"),
                                                backing: .fromImage(BlockdevOptions(backing: .node("mid")))))
    }

    @Test func driveSpellings() throws {
        let drive = try DriveOptions(QemuOpts("if=none,id=disk,format=raw,file=/x,readonly=on"), index: 3)
        #expect(drive.id == "disk")
        #expect(drive.options == BlockdevOptions(driver: "raw", readOnly: true, file: .filename("/x")))
        let deep = try DriveOptions(QemuOpts("file=/x,backing.backing.node-name=b2,backing.read-only=off"), index: 0)
        #expect(deep.options.backing == .fromImage(BlockdevOptions(
            readOnly: false, backing: .fromImage(BlockdevOptions(nodeName: "b2")))))
        let noBacking = try DriveOptions(QemuOpts("file=/x,backing=null"), index: 0)
        #expect(noBacking.options.backing == BackingChoice.none)
        let fileNode = try DriveOptions(QemuOpts("file=/x,file.node-name=proto"), index: 0)
        #expect(fileNode.options.file == .options(BlockdevOptions(driver: "file", nodeName: "proto", filename: "/x")))
    }

    @Test func driveRefusalsInQEMUsWords() {
        func failure(_ text: String) -> String? {
            do { _ = try DriveOptions(QemuOpts(text), index: 0); return nil } catch { return "\(error)" }
        }
        #expect(failure("file=/x,if=bogus") == "unsupported bus type 'bogus'")
        #expect(failure("file=/x,format=qcow2,driver=qcow2") == "Cannot specify both 'driver' and 'format'")
        #expect(failure("driver=qcow2,file=/x,foo=1") == "Block format 'qcow2' does not support the option 'foo'")
        #expect(failure("driver=qcow2,file=/x,backing.foo=1")
            == "Could not open backing file: The block driver does not support the option 'foo'")
        #expect(failure("file=/x,read-only=maybe") == "Parameter 'read-only' expects 'on' or 'off'")
        #expect(failure("file=/x,backing=mid,backing.node-name=m") == "Parameters 'backing.*' used inconsistently")
        #expect(failure("driver=vmdk,file=/x") == "Unknown driver 'vmdk'")
        #expect(failure("file=/x,cache=none") == "Option 'cache=none' is not supported")
        #expect(failure("file=/x,cache=bogus") == "invalid cache option")
        #expect(failure("file=/x,aio=native") == "Option 'aio=native' is not supported")
        #expect(failure("file=/x,aio=bogus") == "invalid aio option")
        // iotests' VM.add_drive passes these on every -drive: they change nothing without a guest.
        #expect(failure("if=virtio,id=drive0,file=/x,format=qcow2,cache=writeback,aio=threads") == nil)
        #expect(failure("file=/x,cache=writethrough") == nil)
        #expect(failure("file=/x,cache.direct=on") == "Option 'cache.direct' is not supported")
        #expect(failure("file=/x,throttling.iops-total=5") == "Option 'throttling.iops-total' is not supported")
        #expect(failure("file=/x,media=disk,index=1,werror=stop") == nil)
    }
}
