import Foundation
import Testing
@testable import Qcow2

/// A fresh directory under /tmp, removed when the test ends.
final class CreateScratchDirectory {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "qcowkit-create-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

private func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

private func be64(_ b: [UInt8], _ at: Int) -> UInt64 { b[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }

/// The refcount of every cluster of an image file, read through its table.
private func refcounts(_ bytes: [UInt8], header h: Qcow2Header) throws -> [UInt64] {
    let cs = Int(h.clusterSize)
    let width = try RefcountWidth(order: h.refcountOrder)
    let perBlock = Int(width.entriesPerBlock(clusterSize: h.clusterSize))
    let clusters = (bytes.count + cs - 1) / cs
    let table = RefcountTable(bytes: Array(bytes[Int(h.refcountTableOffset)..<Int(h.refcountTableOffset) + Int(h.refcountTableClusters) * cs]))
    return try (0..<clusters).map { c -> UInt64 in
        let blockOffset = Int(table.blockOffset(at: UInt64(c / perBlock)))
        guard blockOffset != 0 else { return 0 }
        try #require(blockOffset + cs <= bytes.count)
        return RefcountBlock(bytes: Array(bytes[blockOffset..<blockOffset + cs]), width: width)[c % perBlock]
    }
}

@Suite struct CreateTests {
    @Test func defaultImageLayout() throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("a.qcow2")
        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 64 << 20))
        let bytes = try readFile(path)
        // Header, refcount table, refcount block, then an 8-byte L1 table.
        #expect(bytes.count == 196616)
        let h = try Qcow2Header.decode(bytes)
        #expect(h.version == 3 && h.clusterBits == 16 && h.size == 64 << 20)
        #expect(h.refcountTableOffset == 65536 && h.refcountTableClusters == 1)
        #expect(h.l1TableOffset == 3 * 65536 && h.l1Size == 1)
        #expect(h.headerLength == 112 && h.refcountOrder == 4)
        #expect(be64(bytes, 65536) == 2 * 65536)
        #expect(try refcounts(bytes, header: h) == [1, 1, 1, 1])
        // Feature name table, then the end marker.
        let exts = try HeaderExtension.decodeAll(bytes, from: 112, to: 65536)
        #expect(exts == [.featureNameTable(FeatureName.qemuTable)])
        #expect(bytes[112 + 8 + 384..<112 + 16 + 384].allSatisfy { $0 == 0 })

