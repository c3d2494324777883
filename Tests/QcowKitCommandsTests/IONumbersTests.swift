// qemu-io's number parsing (cvtnum over qemu_strtosz, and pattern bytes).
// The expected values are what qemu-io 7.2 reports for the same inputs
// (seen through `alloc 0 X` on a large image).
import Testing
@testable import QcowKitCommands

@Suite("qemu-io numbers")
struct IONumbersTests {
    @Test("sizes qemu-io accepts", arguments: [
        ("0", 0), ("512", 512), ("1.", 1), ("1.b", 1), ("1B", 1), ("1b", 1), ("012", 12), ("+5", 5), ("\t5", 5),
        ("1k", 1024), ("1K", 1024), ("1m", 1 << 20), ("1g", 1 << 30), ("1T", 1 << 40), ("1.k", 1024),
        ("0.5k", 512), ("1.1k", 1126), ("1.5T", 1_649_267_441_664), ("0.3333333333333333k", 341),
        ("0.0009765625k", 1), ("0.00048828125k", 1), ("1.00048828125k", 1025),
        ("1.9999999999999999999k", 1024), ("0.99999999999999T", 1 << 40),
        ("0.1234567890123456789012345678901234567890k", 126),
        ("0x1f", 31), ("0X1F", 31), ("0x1fk", 31744), ("0x7fffffffffffffff", Int64.max),
        ("9223372036854775807", Int64.max),
        ("1.5e999k", 1), ("1.5e999kk", 1024), ("1.5e-999k", 1),
    ] as [(String, Int64)])
    func accepted(text: String, value: Int64) {
        #expect(IONumbers.size(text) == .success(value))
    }

    @Test("sizes qemu-io refuses", arguments: [
        ("1.5b", IONumbers.ParseError.invalid), ("1.5", .invalid), ("1.7e1k", .invalid), ("0x1.5", .invalid),
        ("00x1", .invalid), ("1kb", .invalid), ("inf", .invalid), ("nan", .invalid), (".5k", .invalid),
        ("-0", .invalid), ("-1", .invalid), ("abc", .invalid), ("", .invalid), ("1x", .invalid), ("5k5", .invalid),
        ("1e3", .invalid), ("2.x", .invalid), ("1.inf", .invalid), ("1.5e999", .invalid), ("8Ex", .invalid),
        ("99999999999999999999k", .invalid), ("0x99999999999999999999k", .invalid),
        ("18446744073709551615", .tooLarge), ("18446744073709551616", .tooLarge), ("9223372036854775808", .tooLarge),
        ("8E", .tooLarge), ("17179869184G", .tooLarge), ("0x8000000000000000", .tooLarge),
        ("99999999999999999999", .tooLarge), ("0x99999999999999999999", .tooLarge),
    ])
    func refused(text: String, error: IONumbers.ParseError) {
        #expect(IONumbers.size(text) == .failure(error))
    }

    @Test("a suffix on a hex number is deprecated, not refused")
    func hexSuffixWarning() {
        var warnings: [String] = []
        #expect(IONumbers.size("0x1fk", warn: { warnings.append($0) }) == .success(31744))
        #expect(warnings == ["Using a multiplier suffix on hex numbers is deprecated: 0x1fk"])
        warnings = []
        _ = IONumbers.size("0x10", warn: { warnings.append($0) })
        #expect(warnings.isEmpty)
    }

    @Test("parse error messages")
    func messages() {
        #expect(IONumbers.message(for: .invalid, in: "1x")
                == "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1x")
        #expect(IONumbers.message(for: .tooLarge, in: "8E") == "Parsing error: argument too large -- 8E")
    }

    @Test("pattern bytes: any base, 0...255, nothing after", arguments: [
        ("0", UInt8?(0)), ("255", 255), ("0xcd", 0xcd), ("010", 8), ("0x41", 0x41), ("\t1", 1),
        ("256", nil), ("-1", nil), ("x", nil), ("0x", nil), ("1 ", nil), ("0x100", nil),
    ])
    func patterns(text: String, byte: UInt8?) {
        #expect(IONumbers.patternByte(text) == byte)
    }
}
