// Helpers for the write path's unit tests: images made by the library's own
// creator (byte-identical to qemu-img's), opened for writing, and inspected
// through the library's tables.
import Foundation
import Testing
@testable import Qcow2

enum WriteFixture {
    /// Creates an image with `Qcow2Creator` and returns its path.
    static func create(
        _ dir: TestDirectory, _ name: String = "a.qcow2", size: UInt64, clusterSize: UInt64 = 65536,
        refcountBits: UInt64 = 16, version: UInt32 = 3, extendedL2: Bool = false, lazyRefcounts: Bool = false,
        compression: CompressionType = .zlib, backing: String? = nil, backingFormat: String? = nil
    ) throws -> String {
        var options = Qcow2CreateOptions(size: size)
        options.clusterSize = clusterSize
        options.refcountWidth = try #require(RefcountWidth(bits: refcountBits))
        options.version = try #require(Qcow2Version(rawValue: version))
        options.extendedL2 = extendedL2
        options.lazyRefcounts = lazyRefcounts
        options.compressionType = compression
        options.backingFile = backing
        options.backingFormat = backingFormat
        let path = dir.file(name)
        try Qcow2Creator.create(path: path, options: options)
        return path
    }

    static func openWritable(_ path: String) throws -> Qcow2Image {
        guard let image = try ImageOpener.open(path: path, format: .qcow2, writable: true) as? Qcow2Image else {
            throw Qcow2Error.notQcow2
        }
        return image
    }

    /// Bytes that differ from offset to offset (so misplaced data shows).
    static func pattern(_ seed: UInt8, count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7 &+ ($0 >> 9)) }
    }

    static func write(_ image: Qcow2Image, _ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try image.write($0, at: offset) }
    }

    /// The L2 entry (and bitmap) mapping `guestOffset`, as the image has it now.
    static func l2Entry(_ image: Qcow2Image, at guestOffset: UInt64) throws -> (entry: UInt64, bitmap: UInt64)? {
        let g = image.clusterMap.geometry
        return try image.clusterMap.lock.withLock { core in
            let map = core.tables
            let l1Index = Int(guestOffset >> UInt64(g.clusterBits + g.l2Bits))
            guard l1Index < map.l1.count, map.l1[l1Index] & Qcow2EntryMask.offset != 0 else { return nil }
            let table = try map.l2Table(at: map.l1[l1Index] & Qcow2EntryMask.offset, l1Index: UInt64(l1Index))
            let index = Int((guestOffset >> UInt64(g.clusterBits)) & ((1 << UInt64(g.l2Bits)) - 1))
            return (table.entry(index), table.bitmap(index))
        }
    }

    static func refcount(_ image: Qcow2Image, ofCluster index: UInt64) throws -> UInt64 {
        try image.withWriter { writer, _ in try writer.allocator.refcount(ofCluster: index) }
    }

    /// The header as it is on disk now.
    static func header(_ path: String) throws -> Qcow2Header {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)).prefix(4096))
        return try Qcow2Header.decode(bytes)
    }

    static func fileSize(_ path: String) throws -> UInt64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// Every refcount matches the references, and every COPIED flag its refcount.
    static func expectConsistent(_ image: Qcow2Image, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try image.checkRefcounts()
        #expect(result.corruptions == 0, "corruptions", sourceLocation: sourceLocation)
        #expect(result.leaks == 0, "leaks", sourceLocation: sourceLocation)
        #expect(result.checkErrors == 0, "check errors", sourceLocation: sourceLocation)
        #expect(!result.rebuild, "refcount structure broken", sourceLocation: sourceLocation)
    }
}

/// The guest contents an image should have: a plain byte array.
struct GuestModel {
    var bytes: [UInt8]
    init(size: UInt64) { bytes = [UInt8](repeating: 0, count: Int(size)) }
    mutating func write(_ data: [UInt8], at offset: UInt64) {
        bytes.replaceSubrange(Int(offset)..<(Int(offset) + data.count), with: data)
    }
    mutating func zero(_ offset: UInt64, _ length: UInt64) {
        write([UInt8](repeating: 0, count: Int(length)), at: offset)
    }
}
