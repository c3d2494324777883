import Testing
import QemuJSON
@testable import QMP

/// The protocol as QEMU 7.2 speaks it, without a transport.
@Suite struct SessionTests {
    @Test func greetingThenNegotiation() throws {
        let harness = try SessionHarness()
        harness.connect()
        #expect(harness.take() == #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"}, "capabilities": ["oob"]}}"# + "\r\n")
        harness.send(#"{"execute":"query-version","id":"x"}"#)
        #expect(harness.take() == #"{"id": "x", "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"# + "\r\n")
        harness.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["foo"]}}"#)
        #expect(harness.take() == #"{"error": {"class": "GenericError", "desc": "Parameter 'null' does not accept value 'foo'"}}"# + "\r\n")
        harness.send(#"{"execute":"qmp_capabilities","arguments":{"enable":[1]}}"#)
        #expect(harness.take() == #"{"error": {"class": "GenericError", "desc": "Invalid parameter type for 'enable[0]', expected: string"}}"# + "\r\n")
        harness.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#)
        #expect(harness.take() == #"{"return": {}}"# + "\r\n")
        harness.send(#"{"execute":"query-version","id":1}"#)
        #expect(harness.take() == #"{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"}, "id": 1}"# + "\r\n")
        // With OOB enabled, exec-oob is understood, and refused for our commands.
        harness.send(#"{"exec-oob":"query-version"}"#)
        #expect(harness.take() == #"{"error": {"class": "GenericError", "desc": "The command query-version does not support OOB"}}"# + "\r\n")
        harness.send(#"{"exec-oob":"query-version","execute":"quit"}"#)
        #expect(harness.take().contains("clashes with"))
    }

    @Test func queryCommandsListsTheTable() throws {
        let harness = try SessionHarness()
        let client = harness.negotiatedClient()
        harness.send(#"{"execute":"query-commands"}"#, client: client)
        let names = harness.messages(client).first?["return"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        for name in ["qmp_capabilities", "query-version", "query-commands", "query-named-block-nodes", "query-block-jobs",
                     "query-jobs", "blockdev-add", "blockdev-del", "job-cancel", "job-pause", "job-resume", "job-complete",
                     "job-finalize", "job-dismiss", "block-job-cancel", "block-job-pause", "block-job-resume",
                     "block-job-complete", "block-job-finalize", "block-job-dismiss", "block-job-set-speed", "quit"] {
            #expect(names.contains(name), "\(name)")
        }
        #expect(Set(names).count == names.count)
    }

    @Test func streamInPiecesAndParseErrorsContinue() throws {
        let harness = try SessionHarness()
        let client = harness.negotiatedClient()
        // One request split across reads, blank lines, then garbage, then a valid request.
        for piece in ["{ 'exec", "ute': 'query-jobs',\n\n", "  'id': 'a' }\n\n\n", "}{", "\"execute\":\"query-jobs\"}"] {
            harness.send(piece, client: client)
        }
        #expect(harness.take(client) == [
            #"{"return": [], "id": "a"}"#,
            #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
            #"{"return": []}"#,
        ].map { $0 + "\r\n" }.joined())
    }

    @Test func prettyOutputIsQEMUs() throws {
        let harness = try SessionHarness()
        let client = harness.negotiatedClient(pretty: true)
        harness.send(#"{"execute":"query-jobs","id":{"a":[]}}"#, client: client)
        #expect(harness.take(client) == "{\r\n    \"return\": [\r\n    ],\r\n    \"id\": {\r\n        \"a\": [\r\n        ]\r\n    }\r\n}\r\n")
    }

    @Test func eventsGoOnlyToNegotiatedClients() throws {
        let harness = try SessionHarness()
        let negotiated = harness.negotiatedClient()
        let fresh = harness.connect()
        _ = harness.take(fresh)
        harness.service.emit("TEST_EVENT", data: .object([("x", .int(1))]))
        let events = harness.messages(negotiated)
        #expect(events.count == 1)
        #expect(events.first?["event"] == .string("TEST_EVENT"))
        #expect(events.first?["timestamp"]?["seconds"]?.int64Value != nil)
        #expect(events.first?["timestamp"]?["microseconds"]?.int64Value.map { (0..<1_000_000).contains($0) } == true)
        #expect(harness.take(fresh) == "")
    }

    @Test func quitRepliesThenShutdownEventThenStops() throws {
        let harness = try SessionHarness()
        let client = harness.negotiatedClient()
        let other = harness.negotiatedClient()
        harness.send(#"{"execute":"quit","id":"q"}{"execute":"query-jobs"}"#, client: client)
        let messages = harness.messages(client)
        #expect(messages.count == 2)
        #expect(messages.first == .object([("return", .object([])), ("id", .string("q"))]))
        #expect(messages.last?["event"] == .string("SHUTDOWN"))
        #expect(messages.last?["data"] == .object([("guest", .bool(false)), ("reason", .string("host-qmp-quit"))]))
        #expect(harness.messages(other).map { $0["event"] } == [.string("SHUTDOWN")])
        // Nothing more is dispatched.
        harness.send(#"{"execute":"query-jobs"}"#, client: other)
        #expect(harness.take(other) == "")
        #expect(harness.service.shutdownReason == .hostQMPQuit)
    }

    @Test func floodOfBadInputIsAnsweredAndBounded() throws {
        let harness = try SessionHarness()
        let client = harness.negotiatedClient()
        // 10,000 tiny bad messages in one go: one error each, nothing kept.
        harness.send(String(repeating: "1 ", count: 10_000) + "\n", client: client)
        let messages = harness.messages(client)
        #expect(messages.count == 10_000)
        #expect(messages.allSatisfy { $0["error"]?["desc"] == .string("QMP input must be a JSON object") })
        // Nesting beyond QEMU's limit (1024) is refused and the stream starts over.
        harness.send(String(repeating: "[", count: 1025) + "\n" + #"{"execute":"query-jobs"}"#, client: client)
        let after = harness.messages(client)
        #expect(after.first?["error"]?["desc"] == .string("JSON nesting depth limit exceeded"))
        #expect(after.last == .object([("return", .array([]))]))
    }
}
