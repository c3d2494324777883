// Hostile QMP input, answered as QEMU 7.2 answers it: every input below goes
// to qemu-storage-daemon 7.2 and to QcowKit's service, each followed by a
// marker request, and the bytes of the replies up to the marker's must be
// the same. Covers lexical errors (stray bytes, NUL, 0xFF, bad escapes and
// UTF-8), grammar errors, QEMU's nesting limit, huge numbers, long strings,
// ids of every JSON type, malformed requests, wrong argument types, and the
// stream resynchronising after each. A few replies are also pinned here, so
// that a change in both programs cannot hide.
import Foundation
import Testing
import QemuJSON
@testable import QMP

@Suite("hostile QMP input, byte for byte against qemu-storage-daemon 7.2")
struct HostileInputTests {
    private static func text(_ s: String) -> [UInt8] { Array(s.utf8) + [0x0A] }
    private static func request(id: [UInt8]) -> [UInt8] {
        Array(#"{"execute":"query-jobs","id":"#.utf8) + id + Array("}\n".utf8)
    }

    /// Small enough for QEMU, which reads its monitor a byte at a time.
    static let inputs: [[UInt8]] = {
        var inputs: [[UInt8]] = []
        // Nesting: QEMU's limit is 1024 open brackets and braces.
        inputs.append(Array(repeating: UInt8(ascii: "["), count: 1025) + [0x0A])
        inputs.append(text(String(repeating: "[", count: 1024) + String(repeating: "]", count: 1024)))
        inputs.append(request(id: Array((String(repeating: "[", count: 1023) + String(repeating: "]", count: 1023)).utf8)))
        inputs.append(text(String(repeating: #"{"a":"#, count: 1025) + "1" + String(repeating: "}", count: 1025)))
        inputs.append(request(id: Array((String(repeating: "[1,", count: 500) + "1" + String(repeating: "]", count: 500)).utf8)))
        // Lexical errors, then resynchronisation.
        for bytes: [UInt8] in [[0x01], [0x00], [0xFF], [0xFE], Array("@".utf8), Array("{'a".utf8), Array("nul".utf8),
                               Array("TRUE".utf8), Array("01".utf8), Array("1.".utf8), Array("-".utf8), Array("1e".utf8)] {
            inputs.append(bytes + [0x0A])
        }
        inputs.append(Array(#"{"execute":"query-jobs",\#u{0}"id":1}"#.utf8) + [0x0A])
        inputs.append(Array(#"{"execute":"query-jobs""#.utf8) + [0xFF] + Array(#","id":1}"#.utf8) + [0x0A])
        inputs.append([0xFE] + text(#"{"execute":"query-jobs","id":"after-fe"}"#))
        // Strings: escapes, surrogates, UTF-8 (overlong, out of range, cut short), control characters.
        for id in [#""\x""#, #""\u12""#, #""\uzzzz""#, #""\ud800""#, #""\udc00x""#, #""\ud800\u0041""#, #""\ud83d""#,
                   #""\ude00\ud83d""#, #""\uDBFF\uDFFF""#, #""\u0000""#, #""\u0080\u07ff\u0800\uffff""#, #""\/\b\f\r""#,
                   #"'a"b'"#, #""a'b""#, #"'\''"#, #""\'""#, #""%d%s""#] {
            inputs.append(request(id: Array(id.utf8)))
        }
        for raw: [UInt8] in [[0xC3, 0x28], [0xED, 0xA0, 0x80], [0xC0, 0x80], [0xE0, 0x80, 0xAF], [0xF4, 0x90, 0x80, 0x80],
                             [0xEF, 0xBF, 0xBF], [0xF0, 0x9F, 0x98, 0x80], [0xC2], [0xE2, 0x82], [0xF8, 0x88, 0x80, 0x80, 0x80],
                             [0x7F], [0x09], [0x0A]] {
            inputs.append(request(id: [0x22] + raw + [0x22]))
        }
        inputs.append(request(id: Array(("\"" + String(repeating: "x", count: 20_000) + "\"").utf8)))
        inputs.append(request(id: [0x22] + Array(repeating: 0x7F, count: 2_000) + [0x22]))
        // A long invalid keyword: QEMU's parse errors keep 1023 bytes of message.
        inputs.append(text(String(repeating: "x", count: 3_000)))
        inputs.append(request(id: Array(String(repeating: "z", count: 1_500).utf8)))
        // Numbers: beyond int64 and uint64, beyond double, tiny, negative zero.
        for id in ["-0", "-0.0", "1.0", "1e5", "1E+2", "123e-7", "0.1", "0.30000000000000004", "1e16", "1e17", "1e21",
                   "100000000000000000000.0", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                   "-9223372036854775809", "18446744073709551615", "18446744073709551616", "99999999999999999999999",
                   "-99999999999999999999999", String(repeating: "9", count: 400), "-" + String(repeating: "9", count: 400),
                   "0." + String(repeating: "0", count: 400) + "1", "1e400", "-1e400", "1e-400", "4.9e-324",
                   "2.2250738585072014e-308", "1.7976931348623157e308", "123456789.123456789"] {
            inputs.append(request(id: Array(id.utf8)))
        }
        // ids of every JSON type, echoed.
        for id in ["null", "true", "false", #""s""#, "[]", "{}", #"[1,{"a":null}]"#, #"{"b":[true,false],"a":{}}"#] {
            inputs.append(request(id: Array(id.utf8)))
        }
        // Grammar.
        for line in [#"{"a":1,"a":2}"#, #"{"execute":"query-jobs","execute":"quit"}"#, "{1:2}", #"{"a" 1}"#, "[1,]",
                     #"{"a":1,}"#, "{,}", #"{"execute":"query-jobs" "id":1}"#, #"{"execute":"query-jobs",,"id":1}"#,
                     "}", "]", #"{"execute":"query-jobs"}}"#, #"{"execute":"query-jobs"]"#, #"{"execute":"query-jobs", }"#,
                     #"{"execute":"query-jobs","id":1}{"execute":"query-jobs","id":2}[3]"x"4"#, "  \t\r", "/* c */"] {
            inputs.append(text(line))
        }
        inputs.append(Array("{\"execute\":\"query-jobs\"\n\n\n,\"id\":7}\n".utf8))
        // Requests of the wrong shape.
        for line in ["1", "true", "null", #""x""#, "[]", "123456789012345678901234567890", "{}", #"{"id":1}"#,
                     #"{"execute": 1}"#, #"{"execute": null, "id": "n"}"#, #"{"execute":["query-jobs"]}"#,
                     #"{"execute":""}"#, #"{"execute":"query-jobs\u0000x"}"#, #"{"execute":"QUERY-JOBS"}"#,
                     #"{"execute":"query_jobs"}"#, #"{"execute":""# + String(repeating: "c", count: 5000) + #""}"#,
                     #"{"execute":"query-jobs","arguments":1}"#, #"{"execute":"query-jobs","arguments":null}"#,
                     #"{"execute":"query-jobs","arguments":[]}"#, #"{"execute":"query-jobs","arguments":"x"}"#,
                     #"{"execute":"query-jobs","arguments":{}}"#, #"{"execute":"x","arguments":{"a":1}}"#,
                     #"{"execute":"query-jobs","control":{}}"#, #"{"exec-oob":"query-jobs"}"#, #"{"arguments":{}}"#] {
            inputs.append(text(line))
        }
        // Arguments of the wrong type or value.
        for line in [#"{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"#,
                     #"{"execute":"qmp_capabilities","arguments":{"enable":["foo"]}}"#,
                     #"{"execute":"qmp_capabilities","arguments":{"x":1}}"#,
                     #"{"execute":"qmp_capabilities","arguments":{"enable":[]}}"#,
                     #"{"execute":"job-pause","arguments":{"id":1}}"#, #"{"execute":"job-pause","arguments":{"id":null}}"#,
                     #"{"execute":"job-pause","arguments":{}}"#, #"{"execute":"job-pause","arguments":{"id":"j","x":1}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1.5}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1e3}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":true}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":-0}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":18446744073709551615}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":9223372036854775808}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":-9223372036854775809}}"#,
                     #"{"execute":"block-job-set-speed","arguments":{"device":"x","speed":1,"extra":2}}"#,
                     #"{"execute":"block-job-cancel","arguments":{"device":"x","force":"yes"}}"#,
                     #"{"execute":"query-named-block-nodes","arguments":{"flat":"true"}}"#,
                     #"{"execute":"query-named-block-nodes","arguments":{"flat":null}}"#,
                     #"{"execute":"block-commit","arguments":{"device":["x"]}}"#,
                     #"{"execute":"block-commit","arguments":{"device":"x","backing-file":1}}"#,
                     #"{"execute":"block-commit","arguments":{"device":"x","speed":-1}}"#,
                     #"{"execute":"block-commit","arguments":{"device":"x","auto-finalize":1}}"#,
                     #"{"execute":"block-stream","arguments":{"device":"x","on-error":"sometimes"}}"#,
                     #"{"execute":"blockdev-del","arguments":{"node-name":""# + String(repeating: "n", count: 200) + #""}}"#,
                     #"{"execute":"job-cancel","arguments":{"id":""# + String(repeating: "j", count: 5000) + #""}}"#,
                     #"{"execute":"block-job-cancel","arguments":{"device":""# + String(repeating: "j", count: 5000) + #""}}"#,
                     #"{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"a","file":""# + String(repeating: "f", count: 300) + #""}}"#] {
            inputs.append(text(line))
        }
        return inputs
    }()

    /// Replies to each input, up to (not including) the marker's reply.
    private static func replies(_ kind: ComparedService.Kind) throws -> [String] {
        let scratch = try HostileScratch("hostile-input")
        let service = try ComparedService(kind, socketPath: scratch.file("qmp.sock"))
        service.keepAlive = scratch
        defer { service.stop() }
        let client = try service.connectRaw()
        try client.negotiate()
        var replies: [String] = []
        for (index, input) in inputs.enumerated() {
            let marker = Array(#"{"return": [], "id": "marker-\#(index)"}"#.utf8) + [13, 10]
            try client.send(input + Array(#"{"execute":"query-jobs","id":"marker-\#(index)"}"#.utf8) + [0x0A])
            let bytes = try client.read(through: marker)
            replies.append(String(decoding: bytes.dropLast(marker.count), as: UTF8.self))
        }
        return replies
    }

    @Test func repliesAreQEMUsByteForByte() async throws {
        async let qemuReplies = Self.replies(.qemu)
        let ours = try Self.replies(.qcowkit)
        let theirs = try await qemuReplies
        #expect(ours.count == theirs.count)
        var differences = 0
        for (index, (mine, qemu)) in zip(ours, theirs).enumerated() where mine != qemu {
            differences += 1
            if differences > 5 { break }
            let input = String(decoding: Self.inputs[index].prefix(120), as: UTF8.self)
            Issue.record("input \(index) \(input.debugDescription):\n  QEMU: \(qemu.prefix(400).debugDescription)\n  ours: \(mine.prefix(400).debugDescription)")
        }
    }

    /// Seeded JSON-ish noise (structural characters, quotes, escapes, digits,
    /// letters, control and non-ASCII bytes), ended so that the stream is
    /// back at its start: a newline (ends a string), 0xFF (an error, which
    /// drops any open brackets), a newline (ends the recovery).
    static func noise(seed: UInt64, count: Int) -> [UInt8] {
        let alphabet = Array(#"{}[]:,"'\ 0123456789-+.eEtrufalsnxu"#.utf8) + [0x0A, 0x09, 0x00, 0x01, 0x7F, 0xC3, 0xA9, 0xED, 0xFF] + Array(stride(from: UInt8(0x80), through: 0xFF, by: 3)) + Array("\\u00\\ud8\\udc\\n\\\"".utf8)
        let words = [#"{"execute":"query-jobs","id":"#, #""execute""#, #""arguments":{"#, #""id""#, "true", "null", "1e400",
                     #""\u00e9""#, #""\ud800""#].map { Array($0.utf8) }
        var state = seed
        func next() -> Int {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Int(truncatingIfNeeded: state >> 1)
        }
        var bytes: [UInt8] = []
        while bytes.count < count {
            if next() % 8 == 0 { bytes += words[next() % words.count] } else { bytes.append(alphabet[next() % alphabet.count]) }
        }
        return bytes + [0x0A, 0xFF, 0x0A]
    }

    @Test func seededNoiseIsAnsweredAsQEMUAnswersIt() async throws {
        let chunks = (1...12).map { Self.noise(seed: UInt64($0) &* 0x9E3779B97F4A7C15, count: 4_000) }
        @Sendable func run(_ kind: ComparedService.Kind) throws -> [String] {
            let scratch = try HostileScratch("noise")
            let service = try ComparedService(kind, socketPath: scratch.file("qmp.sock"))
            service.keepAlive = scratch
            defer { service.stop() }
            let client = try service.connectRaw()
            try client.negotiate()
            return try chunks.enumerated().map { index, chunk in
                let marker = Array(#"{"return": [], "id": "noise-\#(index)"}"#.utf8) + [13, 10]
                try client.send(chunk + Array(#"{"execute":"query-jobs","id":"noise-\#(index)"}"#.utf8) + [0x0A])
                return String(decoding: try client.read(through: marker).dropLast(marker.count), as: UTF8.self)
            }
        }
        async let qemu = run(.qemu)
        let ours = try run(.qcowkit)
        let theirs = try await qemu
        for (index, (mine, other)) in zip(ours, theirs).enumerated() where mine != other {
            let a = mine.components(separatedBy: "\r\n"), b = other.components(separatedBy: "\r\n")
            let line = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
            Issue.record("noise \(index), reply line \(line):\n  QEMU: \(line < b.count ? String(b[line]) : "-")\n  ours: \(line < a.count ? String(a[line]) : "-")")
        }
        #expect(ours.allSatisfy { $0.contains("error") })
    }

    /// What both answer, pinned.
    @Test func keyRepliesArePinned() throws {
        let ours = try Self.replies(.qcowkit)
        func reply(_ input: [UInt8]) -> String? {
            Self.inputs.firstIndex(of: input).map { ours[$0] }
        }
        func error(_ desc: String) -> String { #"{"error": {"class": "GenericError", "desc": "\#(desc)"}}"# + "\r\n" }
        #expect(reply(Array(repeating: UInt8(ascii: "["), count: 1025) + [0x0A]) == error("JSON nesting depth limit exceeded"))
        #expect(reply([0x00, 0x0A]) == error("JSON parse error, stray ''"))
        #expect(reply([0xFF, 0x0A]) == error(#"JSON parse error, stray '\uFFFD'"#))
        #expect(reply(Self.text(#"{"execute": 1}"#)) == error("QMP input member 'execute' must be a string"))
        #expect(reply(Self.text("[]")) == error("QMP input must be a JSON object"))
        #expect(reply(Self.text(#""x""#)) == error("QMP input must be a JSON object"))
        #expect(reply(Self.text(#"{"execute":"query-jobs","arguments":1}"#)) == error("QMP input member 'arguments' must be an object"))
        #expect(reply(Self.request(id: Array("1e400".utf8))) == #"{"return": [], "id": inf}"# + "\r\n")
        #expect(reply(Self.request(id: Array(#""\x""#.utf8))) == error("JSON parse error, invalid escape sequence in string"))
        let clipped = "invalid keyword '" + String(repeating: "x", count: 1023 - "invalid keyword '".utf8.count)
        #expect(reply(Self.text(String(repeating: "x", count: 3_000))) == error("JSON parse error, " + clipped))
        #expect(reply(Self.text(#"{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"#))
            == error("Invalid parameter type for 'enable', expected: array"))
    }
}
