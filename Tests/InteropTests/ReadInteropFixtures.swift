// Images for the read-path interop tests, each made by qemu-img / qemu-io in
// a scratch directory. Data sizes stay at a few MiB so the suite is fast.
import Foundation
import Testing

struct ReadFixture: CustomTestStringConvertible, Sendable {
    var name: String
    /// Makes the images in `dir` and returns the path of the one to read.
    var make: @Sendable (ScratchDirectory) throws -> String

    var testDescription: String { name }
}

private func img(_ dir: ScratchDirectory, _ arguments: String...) throws {
    try QemuOracle.run(["qemu-img"] + arguments, in: dir.url)
}

private func io(_ dir: ScratchDirectory, _ image: String, _ commands: String..., format: String = "qcow2") throws {
    try QemuOracle.qemuIO(dir.file(image), commands, format: format)
}

/// A standard pattern of writes: data at unaligned offsets, zeroes, and
/// compressed clusters at 4 MiB (so images need at least 6 MiB).
private func writePattern(_ dir: ScratchDirectory, _ image: String, clusterSize: Int = 65536) throws {
    try QemuOracle.qemuIO(dir.file(image), [
        "write -P 0x11 1000 300k",
        "write -z 1M 100k",
        "write -P 0x12 1536k 4k",
        "write -c -P 0x13 4M \(max(clusterSize, 65536))",
    ])
}

enum ReadFixtures {
    static let all: [ReadFixture] = clusterSizes + refcountWidths + others

