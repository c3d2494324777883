import Testing
import QemuJSON
@testable import QMP

@Suite struct QMPErrorTests {
    @Test func replyMemberPrintsAsQEMUPrintsIt() {
        let error = QMPError(.commandNotFound, "The command foo has not been found")
        #expect(error.json.qemuJSON() == #"{"class": "CommandNotFound", "desc": "The command foo has not been found"}"#)
    }
}
