import Testing
import QemuJSON
@testable import QMP

/// -blockdev's key=value syntax: trees and messages as QEMU 7.2 gives them
/// (messages recorded from qemu-storage-daemon --blockdev).
@Suite struct KeyvalTests {
    private func parse(_ text: String) throws -> JSONValue {
        try Keyval.parse(text, impliedKey: "driver")
    }

    private func failure(_ text: String) -> String? {
        do {
            _ = try parse(text)
            return nil
        } catch let error as KeyvalError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func dottedKeysNestObjects() throws {
        let tree = try parse("driver=qcow2,file.driver=file,file.filename=/a/b,node-name=top,backing=mid")
        #expect(tree == .object([
            ("driver", .string("qcow2")),
            ("file", .object([("driver", .string("file")), ("filename", .string("/a/b"))])),
            ("node-name", .string("top")),
            ("backing", .string("mid")),
        ]))
    }

    @Test func impliedKeyTakesABareFirstValue() throws {
        #expect(try parse("qcow2,node-name=x") == .object([("driver", .string("qcow2")), ("node-name", .string("x"))]))
        // Only the first element may be bare.
        #expect(failure("qcow2,bogus") == "Expected '=' after parameter 'bogus'")
        // The implied value ends at the first comma: ",," is not an escape there.
        #expect(failure("qcow2,,foo") == "Invalid parameter ''")
        #expect(try parse("qcow2,") == .object([("driver", .string("qcow2"))]))
    }

    @Test func doubledCommaIsALiteralComma() throws {
        #expect(try parse("driver=qcow2,,x") == .object([("driver", .string("qcow2,x"))]))
        #expect(try parse("driver=a,file.filename=/x,,y,,,node-name=n") == .object([
            ("driver", .string("a")),
            ("file", .object([("filename", .string("/x,y,"))])),
            ("node-name", .string("n")),
        ]))
    }

    @Test func lastValueWinsAndKeepsItsPlace() throws {
        #expect(try parse("driver=qcow2,node-name=a,driver=raw")
            == .object([("driver", .string("raw")), ("node-name", .string("a"))]))
    }

    @Test func emptyValuesAndEmptyInput() throws {
        #expect(try parse("") == .object([]))
        #expect(try parse("backing=") == .object([("backing", .string(""))]))
        #expect(try parse("driver=qcow2,") == .object([("driver", .string("qcow2"))]))
    }

    @Test func indexesMakeArrays() throws {
        #expect(try parse("x.0=a,x.1=b") == .object([("x", .array([.string("a"), .string("b")]))]))
        #expect(try parse("x.1=b,x.0=a") == .object([("x", .array([.string("a"), .string("b")]))]))
        #expect(failure("driver=qcow2,file.1=x") == "Parameter 'file.0' missing")
        #expect(failure("driver=qcow2,x.0=a,x.b=1") == "Parameters 'x.*' used inconsistently")
    }

    @Test func qemuMessagesForBadKeys() throws {
        #expect(failure("driver=qcow2,a..b=1") == "Invalid parameter 'a..b'")
        #expect(failure("driver=qcow2,1a=2") == "Invalid parameter '1a'")
        #expect(failure("driver=qcow2,0=1") == "Invalid parameter '0'")
        #expect(failure("driver=qcow2,_x=1") == "Invalid parameter '_x'")
        #expect(failure(",") == "Invalid parameter ''")
        #expect(failure(",driver=qcow2") == "Invalid parameter ''")
        #expect(failure("driver=qcow2,file=x,file.driver=file") == "Parameters 'file.*' used inconsistently")
        #expect(failure("driver=qcow2,file.driver=file,file=x") == "Parameters 'file.*' used inconsistently")
        #expect(failure("driver=qcow2,file.filename=x,file.filename.x=1") == "Parameters 'file.filename.*' used inconsistently")
        let long = String(repeating: "a", count: 128)
        #expect(failure("driver=qcow2,\(long)=1") == "Parameter '\(long)' is too long")
        #expect(failure("driver=qcow2,x.\(long)=1") == "Parameter fragment '\(long)' is too long")
        #expect(try parse("driver=qcow2,a_b-c=1")["a_b-c"] == .string("1"))
    }

    @Test func hostileInputStaysBounded() throws {
        // Deep nesting and many keys: linear work, no recursion limit hit.
        let deep = (0..<200).map { _ in "a" }.joined(separator: ".") + "=1"
        #expect(throws: Never.self) { try Keyval.parse(deep) }
        let huge = (0..<2000).map { "k\($0)=v" }.joined(separator: ",")
        guard case let .object(members) = try Keyval.parse(huge) else { Issue.record("not an object"); return }
        #expect(members.count == 2000)
        #expect(failure("x.2147483648=a") == "Parameter 'x.0' missing")
    }
}
