// The pieces of `info`: the format-specific block in QEMU's order and the
// VM state offset. (The bitmap directory reader is Qcow2's, tested with
// qemu-img info.)
import Qcow2
import Testing
@testable import QcowKitCommands

@Suite("qemu-io info pieces")
struct IOInfoTests {
    // The order is QEMU's QDict order, as qemu-io prints it.
    @Test("format-specific information: the block qemu-img info and qemu-io's info print")
    func formatSpecificDump() {
        var info = Qcow2FormatInfo(compat: "1.1", refcountBits: 16, compressionType: .zlib)
        info.lazyRefcounts = false
        info.corrupt = false
        info.extendedL2 = true
        info.bitmaps = [BitmapInfo(name: "b0", granularity: 65536, flags: [.inUse, .auto]),
                        BitmapInfo(name: "b1", granularity: 131_072, flags: [])]
        #expect(info.humanText == """
            Format specific information:
                compat: 1.1
                compression type: zlib
                lazy refcounts: false
                bitmaps:
                    [0]:
                        flags:
                            [0]: in-use
                            [1]: auto
                        name: b0
                        granularity: 65536
                    [1]:
                        flags:
                        name: b1
                        granularity: 131072
                refcount bits: 16
                corrupt: false
                extended l2: true

            """)
        let v2 = Qcow2FormatInfo(compat: "0.10", refcountBits: 16, compressionType: .zlib)
        #expect(v2.humanText == """
            Format specific information:
                compat: 0.10
                compression type: zlib
                refcount bits: 16

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
}
