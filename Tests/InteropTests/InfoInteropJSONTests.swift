// QEMU's JSON parser is reachable through qemu-img: a "json:" file name is
// parsed with it, and its message is reported ("Could not parse the JSON
// options: ..."). Our parser must accept and refuse the same texts with the
// same messages.
import Testing
import QemuJSON

@Suite struct InfoInteropJSONTests {
    @Test(arguments: [
        #"{"a" 1}"#, "[1,]", #"{"a":1,"a":2}"#, "nul", #"{"a": x}"#, #"{"a": X}"#, #"{"a":1}{"b":2}"#,
        "", "  ", #"{"a":1"#, #""abc"#, #"{"a":"\u12"}"#, #"{"a":"\uD800"}"#, #"{"a":"\uD800\u0041"}"#,
        #"{"a":"\uDC00"}"#, #""\uD83D\uDE0""#, #"{"a":"\q"}"#, #"{"a":01}"#, "1 2", #"{"a":[}"#, "{1:2}",
        #"{"a":1 "b":2}"#, "[1 2]", #"{"a": tru}"#, #"{"a": 1e}"#, #"{"a": -}"#, #"{"a": 1.}"#,
        #"{"a":"\uFFFE"}"#, "[[[[", "}", "]]", ":", #"{"a":[1,{"b":}]}"#, #"['x', 'y\'z']"#,
        #"{"a": 1, }"#, #"[1, 2, ]"#, "[-01]", "[1.5e+]", "[--1]", "{\"a\":\"tab\there\"}",
        // Valid texts: qemu-img goes past parsing and complains about the options.
        #"{"a": 1}"#, #"{'a': 'b', "c": [1, 2.5e3, -0, true, null]}"#, #""\u00E9\uD83D\uDE00""#,
    ])
    func messagesMatchQemuImgJsonFilenames(text: String) throws {
        let qemu = try InfoTool.run("qemu-img", ["info", "json:" + text])
        let marker = "Could not parse the JSON options: "
        let qemuMessage = qemu.stderr.range(of: marker).map {
            String(qemu.stderr[$0.upperBound...]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        switch JSONValue.parse(text) {
        case .success:
            #expect(qemuMessage == nil, "qemu-img refused \(text): \(qemu.stderr)")
        case let .failure(error):
            #expect(qemuMessage == error.message, "\(text)")
        }
    }
}