    static let clusterSizes: [ReadFixture] = [512, 4096, 65536, 2 << 20].map { size in
        ReadFixture(name: "cluster_size=\(size)") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=\(size)", dir.file("a.qcow2"), "6M")
            try writePattern(dir, "a.qcow2", clusterSize: size)
            return dir.file("a.qcow2")
        }
    }

    static let refcountWidths: [ReadFixture] = [1, 2, 4, 8, 16, 32, 64].map { bits in
        ReadFixture(name: "refcount_bits=\(bits)") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "refcount_bits=\(bits)", dir.file("a.qcow2"), "6M")
            try writePattern(dir, "a.qcow2")
            return dir.file("a.qcow2")
        }
    }

    static let others: [ReadFixture] = [
        ReadFixture(name: "compat=0.10") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", dir.file("a.qcow2"), "6M")
            try writePattern(dir, "a.qcow2")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "zstd compressed (convert -c)") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("src.qcow2"), "4M")
            try io(dir, "src.qcow2", "write -P 0x21 0 1M", "write -P 0x22 1536k 100k", "write -P 0x23 3M 4k")
            try img(dir, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", dir.file("src.qcow2"), dir.file("a.qcow2"))
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "zlib compressed (convert -c, 4k clusters)") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("src.qcow2"), "2M")
            try io(dir, "src.qcow2", "write -P 0x31 4096 700k", "write -P 0x32 1M 3k")
            try img(dir, "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", dir.file("src.qcow2"), dir.file("a.qcow2"))
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "extended_l2 subclusters") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", dir.file("a.qcow2"), "2M")
            try io(dir, "a.qcow2", "write -P 1 0 2k", "write -P 2 8k 4k", "write -z 64k 4k", "write -z 130k 2k",
                   "write -P 3 200k 100k", "write -c -P 4 1M 64k", "discard 204k 8k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "extended_l2 over a backing") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("base.qcow2"), "2M")
            try io(dir, "base.qcow2", "write -P 0x51 0 2M")
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k",
                    "-b", "base.qcow2", "-F", "qcow2", dir.file("a.qcow2"))
            try io(dir, "a.qcow2", "write -P 0x52 4k 4k", "write -z 20k 4k", "write -P 0x53 1M 6k", "write -z -u 1536k 8k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "zero clusters") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("a.qcow2"), "2M")
            try io(dir, "a.qcow2", "write -P 1 0 1M", "write -z 64k 128k", "write -z -u 512k 64k", "write -z 1536k 64k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "discarded clusters") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("a.qcow2"), "2M")
            try io(dir, "a.qcow2", "write -P 1 0 1M", "discard 64k 192k", "discard 960k 64k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "internal snapshot, changed after") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("a.qcow2"), "2M")
            try io(dir, "a.qcow2", "write -P 1 0 512k")
            try img(dir, "snapshot", "-c", "s1", dir.file("a.qcow2"))
            try io(dir, "a.qcow2", "write -P 2 64k 64k", "discard 128k 64k", "write -z 256k 64k", "write -P 3 1M 64k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "3-deep chain") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("base.qcow2"), "4M")
            try io(dir, "base.qcow2", "write -P 0x11 0 1M", "write -z 2M 64k", "write -c -P 0x12 3M 128k")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.file("mid.qcow2"))
            try io(dir, "mid.qcow2", "write -P 0x21 512k 64k", "write -z 64k 64k", "write -P 0x22 2M 4k", "write -z 3M 4k")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.file("top.qcow2"), "6M")
            try io(dir, "top.qcow2", "write -P 0x31 0 4k", "write -z 3136k 64k", "write -P 0x32 5M 64k")
            return dir.file("top.qcow2")
        },
        ReadFixture(name: "chain with a shorter middle layer") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("base.qcow2"), "4M")
            try io(dir, "base.qcow2", "write -P 0x61 0 4M")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.file("mid.qcow2"), "1M")
            try io(dir, "mid.qcow2", "write -P 0x62 128k 64k")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.file("top.qcow2"), "3M")
            try io(dir, "top.qcow2", "write -P 0x63 2M 64k")
            return dir.file("top.qcow2")
        },
        ReadFixture(name: "qcow2 over raw backing") { dir in
            try Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 12) }).write(to: dir.url.appendingPathComponent("base.raw"))
            try QemuOracle.run(["truncate", "-s", "3500k", dir.file("base.raw")])   // a hole at the end
            try io(dir, "base.raw", "write -z 1M 512k", format: "raw")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", dir.file("a.qcow2"), "4M")
            try io(dir, "a.qcow2", "write -P 0x41 1M 64k", "write -z 2M 64k", "write -c -P 0x42 3M 64k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "backing format probed") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("base.qcow2"), "2M")
            try io(dir, "base.qcow2", "write -P 0x71 0 1M")
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.file("a.qcow2"))
            try io(dir, "a.qcow2", "write -P 0x72 512k 64k")
            try hideBackingFormat(dir.file("a.qcow2"))
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "size not a cluster multiple") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("a.qcow2"), "1234567")
            try io(dir, "a.qcow2", "write -P 1 1179648 54784", "write -c -P 2 0 64k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "metadata preallocation") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", dir.file("a.qcow2"), "3M")
            try io(dir, "a.qcow2", "write -P 1 64k 4k", "write -P 2 1M 100k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "full preallocation") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", "-o", "preallocation=full", dir.file("a.qcow2"), "2M")
            try io(dir, "a.qcow2", "write -P 1 64k 4k")
            return dir.file("a.qcow2")
        },
        ReadFixture(name: "raw image with holes, odd size") { dir in
            try Data(repeating: 0x5a, count: 70_000).write(to: dir.url.appendingPathComponent("a.raw"))
            try QemuOracle.run(["truncate", "-s", "300001", dir.file("a.raw")])
            try io(dir, "a.raw", "write -P 3 200k 8k", format: "raw")
            return dir.file("a.raw")
        },
        ReadFixture(name: "compressed clusters in a backing") { dir in
            try img(dir, "create", "-q", "-f", "qcow2", dir.file("src.qcow2"), "2M")
            try io(dir, "src.qcow2", "write -P 0x81 0 2M")
            try img(dir, "convert", "-c", "-O", "qcow2", dir.file("src.qcow2"), dir.file("base.qcow2"))
            try img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.file("a.qcow2"))
            try io(dir, "a.qcow2", "write -P 0x82 100k 8k")
            return dir.file("a.qcow2")
        },
    ]

    /// Renames the backing-format header extension to an unknown (ignored)
    /// type, so that readers must probe the backing's format.
    static func hideBackingFormat(_ path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let header = try handle.read(upToCount: 4096) ?? Data()
        let magic: [UInt8] = [0xe2, 0x79, 0x2a, 0xca]
        guard let range = header.firstRange(of: Data(magic)) else { throw ProcessFailed(command: ["hideBackingFormat"], result: ProcessResult(status: 1, stdout: Data(), stderr: Data("no backing format extension".utf8))) }
        try handle.seek(toOffset: UInt64(range.lowerBound))
        try handle.write(contentsOf: Data([0x0e, 0x79, 0x2a, 0xca]))
    }
}