        let image = try Qcow2Image.open(path: path)
        #expect(image.header.size == 64 << 20)
        #expect(image.backingFileName == nil)
    }

    @Test func sizeIsRoundedUpToSectors() throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("a.qcow2")
        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 1))
        #expect(try Qcow2Image.open(path: path).header.size == 512)
        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 0), replacing: true)
        let h = try Qcow2Header.decode(try readFile(path))
        #expect(h.size == 0 && h.l1Size == 0 && h.l1TableOffset == 0)
    }

    /// Small clusters leave the feature table out; version 2 has extensions
    /// right after its 72-byte header.
    @Test func smallClustersAndVersion2() throws {
        let dir = try CreateScratchDirectory()
        var o = Qcow2CreateOptions(size: 1 << 20)
        o.clusterSize = 4096
        try Qcow2Creator.create(path: dir.file("a"), options: o)
        var bytes = try readFile(dir.file("a"))
        #expect(bytes[112..<120].allSatisfy { $0 == 0 })

        o = Qcow2CreateOptions(size: 1 << 20)
        o.version = .v2
        o.backingFile = "base"
        o.backingFormat = "raw"
        try Qcow2Creator.create(path: dir.file("b"), options: o)
        bytes = try readFile(dir.file("b"))
        let h = try Qcow2Header.decode(bytes)
        #expect(h.version == 2)
        #expect(try HeaderExtension.decodeAll(bytes, from: 72, to: Int(h.backingFileOffset)) == [.backingFormat("raw")])
        #expect(h.backingFileOffset == 72 + 16 + 8 && h.backingFileSize == 4)
        #expect(Array(bytes[96..<100]) == Array("base".utf8))
    }

    @Test func featuresInTheHeader() throws {
        let dir = try CreateScratchDirectory()
        var o = Qcow2CreateOptions(size: 1 << 20)
        o.compressionType = .zstd
        o.extendedL2 = true
        o.lazyRefcounts = true
        o.refcountWidth = try #require(RefcountWidth(bits: 1))
        try Qcow2Creator.create(path: dir.file("a"), options: o)
        let h = try Qcow2Header.decode(try readFile(dir.file("a")))
        #expect(h.compressionType == .zstd)
        #expect(h.incompatibleFeatures == [.compressionType, .extendedL2])
        #expect(h.compatibleFeatures == [.lazyRefcounts])
        #expect(h.refcountOrder == 0)
    }

    /// Every L2 entry points at its own data cluster; L2 tables precede their data.
    @Test(arguments: [Preallocation.metadata, .falloc, .full])
    func preallocationMapsEveryCluster(mode: Preallocation) throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("a")
        var o = Qcow2CreateOptions(size: 3 << 20)
        o.clusterSize = 65536
        o.preallocation = mode
        try Qcow2Creator.create(path: path, options: o)
        let bytes = try readFile(path)
        let h = try Qcow2Header.decode(bytes)
        let l2 = Int(be64(bytes, Int(h.l1TableOffset)) & Qcow2EntryMask.offset)
        #expect(be64(bytes, Int(h.l1TableOffset)) & Qcow2EntryMask.copied != 0)
        var hosts: [UInt64] = []
        for i in 0..<48 {
            let e = be64(bytes, l2 + 8 * i)
            #expect(e & Qcow2EntryMask.copied != 0)
            hosts.append(e & Qcow2EntryMask.offset)
        }
        #expect(Set(hosts).count == 48)
        #expect(zip(hosts, hosts.dropFirst()).allSatisfy { $1 == $0 + 65536 })
        #expect(be64(bytes, l2 + 8 * 48) == 0)
        // Every cluster in the file is referenced exactly once, except the
        // old refcount table that falloc/full move away.
        let rc = try refcounts(bytes, header: h)
        #expect(rc.count == bytes.count / 65536)
        #expect(rc.allSatisfy { $0 == 1 })
        if mode == .metadata {
            #expect(UInt64(l2) == 4 * 65536 && hosts[0] == 5 * 65536)
            #expect(bytes.count == (5 + 48) * 65536)
        } else {
            // The refcount table moved after the L1 table; the L2 table took its old place.
            #expect(h.refcountTableOffset == 4 * 65536 && l2 == 65536)
            #expect(hosts[0] == 5 * 65536)
        }
    }

    /// 512-byte clusters: the L1 table needs more refcount blocks than the
    /// first one, which QEMU places right after the table.
    @Test func refcountBlocksFollowALargeL1Table() throws {
        let dir = try CreateScratchDirectory()
        var o = Qcow2CreateOptions(size: 1 << 30)
        o.clusterSize = 512
        try Qcow2Creator.create(path: dir.file("a"), options: o)
        let bytes = try readFile(dir.file("a"))
        let h = try Qcow2Header.decode(bytes)
        #expect(h.l1Size == 32768 && h.l1TableOffset == 3 * 512)
        #expect(be64(bytes, 512 + 8) == 515 * 512)
        #expect(be64(bytes, 512 + 16) == 516 * 512)
        #expect(bytes.count == 517 * 512)
        #expect(try refcounts(bytes, header: h).allSatisfy { $0 == 1 })
    }

    @Test func validationMessagesAndCleanup() throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("a")
        func refuse(_ expected: Qcow2Error.Creation, refcountBits: UInt64? = nil,
                    _ change: (inout Qcow2CreateOptions) -> Void) {
            var o = Qcow2CreateOptions(size: 1 << 20)
            change(&o)
            _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
            #expect(throws: Qcow2Error.creation(expected)) {
                try Qcow2Creator.create(path: path, options: o, refcountBits: refcountBits, replacing: true)
            }
            // As QEMU does, the file that was created is removed.
            #expect(!FileManager.default.fileExists(atPath: path))
        }
        refuse(.invalidClusterSize) { $0.clusterSize = 1000 }
        refuse(.invalidClusterSize) { $0.clusterSize = 4 << 20 }
        refuse(.invalidClusterSize) { $0.clusterSize = 256 }
        refuse(.extendedL2NeedsVersion3) { $0.extendedL2 = true; $0.version = .v2 }
        refuse(.extendedL2ClusterTooSmall(minimum: 16384)) { $0.extendedL2 = true; $0.clusterSize = 8192 }
        refuse(.backingWithPreallocation) { $0.backingFile = "b"; $0.preallocation = .metadata }
        refuse(.backingFormatWithoutBackingFile) { $0.backingFormat = "raw" }
        refuse(.lazyRefcountsNeedVersion3) { $0.lazyRefcounts = true; $0.version = .v2 }
        // A width no `RefcountWidth` has comes as bits, as the CLI passes it.
        refuse(.invalidRefcountWidth, refcountBits: 3) { _ in }
        refuse(.invalidRefcountWidth, refcountBits: 128) { _ in }
        refuse(.refcountWidthNeedsVersion3, refcountBits: 8) { $0.version = .v2 }
        refuse(.refcountWidthNeedsVersion3) { $0.refcountWidth = RefcountWidth(bits: 8)!; $0.version = .v2 }
        refuse(.compressionTypeNeedsVersion3) { $0.compressionType = .zstd; $0.version = .v2 }
        refuse(.imageTooLarge(format: "qcow2", clusterSizeHint: true)) { $0.size = 4 << 50 }
        refuse(.couldNotResize(reason: "Image size cannot be negative")) { $0.size = 1 << 63 }
        refuse(.couldNotResize(reason: "offset(9223372036854775296) exceeds maximum(9223372035781033984)")) {
            $0.size = UInt64(Int64.max) - 511
        }
        refuse(.couldNotAssignBackingFile(name: String(repeating: "a", count: 600), format: "raw", errno: ENOSPC)) {
            $0.clusterSize = 512; $0.backingFile = String(repeating: "a", count: 600); $0.backingFormat = "raw"
        }
        refuse(.couldNotAssignBackingFile(name: String(repeating: "a", count: 1024), format: "raw", errno: EINVAL)) {
            $0.backingFile = String(repeating: "a", count: 1024); $0.backingFormat = "raw"
        }
        #expect(Qcow2Error.creation(.invalidClusterSize).description == "Cluster size must be a power of two between 512 and 2048k")
        #expect(Qcow2Error.creation(.imageTooLarge(format: "qcow2", clusterSizeHint: true)).description
            == "The image size is too large for file format 'qcow2' (try using a larger cluster size)")
    }

    /// The library never replaces a file unless asked to; the file is left
    /// as it was.
    @Test func existingFilesAreReplacedOnlyWhenAsked() throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("a")
        let old = Data([1, 2, 3])
        _ = FileManager.default.createFile(atPath: path, contents: old)
        #expect(throws: Qcow2Error.creation(.fileExists(path: path))) {
            try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 1 << 20))
        }
        #expect(throws: Qcow2Error.creation(.fileExists(path: path))) {
            try RawCreator.create(path: path, size: 4096)
        }
        #expect(throws: Qcow2Error.creation(.fileExists(path: path))) { try Qcow2Creator.abandon(path: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == old)
        #expect(Qcow2Error.creation(.fileExists(path: path)).description == "Could not create '\(path)': File exists")

        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 1 << 20), replacing: true)
        #expect(try Qcow2Image.open(path: path).header.size == 1 << 20)
        try RawCreator.create(path: path, size: 4096, replacing: true)
        #expect(try readFile(path).count == 4096)
    }

    @Test func missingDirectoryIsReported() {
        #expect(throws: Qcow2Error.creation(.couldNotCreate(path: "/nonexistent-dir/x", errno: ENOENT))) {
            try Qcow2Creator.create(path: "/nonexistent-dir/x", options: Qcow2CreateOptions(size: 0))
        }
    }

    @Test(arguments: [Preallocation.off, .falloc, .full])
    func rawImages(mode: Preallocation) throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("r")
        try RawCreator.create(path: path, size: 1000, preallocation: mode)
        let bytes = try readFile(path)
        #expect(bytes.count == 1024 && bytes.allSatisfy { $0 == 0 })
        try RawCreator.create(path: path, size: 0, preallocation: mode, replacing: true)
        #expect(try readFile(path).isEmpty)
    }

    @Test func rawRefusesMetadataAfterTruncating() throws {
        let dir = try CreateScratchDirectory()
        let path = dir.file("r")
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 100))
        #expect(throws: Qcow2Error.creation(.unsupportedPreallocation(.metadata))) {
            try RawCreator.create(path: path, size: 4096, preallocation: .metadata, replacing: true)
        }
        #expect(try readFile(path).isEmpty)
    }
}
