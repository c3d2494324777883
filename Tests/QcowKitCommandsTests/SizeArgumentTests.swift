import Testing
@testable import QcowKitCommands
import QMP

/// Expected values are what qemu-img 7.2 prints as size= for the same text.
@Suite struct SizeArgumentTests {
    static let accepted: [(String, UInt64)] = [
        ("512", 512), ("0", 0), ("64M", 64 << 20), ("64m", 64 << 20), ("1.5G", 1_610_612_736),
        ("1K", 1024), ("1k", 1024), ("1b", 1), ("1B", 1), ("1t", 1 << 40), ("1p", 1 << 50), ("1e", 1 << 60),
        ("1.k", 1024), ("1.", 1), ("1.0", 1), ("0.0k", 0), ("00012", 12), ("012", 12), ("08", 8),
        (" 12", 12), ("+12", 12), ("0x10", 16), ("0X10", 16), ("0.5k", 512), ("0.1k", 102),
        ("2.5k", 2560), ("3.3333k", 3413), ("1.23456789M", 1_294_538), ("1.0005k", 1025),
        ("1.9999k", 2048), ("0.00049k", 1), ("0.0001k", 0), ("1.0000000001k", 1024),
        ("1.999999999999999999999k", 1024), ("7.99E", 9_211_842_821_808_707_328),
        ("9223372036854775807", 9_223_372_036_854_775_807), ("18446744073709551615", .max),
    ]

    @Test(arguments: accepted)
    func parsesLikeQemu(text: String, expected: UInt64) throws {
        #expect(try QemuSize.parse(text).get().value == expected)
    }

    @Test(arguments: ["1.5", "1e3", "1.5e3k", "1kb", "12 ", ".5k", "1.5b", "0x", "", "k", "1,5k", "0x1.8", "1k2", "-1", " -5", "abc"])
    func rejectsLikeQemu(text: String) {
        #expect(throws: QemuSize.Failure.invalid) { try QemuSize.parse(text).get() }
    }

    @Test(arguments: ["16E", "18446744073709551616", "99999999999999999999"])
    func outOfRange(text: String) {
        #expect(throws: QemuSize.Failure.outOfRange) { try QemuSize.parse(text).get() }
    }

    @Test func hexWithSuffixIsFlagged() throws {
        let size = try QemuSize.parse("0x10k").get()
        #expect(size.value == 16384 && size.isHexWithSuffix)
        #expect(try QemuSize.parse("0x10").get().isHexWithSuffix == false)
        #expect(try QemuSize.parse("16k").get().isHexWithSuffix == false)
    }

    @Test func imageSizeArgumentMessages() throws {
        var warnings: [String] = []
        #expect(try ImageSizeArgument.parse("0x10k") { warnings.append($0) } == 16384)
        #expect(warnings == ["Using a multiplier suffix on hex numbers is deprecated: 0x10k"])
        for text in ["8E", "9223372036854775808", "18446744073709551616"] {
            let error = #expect(throws: CommandFailure.self) { try ImageSizeArgument.parse(text) { _ in } }
            #expect(error?.message == "Invalid image size specified. Must be between 0 and 9223372036854775807.")
        }
        let error = #expect(throws: CommandFailure.self) { try ImageSizeArgument.parse("1Q") { _ in } }
        #expect(error?.message == "Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n"
            + "qcowkit: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
        #expect(try ImageSizeArgument.parse("9223372036854775807") { _ in } == UInt64(Int64.max))
    }
}
