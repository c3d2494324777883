import Testing
import QemuJSON

@Suite struct QemuJSONPrinterTests {
    @Test func compactStyleIsQmps() {
        let reply = JSONValue.object([("return", .object([])), ("id", .int(1))])
        #expect(reply.qemuJSON() == #"{"return": {}, "id": 1}"#)
        let list = JSONValue.array([.int(1), .string("a"), .array([]), .null, .bool(false)])
        #expect(list.qemuJSON() == #"[1, "a", [], null, false]"#)
        #expect(JSONValue.object([]).qemuJSON() == "{}")
        #expect(JSONValue.string("x").qemuJSON() == #""x""#)
    }

    @Test func qmpMessagesComeOutInQemusKeyOrder() {
        // As QEMU sends them, whatever order they were built in.
        let event = JSONValue.object([
            ("event", .string("STOP")),
            ("data", .object([])),
            ("timestamp", .object([("microseconds", .int(2)), ("seconds", .int(1))])),
        ])
        #expect(event.qemuJSON() == #"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP", "data": {}}"#)
        let error = JSONValue.object([("error", .object([("desc", .string("d")), ("class", .string("GenericError"))]))])
        #expect(error.qemuJSON() == #"{"error": {"class": "GenericError", "desc": "d"}}"#)
        #expect(error.qemuJSON(keyOrder: .insertion) == #"{"error": {"desc": "d", "class": "GenericError"}}"#)
    }

    @Test func prettyStyleIsQemuImgs() {
        // qemu-img info --output=json of an image with a bitmap without flags.
        let value = JSONValue.object([
            ("virtual-size", .int(1_650_341_183_488)),
            ("format-specific", .object([
                ("type", .string("qcow2")),
                ("data", .object([
                    ("compat", .string("1.1")),
                    ("bitmaps", .array([
                        .object([("name", .string("bm1")), ("granularity", .uint(65536)),
                                 ("flags", .array([.string("auto")]))]),
                        .object([("name", .string("bm2")), ("granularity", .uint(1_048_576)), ("flags", .array([]))]),
                    ])),
                ])),
            ])),
            ("dirty-flag", .bool(false)),
        ])
        let expected = """
            {
                "virtual-size": 1650341183488,
                "format-specific": {
                    "type": "qcow2",
                    "data": {
                        "compat": "1.1",
                        "bitmaps": [
                            {
                                "flags": [
                                    "auto"
                                ],
                                "name": "bm1",
                                "granularity": 65536
                            },
                            {
                                "flags": [
                                ],
                                "name": "bm2",
                                "granularity": 1048576
                            }
                        ]
                    }
                },
                "dirty-flag": false
            }
            """
        #expect(value.qemuJSON(pretty: true) == expected)
    }

    @Test func prettyEmptyContainersCloseOnTheirOwnLine() {
        #expect(JSONValue.object([]).qemuJSON(pretty: true) == "{\n}")
        #expect(JSONValue.array([]).qemuJSON(pretty: true) == "[\n]")
        #expect(JSONValue.object([("return", .object([]))]).qemuJSON(pretty: true) == "{\n    \"return\": {\n    }\n}")
        #expect(JSONValue.int(5).qemuJSON(pretty: true) == "5")
    }

    @Test func stringsAreEscapedAsQemuDoes() {
        // The same characters qemu-img printed for such a file name.
        let name = "x\tb\"\\c\u{01}\u{7F}é😀\u{FFFD}.raw"
        #expect(JSONValue.string(name).qemuJSON() == #""x\tb\"\\c\u0001\u007F\u00E9\uD83D\uDE00\uFFFD.raw""#)
        #expect(JSONValue.string("\u{08}\u{0C}\n\r/'").qemuJSON() == #""\b\f\n\r/'""#)
        // QEMU carries U+0000 (as C0 80) but no noncharacters.
        #expect(JSONValue.string("a\u{0}b").qemuJSON() == #""a\u0000b""#)
        var nonCharacters = String.UnicodeScalarView()
        for cp: UInt32 in [0xFFFE, 0xFDD0, 0x10FFFF] { nonCharacters.append(Unicode.Scalar(cp)!) }
        #expect(JSONValue.string(String(nonCharacters)).qemuJSON() == #""\uFFFD\uFFFD\uFFFD""#)
        #expect(JSONValue.string("\u{10000}").qemuJSON() == #""\uD800\uDC00""#)
        #expect(JSONValue.object([("k\"", .null)]).qemuJSON() == #"{"k\"": null}"#)
    }

    @Test(arguments: [
        (JSONValue.int(Int64.min), "-9223372036854775808"),
        (.uint(UInt64.max), "18446744073709551615"),
        (.double(1.5), "1.5"),
        (.double(0.1), "0.10000000000000001"),
        (.double(1e300), "1.0000000000000001e+300"),
        (.double(-0.0), "-0"),
        (.double(100), "100"),
        (.double(.infinity), "inf"),
    ])
    func numbersPrintAsCDoes(value: JSONValue, text: String) {
        #expect(value.qemuJSON() == text)
    }

    @Test func keysOfOneBucketComeNewestFirst() {
        // "aa"/"aq" and "ab"/"ar" share buckets (110 and 462).
        #expect(QDictOrder.bucket("aa") == QDictOrder.bucket("aq"))
        let value = JSONValue.object([("aa", .int(1)), ("ar", .int(2)), ("aq", .int(3)), ("ab", .int(4))])
        #expect(value.qemuJSON() == #"{"aq": 3, "aa": 1, "ab": 4, "ar": 2}"#)
        // A repeated key keeps its first place and takes the last value.
        let repeated = JSONValue.object([("aa", .int(1)), ("aq", .int(2)), ("aa", .int(9))])
        #expect(repeated.qemuJSON() == #"{"aq": 2, "aa": 9}"#)
    }

    @Test func hashMatchesQemusTdbHash() {
        // Values computed from QEMU's definition.
        #expect(QDictOrder.hash("") == 12345)
        #expect(QDictOrder.hash("a") == 155_874_025)
        #expect(QDictOrder.hash("return") == 4_214_570_897)
        #expect(QDictOrder.bucket("virtual-size") == 309)
        #expect(QDictOrder.bucket("backing-filename-format") == 206)
    }

    @Test func humanDumpMatchesFormatSpecificBlock() {
        let data = JSONValue.object([
            ("compat", .string("1.1")),
            ("lazy-refcounts", .bool(true)),
            ("bitmaps", .array([
                .object([("name", .string("bm1")), ("granularity", .uint(65536)), ("flags", .array([.string("auto")]))]),
                .object([("name", .string("bm2")), ("granularity", .uint(1_048_576)), ("flags", .array([]))]),
            ])),
            ("refcount-bits", .int(64)),
            ("compression-type", .string("zstd")),
        ])
        let expected = """
                compat: 1.1
                compression type: zstd
                lazy refcounts: true
                bitmaps:
                    [0]:
                        flags:
                            [0]: auto
                        name: bm1
                        granularity: 65536
                    [1]:
                        flags:
                        name: bm2
                        granularity: 1048576
                refcount bits: 64

            """
        #expect(data.qemuHumanDump(indentation: 1) == expected)
    }
}
