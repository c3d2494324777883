// The zlib and zstd cluster codecs: round trips, the "does not pay" limit,
// sector padding, corrupt input, and byte-identity with what qemu-img writes.
import Foundation
import Testing
@testable import Qcow2

/// Deterministic pseudo-random bytes (SplitMix64), for incompressible data.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out = [UInt8]()
    out.reserveCapacity(count)
    while out.count < count {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z ^= z >> 31
        for i in 0..<8 where out.count < count { out.append(UInt8(truncatingIfNeeded: z >> (UInt64(i) * 8))) }
    }
    return out
}

/// Compressible but not trivial: numbered text lines.
func textCluster(_ size: Int, tag: String) -> [UInt8] {
    var out = [UInt8]()
    var line = 0
    while out.count < size {
        out += Array("\(tag) line \(line): the quick brown fox jumps over the lazy dog\n".utf8)
        line += 1
    }
    return Array(out.prefix(size))
}

@Suite struct CompressionTests {
    static let types: [CompressionType] = [.zlib, .zstd]

    @Test(arguments: types, [9, 12, 16, 21])
    func roundTrip(_ type: CompressionType, _ clusterBits: Int) throws {
        let codec = ClusterCodecs.codec(for: type)
        let size = 1 << clusterBits
        for input in [textCluster(size, tag: "a"), [UInt8](repeating: 0, count: size), [UInt8](repeating: 0xa5, count: size)] {
            let compressed = try #require(try codec.compress(input, limit: size))
            #expect(compressed.count < size)
            #expect(try codec.decompress(compressed, outputLength: size) == input)
        }
    }

    @Test(arguments: types)
    func incompressibleDataDoesNotFit(_ type: CompressionType) throws {
        let codec = ClusterCodecs.codec(for: type)
        #expect(try codec.compress(pseudoRandomBytes(65536, seed: 1), limit: 65536) == nil)
        #expect(try codec.compress(pseudoRandomBytes(512, seed: 2), limit: 512) == nil)
        // The limit is strict: a result must be smaller than it.
        let text = textCluster(65536, tag: "limit")
        let size = try #require(try codec.compress(text, limit: 65536)).count
        #expect(try codec.compress(text, limit: size) == nil)
        #expect(try codec.compress(text, limit: size + 4096)?.count == size)
    }

    @Test(arguments: types)
    func trailingSectorPaddingIsIgnored(_ type: CompressionType) throws {
        let codec = ClusterCodecs.codec(for: type)
        let input = textCluster(65536, tag: "pad")
        let compressed = try #require(try codec.compress(input, limit: 65536))
        // Stored data runs to the end of a sector, and the next compressed
        // cluster may share that sector: both kinds of trailing bytes are ignored.
        let padded = compressed + [UInt8](repeating: 0, count: 511)
        #expect(try codec.decompress(padded, outputLength: 65536) == input)
        let shared = compressed + pseudoRandomBytes(300, seed: 3)
        #expect(try codec.decompress(shared, outputLength: 65536) == input)
    }

    @Test(arguments: types)
    func corruptInputIsAnError(_ type: CompressionType) throws {
        let codec = ClusterCodecs.codec(for: type)
        let input = textCluster(65536, tag: "corrupt")
        let compressed = try #require(try codec.compress(input, limit: 65536))
        // Cut short: the cluster cannot be filled.
        #expect(throws: Qcow2Error.self) { try codec.decompress(Array(compressed.prefix(compressed.count / 2)), outputLength: 65536) }
        // Nothing at all.
        #expect(throws: Qcow2Error.self) { try codec.decompress([], outputLength: 65536) }
        // Garbage.
        #expect(throws: Qcow2Error.self) { try codec.decompress(pseudoRandomBytes(4096, seed: 4), outputLength: 65536) }
        // Data of a bigger cluster than the one asked for: QEMU stops zlib once
        // the cluster is full, but refuses a zstd frame that goes on.
        if type == .zlib {
            #expect(try codec.decompress(compressed, outputLength: 4096) == Array(input.prefix(4096)))
        } else {
            #expect(throws: Qcow2Error.self) { try codec.decompress(compressed, outputLength: 4096) }
        }
        // Damaged bytes in the middle: an error or different data, never a crash.
        var damaged = compressed
        for i in stride(from: 8, to: damaged.count, by: 97) { damaged[i] ^= 0x5a }
        if let output = try? codec.decompress(damaged, outputLength: 65536) { #expect(output != input) }
    }

    @Test func zstdShortFrameLeavesClusterUnfilled() throws {
        // A complete frame of fewer bytes than the cluster, then sector padding.
        let codec = ZstdCodec()
        let small = try #require(try codec.compress(textCluster(4096, tag: "short"), limit: 4096))
        #expect(throws: Qcow2Error.self) {
            try codec.decompress(small + [UInt8](repeating: 0, count: 200), outputLength: 65536)
        }
    }

    @Test(arguments: types)
    func bytesMatchQemuImg(_ type: CompressionType) throws {
        // qemu-img convert -c writes compressed clusters; ours must be the same
        // bytes, and we must read theirs (each followed by whatever shares its
        // last sector).
        let scratch = try ScratchDirectory()
        let clusters: [[UInt8]] = [
            textCluster(65536, tag: "zero"), pseudoRandomBytes(65536, seed: 5),
            textCluster(65536, tag: "two"), [UInt8](repeating: 0x41, count: 65536),
        ]
        let raw = scratch.file("data.raw"), image = scratch.file("data.qcow2")
        try Data(clusters.flatMap { $0 }).write(to: URL(fileURLWithPath: raw))
        let converted = try run(QemuImg.path, ["convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=\(type)", raw, image])
        try #require(converted.status == 0, "qemu-img convert: \(converted.stderr)")

        let qcow2 = try Qcow2Image.open(path: image)
        defer { try? qcow2.close() }
        let h = qcow2.header
        #expect(h.compressionType == type)
        let codec = ClusterCodecs.codec(for: type)
        let l1 = L1Entry(rawValue: try qcow2.file.readExactly(8, at: h.l1TableOffset, step: "L1").be(UInt64.self, at: 0))
        let l2 = try qcow2.file.readExactly(8 * clusters.count, at: l1.l2Offset, step: "L2")
        for (index, cluster) in clusters.enumerated() {
            let entry = L2Entry(rawValue: l2.be(UInt64.self, at: 8 * index))
            let ours = try codec.compress(cluster, limit: 65536)
            switch entry.type(clusterBits: h.clusterBits) {
            case let .compressed(d):
                let stored = try qcow2.file.readExactly(Int(d.byteLength), at: d.hostOffset, step: "cluster")
                #expect(try codec.decompress(stored, outputLength: 65536) == cluster, "cluster \(index)")
                let mine = try #require(ours, "cluster \(index): qemu-img compressed it, we did not")
                #expect(Array(stored.prefix(mine.count)) == mine, "cluster \(index)")
                #expect(CompressedClusterDescriptor(hostOffset: d.hostOffset, compressedLength: UInt64(mine.count)) == d)
            case .normal:
                #expect(ours == nil, "cluster \(index): stored uncompressed by qemu-img")
            default:
                Issue.record("cluster \(index): unexpected entry \(entry)")
            }
        }
    }
}
