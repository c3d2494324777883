// The pieces of `info`: QEMU's nested dump, the VM state offset, and the
// bitmap directory reader, which must refuse malformed directories cleanly.
import Qcow2
import Testing
@testable import QcowKitCommands

@Suite("qemu-io info pieces")
struct IOInfoTests {
    @Test("QEMU's dump: four spaces a level, dashes shown as spaces, lists numbered")
    func dump() {
        let value = IOFormatSpecificInfo.Value.dict([
            ("compat", .string("1.1")),
            ("bitmaps", .list([.dict([("flags", .list([.string("auto")])), ("name", .string("b0")),
                                      ("granularity", .number(65536))]),
                               .dict([("flags", .list([])), ("name", .string("b1"))])])),
            ("extended-l2", .bool(false)),
        ])
        #expect(IOFormatSpecificInfo.dump(value, indentation: 1) == """
                compat: 1.1
                bitmaps:
                    [0]:
                        flags:
                            [0]: auto
                        name: b0
                        granularity: 65536
                    [1]:
                        flags:
                        name: b1
                extended l2: false

            """)
    }

    // 64 KiB clusters map 512 MiB per L2 table; 16 KiB ones with extended L2 entries 16 MiB.
    @Test("the VM state starts at the first L2 span past the disk", arguments: [
        (16, 67_108_864, false, 536_870_912), (16, 536_870_912, false, 536_870_912),
        (16, 536_870_913, false, 1_073_741_824), (14, 10_485_760, true, 16_777_216), (16, 0, false, 0),
    ] as [(UInt32, UInt64, Bool, Int64)])
    func vmStateOffset(clusterBits: UInt32, size: UInt64, extendedL2: Bool, expected: Int64) {
        var header = Qcow2Header(clusterBits: clusterBits, size: size)
        if extendedL2 { header.incompatibleFeatures.insert(.extendedL2) }
        #expect(IOFormatSpecificInfo.vmStateOffset(header) == expected)
    }

    /// One directory entry: flags, granularity bits, extra data, name, padding.
    private func entry(_ name: String, flags: UInt32, granularityBits: UInt8, extra: Int = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        BigEndian.store(flags, into: &bytes, at: 12)
        bytes[16] = 1
        bytes[17] = granularityBits
        BigEndian.store(UInt16(name.utf8.count), into: &bytes, at: 18)
        BigEndian.store(UInt32(extra), into: &bytes, at: 20)
        bytes += [UInt8](repeating: 0xee, count: extra) + Array(name.utf8)
        while bytes.count % 8 != 0 { bytes.append(0) }
        return bytes
    }

    @Test("bitmap directory entries, extra data skipped")
    func bitmapDirectory() throws {
        let directory = entry("b0", flags: 3, granularityBits: 16) + entry("second", flags: 0, granularityBits: 17, extra: 5)
        let entries = try IOBitmapDirectory.parse(directory, count: 2)
        #expect(entries == [.init(name: "b0", inUse: true, auto: true, granularity: 65536),
                            .init(name: "second", inUse: false, auto: false, granularity: 131_072)])
    }

    /// A 24-byte entry header, zero but for one byte.
    private static func header(setting index: Int, to value: UInt8) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes[index] = value
        return bytes
    }

    @Test("malformed bitmap directories are errors, not crashes", arguments: [
        ([UInt8](repeating: 0, count: 10), 1),          // shorter than an entry
        (header(setting: 19, to: 200), 1),              // name past the end
        (header(setting: 20, to: 0xff), 1),             // extra data past the end
        (header(setting: 17, to: 64), 1),               // granularity 2^64
        ([UInt8](repeating: 0, count: 24), 2),          // fewer entries than counted
    ] as [([UInt8], Int)])
    func malformed(directory: [UInt8], count: Int) {
        #expect(throws: Qcow2Error.self) { try IOBitmapDirectory.parse(directory, count: count) }
    }
}
