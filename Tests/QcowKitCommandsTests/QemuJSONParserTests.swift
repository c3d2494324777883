import Testing
import QemuJSON

private func parse(_ text: String) -> Result<JSONValue, JSONParseError> {
    JSONValue.parse(text)
}

private func message(_ text: String) -> String? {
    if case let .failure(e) = parse(text) { return e.message }
    return nil
}

@Suite struct QemuJSONParserTests {
    @Test func parsesJsonAndQemusExtensions() throws {
        let v = try parse(#"{"a": [1, -2, 3.5, true, false, null], 'b': 'it\'s "q"', "c": {}}"#).get()
        #expect(v == .object([
            ("a", .array([.int(1), .int(-2), .double(3.5), .bool(true), .bool(false), .null])),
            ("b", .string("it's \"q\"")),
            ("c", .object([])),
        ]))
        #expect(try parse(#""\u00e9\uD83D\uDE00\/\b\f\n\r\t\\""#).get() == .string("é😀/\u{08}\u{0C}\n\r\t\\"))
        var bytes = JSONMessageParser()
        #expect(bytes.feed([0x22, 0xC3, 0xA9, 0x22]) == [.value(.string("é"))])
        #expect(try parse(#""\u0000""#).get() == .string("\u{0}"))
    }

    @Test func integersWidenAsQemuDoes() throws {
        #expect(try parse("9223372036854775807").get() == .int(Int64.max))
        #expect(try parse("-9223372036854775808").get() == .int(Int64.min))
        #expect(try parse("18446744073709551615").get() == .uint(UInt64.max))
        #expect(try parse("18446744073709551616").get() == .double(18_446_744_073_709_551_616))
        #expect(try parse("-9223372036854775809").get() == .double(-9_223_372_036_854_775_808.0))
        #expect(try parse("-0").get() == .int(0))
        #expect(try parse("1e3").get() == .double(1000))
        #expect(try parse("0.25E-1").get() == .double(0.025))
    }

    /// Messages checked against qemu-img 7.2's reading of "json:<text>".
    @Test(arguments: [
        (#"{"a" 1}"#, "JSON parse error, missing : in object pair"),
        ("[1,]", "JSON parse error, expecting value"),
        (#"{"a":1,"a":2}"#, "JSON parse error, duplicate key"),
        ("nul", "JSON parse error, invalid keyword 'nul'"),
        (#"{"a": x}"#, "JSON parse error, invalid keyword 'x'"),
        (#"{"a":1}{"b":2}"#, "Expecting at most one JSON value"),
        ("", "Expecting a JSON value"),
        ("  ", "Expecting a JSON value"),
        (#"{"a":1"#, "JSON parse error, premature EOI"),
        (#""abc"#, #"JSON parse error, stray '"abc'"#),
        (#"{"a":"\u12"}"#, #"JSON parse error, \u12" is not a valid Unicode character"#),
        (#"{"a":"\uD800"}"#, #"JSON parse error, \uD800 is not a valid Unicode character"#),
        (#"{"a":"\uD800\u0041"}"#, #"JSON parse error, \uD800 is not a valid Unicode character"#),
        (#"{"a":"\q"}"#, "JSON parse error, invalid escape sequence in string"),
        (#"{"a":01}"#, "JSON parse error, stray '01'"),
        ("1 2", "Expecting at most one JSON value"),
        (#"{"a":[}"#, "JSON parse error, expecting value"),
        ("{1:2}", "JSON parse error, key is not a string in object"),
        (#"{"a":1 "b":2}"#, "JSON parse error, expected separator in dict"),
        ("[1 2]", "JSON parse error, expected separator in list"),
        (#"{"a": tru}"#, "JSON parse error, invalid keyword 'tru'"),
        (#"{"a": 1e}"#, "JSON parse error, stray '1e}'"),
        (#"{"a": -}"#, "JSON parse error, stray '-}'"),
        (#"{"a": 1.}"#, "JSON parse error, stray '1.}'"),
        (#"{"a":"\uFFFE"}"#, #"JSON parse error, \uFFFE is not a valid Unicode character"#),
    ])
    func errorsReadLikeQemus(text: String, expected: String) {
        #expect(message(text) == expected)
    }

    @Test func invalidUtf8InStringsIsRejected() {
        var parser = JSONMessageParser()
        // A lone lead byte, an overlong form, a surrogate, a noncharacter.
        for bad: [UInt8] in [[0xC3], [0xC1, 0x81], [0xED, 0xA0, 0x80], [0xEF, 0xBF, 0xBE]] {
            #expect(parser.feed([0x22] + bad + [0x22]) == [.error("JSON parse error, invalid UTF-8 sequence in string")])
        }
        // Modified UTF-8's NUL (C0 80) is accepted.
        #expect(parser.feed([0x22, 0xC0, 0x80, 0x22]) == [.value(.string("\u{0}"))])
        // Bytes 0xFE/0xFF never occur: the lexer stops at them, then skips
        // what follows up to a structural or control character.
        #expect(parser.feed([0x22, 0xFF, 0x22, 0x31, 0x20]) == [.error("JSON parse error, stray '\"\u{FFFD}'")])
        #expect(parser.feed("\n2 ") == [.value(.int(2))])
    }

    @Test func streamYieldsConcatenatedValuesInOrder() {
        var parser = JSONMessageParser()
        let out = parser.feed(#"{"execute": "a"}{"execute":"b", "id": 2}[1]"s"{}"#)
        #expect(out == [
            .value(.object([("execute", .string("a"))])),
            .value(.object([("execute", .string("b")), ("id", .int(2))])),
            .value(.array([.int(1)])),
            .value(.string("s")),
            .value(.object([])),
        ])
        // A number or keyword needs the byte after it (or the end) to finish.
        #expect(parser.feed("12") == [])
        #expect(parser.feed(" ") == [.value(.int(12))])
        #expect(parser.feed("true") == [])
        #expect(parser.flush() == [.value(.bool(true))])
    }

    @Test func valuesMaySpanFeedsAndLines() {
        let text = "{\"execute\":\n  \"query-block\",\r\n \"arguments\": {'x': [1,\n2]}}\n"
        var whole = JSONMessageParser()
        let expected = whole.feed(text)
        #expect(expected.count == 1)
        var bytewise = JSONMessageParser()
        var got: [JSONParseOutcome] = []
        for byte in text.utf8 { got += bytewise.feed([byte]) }
        #expect(got == expected)
        #expect(bytewise.flush() == [])
    }

    @Test func errorsResetTheStreamAndItRecovers() {
        var parser = JSONMessageParser()
        // A stray byte ends the message; the lexer skips to the next
        // structural character, so the lone "}" is a message of its own.
        #expect(parser.feed(#"{"a": X}"#) == [
            .error("JSON parse error, stray 'X'"),
            .error("JSON parse error, expecting value"),
        ])
        #expect(parser.feed(#"{"ok": 1}"#) == [.value(.object([("ok", .int(1))]))])
        // 0xFF (a QMP client's reset byte) abandons a half-read message.
        #expect(parser.feed(Array(#"{"a": [1, "#.utf8) + [0xFF]) == [.error("JSON parse error, stray '\u{FFFD}'")])
        #expect(parser.feed("{}") == [.value(.object([]))])
        // Too many closers is an error at once.
        #expect(parser.feed("]") == [.error("JSON parse error, expecting value")])
        // An unfinished message at the end of input.
        #expect(parser.feed("[1,") == [])
        #expect(parser.flush() == [.error("JSON parse error, premature EOI")])
    }

    @Test func nestingIsBounded() {
        var parser = JSONMessageParser()
        let deep = String(repeating: "[", count: 1024) + String(repeating: "]", count: 1024)
        let ok = parser.feed(deep)
        #expect(ok.count == 1)
        if case let .value(v) = ok.first {
            var depth = 0
            var node = v
            while case let .array(items) = node, let first = items.first {
                depth += 1
                node = first
            }
            #expect(depth == 1023) // the innermost is empty
        }
        let tooDeep = parser.feed(String(repeating: "[", count: 1025))
        #expect(tooDeep == [.error("JSON nesting depth limit exceeded")])
        // Far deeper input costs nothing: every 1025th bracket is an error.
        var other = JSONMessageParser()
        let outcomes = other.feed(String(repeating: "[", count: 100_000))
        #expect(outcomes.count == 100_000 / 1025)
        #expect(outcomes.allSatisfy { $0 == .error("JSON nesting depth limit exceeded") })
        #expect(other.flush() == [.error("JSON parse error, premature EOI")])
    }

    @Test func tokenSizeAndCountAreBounded() {
        let limits = JSONMessageParser.Limits(maxTokenBytes: 64, maxTokenCount: 10, maxNesting: 1024)
        var parser = JSONMessageParser(limits: limits)
        let long = "\"" + String(repeating: "a", count: 100) + "\""
        let out = parser.feed(long)
        #expect(out.first == .error("JSON token size limit exceeded"))
        var counted = JSONMessageParser(limits: limits)
        #expect(counted.feed("[1,2,3,4,5,6]").first == .error("JSON token count limit exceeded"))
        #expect(counted.feed("[1,2,3,4]") == [.value(.array([.int(1), .int(2), .int(3), .int(4)]))])
    }

    @Test func printedValuesParseBack() throws {
        let value = JSONValue.object([
            ("s", .string("tab\t quote\" é 😀 \u{0}")),
            ("n", .array([.int(-5), .uint(UInt64.max), .double(0.1), .null])),
            ("o", .object([("x", .bool(true))])),
        ])
        for pretty in [false, true] {
            let back = try parse(value.qemuJSON(pretty: pretty)).get()
            let original = value.qemuJSON()
            #expect(back.qemuJSON() == original)
        }
    }
}
