// `qcowkit io` against qemu-io 7.2 on qcow2 images qemu-io wrote: reads,
// pattern checks, dumps, allocation queries, length and info must print the
// same (timings aside), opened read-only or read-write.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io on qcow2 images (reading)")
struct IOInteropQcow2ReadTests {
    /// A backing chain with data, zero, compressed and discarded clusters,
    /// and images with other header options.
    private static func fixtures() throws -> IOTwinDirectories {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 2M 64k", "base.qcow2"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "4M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 512k 64k", "-c", "write -z 1M 128k",
             "-c", "write -c -P 0x44 3M 64k", "-c", "write -P 0x41 1000 10", "-c", "discard 2M 64k", "top.qcow2"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "1M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 7 64k 64k", "v2.qcow2"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o",
             "lazy_refcounts=on,refcount_bits=1,extended_l2=on,compression_type=zstd,cluster_size=16k", "v3.qcow2", "10M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 9 5k 3k", "-c", "write -z 64k 2k", "-c", "write -c 1M 16k", "v3.qcow2"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "bitmaps.qcow2", "1M"],
            ["qemu-img", "bitmap", "--add", "bitmaps.qcow2", "b0"],
            ["qemu-img", "bitmap", "--add", "-g", "128k", "--disable", "bitmaps.qcow2", "second"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", "big.qcow2", "3T"],
        ])
        return twins
    }

    static let cases: [[String]] = [
        ["map", "alloc 0 4M", "alloc 1000", "alloc 512k 1M", "alloc 4M", "alloc 3M 2M", "alloc 4095k 1M",
         "alloc 0x10 0x20", "length", "info"],
        ["read -P 0x11 0 512k", "read -P 0x33 512k 64k", "read -v 990 30", "read -P 0 1M 128k", "read -P 0x44 3M 64k",
         "read -P 0x22 2M 64k", "read -P 0 2M 64k", "read -q -P 0x11 600k 10", "readv -P 0x11 700k 512 1k",
         "read -P 0x11 -s 10 -l 20 990 100", "read 4M 1", "read 4095k 2k", "read -C 0 1", "read -v 3211248 32"],
        ["read -v 1048568 16", "read -P 0x11 1048064 512", "aio_read -P 0x33 512k 64k", "aio_flush",
         "read -b -P 0 0 512", "read -b 1T 4k", "read -b 7E 512", "read -b 9223372036854775296 512", "read -b 1 1",
         "read 0 0", "read 4M 0", "read 4194305 0"],
    ]

    @Test("a backing chain: reads, checks, dumps, allocation", arguments: cases)
    func chain(_ commands: [String]) throws {
        let twins = try Self.fixtures()
        for options in [["-r"], ["-f", "qcow2"], ["-r", "-U"]] {
            let arguments = options + commands.flatMap { ["-c", $0] } + ["top.qcow2"]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
        }
    }

    @Test("header variants: info, map, alloc and reads", arguments: [
        ("v2.qcow2", ["info", "map", "alloc 0 1M", "read -P 7 64k 64k", "read -v 65528 16", "read -b 0 512"]),
        ("v3.qcow2", ["info", "map", "alloc 0 10M", "alloc 4k 8k", "read -P 9 5k 3k", "read -P 0 64k 2k",
                      "read -P 0xcd 1M 16k", "read -v 5112 16", "length"]),
        ("bitmaps.qcow2", ["info", "map", "length"]),
        ("base.qcow2", ["info", "map", "alloc 1M 3M", "length"]),
        ("big.qcow2", ["info", "length", "map", "alloc 1T 1T", "alloc 3298534883327 2", "read -P 0 3298534882816 512",
                       "read -b 0 512"]),
    ])
    func variants(image: String, commands: [String]) throws {
        let twins = try Self.fixtures()
        for options in [["-r"], []] {
            try twins.syncCopies()
            let arguments = options + commands.flatMap { ["-c", $0] } + [image]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
        }
    }

    @Test("open errors for qcow2 images")
    func openErrors() throws {
        let twins = try Self.fixtures()
        // Mark v3.qcow2 corrupt (incompatible feature bit 1): read-only opens still work.
        for directory in [twins.qemu, twins.ours] {
            let handle = try FileHandle(forUpdating: directory.appendingPathComponent("v3.qcow2"))
            try handle.seek(toOffset: 79)
            handle.write(Data([0x02]))
            try handle.close()
        }
        try FileManager.default.removeItem(at: twins.qemu.appendingPathComponent("base.qcow2"))
        try FileManager.default.removeItem(at: twins.ours.appendingPathComponent("base.qcow2"))
        for arguments in [["-c", "info", "v3.qcow2"], ["-r", "-c", "info", "-c", "map", "v3.qcow2"],
                          ["-c", "length", "top.qcow2"], ["-r", "-c", "length", "top.qcow2"],
                          ["-f", "raw", "-c", "read -v 0 16", "v2.qcow2"],
                          ["-f", "qcow2", "-c", "length", "nonexistent.qcow2"]] {
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(arguments)")
        }
    }

    @Test("writes refused on read-only qcow2 images leave them untouched")
    func readOnly() throws {
        let twins = try Self.fixtures()
        let arguments = ["-r", "-c", "write 0 64k", "-c", "write -z 0 64k", "-c", "discard 0 64k", "-c", "write -c 0 64k",
                         "v2.qcow2"]
        let (qemu, ours) = try twins.run(arguments)
        #expect(ours == qemu)
        #expect(try twins.bytes("v2.qcow2", in: twins.ours) == twins.bytes("v2.qcow2", in: twins.stage))
    }
}
