// qemu-io's figures: cvtstr sizes, timestr times, the request report, and
// the -v hex dump. Expected strings are qemu-io 7.2's.
import Testing
@testable import QcowKitCommands

@Suite("qemu-io reports and dumps")
struct IOReportTests {
    @Test("sizes as cvtstr prints them", arguments: [
        (0.0, "0 bytes"), (1, "1 bytes"), (40, "40 bytes"), (1023, "1023 bytes"),
        (184.141376, "184.141376 bytes"), (12.0005, "12 bytes"),   // cut at the first ".000", as qemu-io does
        (1024, "1 KiB"), (1536, "1.500 KiB"), (197_120, "192.500 KiB"), (65536, "64 KiB"),
        (1_048_576, "1 MiB"), (67_108_864, "64 MiB"), (1_073_741_824 * 5.849, "5.849 GiB"),
        (1_099_511_627_776, "1 TiB"), (1_125_899_906_842_624, "1 PiB"), (1_152_921_504_606_846_976, "1 EiB"),
        (Double.infinity, "inf EiB"),
    ] as [(Double, String)])
    func sizes(value: Double, text: String) {
        #expect(IOReport.size(value) == text)
    }

    @Test("times: plain under a second, H:MM:SS.ss otherwise or with -C", arguments: [
        (0, 0, false, "00.00 sec"), (0, 5_000_000, false, "00.01 sec"), (0, 994_000_000, false, "00.99 sec"),
        (0, 0, true, "0:00:00.00"), (2, 500_000_000, false, "0:00:02.50"), (4079, 740_000_000, false, "1:07:59.74"),
        (59, 996_000_000, true, "0:00:60.00"),
    ])
    func times(seconds: Int, nanoseconds: Int, fixed: Bool, text: String) {
        #expect(IOReport.time(.init(seconds: seconds, nanoseconds: nanoseconds), fixed: fixed) == text)
    }

    @Test("the two-line report and the -C line")
    func reports() {
        let half = IOReport.Elapsed(seconds: 0, nanoseconds: 500_000_000)
        #expect(IOReport.report("read", elapsed: half, offset: 1_048_576, count: 65536, total: 65536, ops: 1, machine: false)
                == "read 65536/65536 bytes at offset 1048576\n64 KiB, 1 ops; 00.50 sec (128 KiB/sec and 2.0000 ops/sec)\n")
        #expect(IOReport.report("wrote", elapsed: half, offset: 0, count: 512, total: 512, ops: 1, machine: true)
                == "512,1,0:00:00.50,1024.000,2.000\n")
        #expect(IOReport.report("discard", elapsed: half, offset: 0, count: 0, total: 0, ops: 1, machine: false)
                == "discard 0/0 bytes at offset 0\n0 bytes, 1 ops; 00.50 sec (0 bytes/sec and 2.0000 ops/sec)\n")
    }

    @Test("hex dump: offset, bytes, letters and digits only, short last line unpadded")
    func hexDump() {
        let capture = IOCapture()
        let bytes: [UInt8] = Array(0xc8...0xd7) + Array("AZaz09 .-".utf8) + [0x7f]
        bytes.withUnsafeBytes { IOHexDump.dump($0, offset: 990, into: capture.console) }
        capture.console.flush()
        #expect(capture.output == """
            000003de:  c8 c9 ca cb cc cd ce cf d0 d1 d2 d3 d4 d5 d6 d7  ................
            000003ee:  41 5a 61 7a 30 39 20 2e 2d 7f  AZaz09....

            """)
    }

    @Test("hex dump offsets grow past eight digits")
    func wideOffsets() {
        let capture = IOCapture()
        [UInt8](repeating: 0x41, count: 2).withUnsafeBytes { IOHexDump.dump($0, offset: 0x1_0000_0000, into: capture.console) }
        capture.console.flush()
        #expect(capture.output == "100000000:  41 41  AA\n")
    }
}

/// A console whose output the test reads back.
final class IOCapture {
    private(set) var outputBytes: [UInt8] = []
    private(set) var errorText = ""
    var output: String { String(decoding: outputBytes, as: UTF8.self) }

    lazy var console = IOConsole(
        output: { [unowned self] in self.outputBytes.append(contentsOf: $0) },
        error: { [unowned self] in self.errorText += $0 })
}
