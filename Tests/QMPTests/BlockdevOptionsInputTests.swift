import Testing
import BlockGraph
import QemuJSON
@testable import QMP

/// blockdev-add's arguments read as QAPI reads them (messages from QEMU 7.2).
@Suite struct BlockdevOptionsInputTests {
    private func decode(_ json: String) throws -> BlockdevOptions {
        guard case let .success(.object(members)) = JSONValue.parse(json) else { throw QMPError.generic("bad test JSON") }
        var input = QAPIInput(members)
        return try BlockdevOptionsInput.decode(&input)
    }

    private func failure(_ json: String) -> String? {
        do { _ = try decode(json); return nil } catch { return "\(error)" }
    }

    @Test func nestedAndReferencedChildren() throws {
        #expect(try decode(#"{"driver":"qcow2","node-name":"a","file":{"driver":"file","filename":"/x"},"backing":null}"#)
            == BlockdevOptions(driver: "qcow2", nodeName: "a", file: .options(.file("/x")), backing: .none))
        #expect(try decode(#"{"driver":"qcow2","node-name":"a","file":"proto","backing":"mid","read-only":true}"#)
            == BlockdevOptions(driver: "qcow2", nodeName: "a", readOnly: true, file: .node("proto"), backing: .node("mid")))
        #expect(try decode(#"{"driver":"raw","node-name":"r","file":"proto"}"#)
            == BlockdevOptions(driver: "raw", nodeName: "r", file: .node("proto")))
        #expect(try decode(#"{"driver":"qcow2","node-name":"a","file":"p","backing":{"driver":"qcow2","file":"q"}}"#).backing
            == .fromImage(BlockdevOptions(driver: "qcow2", file: .node("q"))))
    }

    @Test func qapiErrors() {
        #expect(failure(#"{"node-name":"x"}"#) == "Parameter 'driver' is missing")
        #expect(failure(#"{"driver":"nosuch"}"#) == "Parameter 'driver' does not accept value 'nosuch'")
        #expect(failure(#"{"driver":"qcow2"}"#) == "Parameter 'file' is missing")
        #expect(failure(#"{"driver":"qcow2","node-name":"q","file":3}"#) == "Invalid parameter type for 'file', expected: BlockdevRef")
        #expect(failure(#"{"driver":"qcow2","node-name":"q","file":"x","backing":3}"#)
            == "Invalid parameter type for 'backing', expected: BlockdevRefOrNull")
        #expect(failure(#"{"driver":"qcow2","node-name":"q","read-only":"on","file":"x"}"#)
            == "Invalid parameter type for 'read-only', expected: boolean")
        #expect(failure(#"{"driver":"qcow2","node-name":"q","file":{"driver":"file"}}"#) == "Parameter 'file.filename' is missing")
        #expect(failure(#"{"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":"/x","zzz":1}}"#)
            == "Parameter 'file.zzz' is unexpected")
        #expect(failure(#"{"driver":"raw","node-name":"r","file":"x","backing":null}"#) == "Parameter 'backing' is unexpected")
        #expect(failure(#"{"driver":"qcow2","file":{"driver":"qcow2","file":{"driver":"file","filename":7}}}"#)
            == "Invalid parameter type for 'file.file.filename', expected: string")
    }

    @Test func keyvalConvertsStrings() throws {
        func keyval(_ text: String) throws -> BlockdevOptions { try ServeCommandLine.blockdevOptions(text) }
        #expect(try keyval("qcow2,node-name=n,file=p,read-only=yes,backing=") .readOnly == true)
        #expect(try keyval("qcow2,node-name=n,file=p,backing=").backing == BackingChoice.none)
        #expect(try keyval("qcow2,node-name=n,file=p,backing=null").backing == BackingChoice.none)
        #expect(try keyval("qcow2,node-name=n,file=p,backing=mid").backing == .node("mid"))
        #expect(throws: QMPError.generic("Parameter 'read-only' expects 'on' or 'off'")) {
            try keyval("qcow2,node-name=n,file=p,read-only=maybe")
        }
        #expect(throws: QMPError.generic("Parameter 'zzz' is unexpected")) {
            try keyval("qcow2,node-name=x,file=p,backing=null,zzz=1")
        }
        #expect(throws: QMPError.generic("Parameter 'backing.file' is missing")) {
            try keyval("qcow2,node-name=x,file=p,backing.driver=qcow2")
        }
    }

    @Test func integersInKeyvalAreCIntegers() {
        #expect(parseCInteger("42") == 42)
        #expect(parseCInteger("0x10") == 16)
        #expect(parseCInteger("010") == 8)
        #expect(parseCInteger("-9223372036854775808") == Int64.min)
        #expect(parseCInteger("9223372036854775808") == nil)
        #expect(parseCInteger("-+1") == nil)
        #expect(parseCInteger("") == nil)
        #expect(parseCInteger("1k") == nil)
    }
}
