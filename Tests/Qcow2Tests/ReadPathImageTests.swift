// Reading hand-built images: every entry kind, compressed clusters, backing
// read-through, block status, and the corrupt-metadata and chain errors.
import Foundation
import Testing
@testable import Qcow2

@Suite("Read path: images")
struct ReadPathImageTests {
    let copied = Qcow2EntryMask.copied

    private func pattern(_ seed: UInt8, _ count: Int = 512) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) ^ seed }
    }

    private func corruption(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch let Qcow2Error.corruptMetadata(what) { return what } catch { return "\(error)" }
    }

    @Test("normal, zero, unallocated and compressed clusters read back")
    func entryKinds() throws {
        let dir = try TestDirectory()
        var image = TestImage(size: 8 * 512)
        let a = image.addCluster(pattern(1))
        let b = image.addCluster(pattern(2))
        let preallocated = image.addCluster(pattern(3))    // behind a zero flag: never read
        // A compressed cluster stored at an unaligned offset inside a cluster.
        let original = pattern(4)
        let compressed = try #require(try original.withUnsafeBytes { try ZlibCodec().compress($0, limit: 512) })
        let holder = image.addCluster([UInt8](repeating: 0xee, count: 100) + compressed)
        let descriptor = CompressedClusterDescriptor(
            hostOffset: holder + 100, sectorCount: (holder + 100 + UInt64(compressed.count) - 1) / 512 - (holder + 100) / 512 + 1)
        _ = image.addL2(l1Index: 0, words: [
            a | copied,                    // 0: data
            b | copied,                    // 1: data, contiguous with 0
            1,                             // 2: zero, plain
            preallocated | copied | 1,     // 3: zero, allocated
            0,                             // 4: unallocated
            descriptor.entry(clusterBits: 9).rawValue, // 5: compressed
            a | copied,                    // 6: data again (not contiguous)
        ])
        try image.write(to: dir.file("a.qcow2"))
        let qcow2 = try Qcow2Image.open(path: dir.file("a.qcow2"))
        defer { try? qcow2.close() }

        #expect(qcow2.size == 4096)
        let all = try qcow2.read(4096, at: 0)
        let zeroes = [UInt8](repeating: 0, count: 512)
        #expect(all == pattern(1) + pattern(2) + zeroes + zeroes + zeroes + original + pattern(1) + zeroes)
        // Unaligned reads across entry kinds.
        #expect(try qcow2.read(700, at: 2700) == Array(all[2700..<3400]))
        #expect(try qcow2.read(3, at: 2815) == Array(all[2815..<2818]))

        let map = qcow2.clusterMap
        #expect(try map.lookup(at: 100, length: 4000) == MappedExtent(type: .normal, length: 924, hostOffset: a + 100))
        #expect(try map.lookup(at: 3 * 512, length: 4000) == MappedExtent(type: .zeroAllocated, length: 512, hostOffset: preallocated))
        #expect(try map.lookup(at: 5 * 512 + 10, length: 4000).length == 502)
        #expect(try map.lookup(at: 7 * 512, length: 512) == MappedExtent(type: .unallocatedPlain, length: 512))
    }

    @Test("block status of one layer follows QEMU's rules")
    func blockStatus() throws {
        let dir = try TestDirectory()
        var image = TestImage(size: 6 * 512)
        let a = image.addCluster(pattern(1))
        let b = image.addCluster(pattern(2))
        _ = image.addL2(l1Index: 0, words: [a | copied, b | copied, 1, 0, 0, 0])
        try image.write(to: dir.file("a.qcow2"))
        let qcow2 = try Qcow2Image.open(path: dir.file("a.qcow2"))
        defer { try? qcow2.close() }

        let data = try qcow2.blockStatus(at: 0, length: 3072)
        #expect(data.length == 1024 && data.isData && data.isAllocated && data.hostOffset == a)
        #expect(data.hostFile == dir.file("a.qcow2"))
        let zero = try qcow2.blockStatus(at: 1024, length: 2048)
        #expect(zero == BlockStatus(length: 512, isData: false, isZero: true, isAllocated: true))
        // Unallocated without a backing: zero, but not allocated here.
        let free = try qcow2.blockStatus(at: 1536, length: 10_000)
        #expect(free == BlockStatus(length: 1536, isData: false, isZero: true, isAllocated: false))
        #expect(throws: Qcow2Error.self) { try qcow2.blockStatus(at: 3072, length: 1) }
        #expect(throws: Qcow2Error.requestOutOfRange(offset: 3000, length: 100, size: 3072)) { try qcow2.read(100, at: 3000) }
    }

    @Test("unallocated ranges read from a raw backing, zeroes past its end")
    func rawBacking() throws {
        let dir = try TestDirectory()
        let base = pattern(9, 1300)
        try Data(base).write(to: URL(fileURLWithPath: dir.file("base.raw")))
        var image = TestImage(size: 4 * 512)
        let a = image.addCluster(pattern(1))
        _ = image.addL2(l1Index: 0, words: [0, a | copied, 0, 0])
        image.backingName = "base.raw"
        image.backingFormat = "raw"
        try image.write(to: dir.file("top.qcow2"))

        let top = try ImageOpener.open(path: dir.file("top.qcow2"))
        defer { try? top.close() }
        let backing = try #require(top.backing)
        #expect(backing.format == .raw)
        #expect(backing.filename == dir.file("base.raw"))
        #expect(backing.size == 1536)          // 1300 bytes, rounded up to a sector
        let expected = Array(base[..<512]) + pattern(1) + Array(base[1024...]) + [UInt8](repeating: 0, count: 236 + 512)
        #expect(try top.read(2048, at: 0) == expected)
        #expect(try top.read(1000, at: 1000) == Array(expected[1000..<2000]))

        // Within the backing: decided below; past its end: zero here.
        let below = try top.chainBlockStatus(at: 0, length: 512)
        #expect(below.depth == 1 && below.status.isData && below.status.isAllocated && below.status.hostOffset == 0)
        let past = try top.chainBlockStatus(at: 1536, length: 512)
        #expect(past.depth == 0 && past.status.isZero && !past.status.isAllocated)
        #expect(top.chain.count == 2)
    }

    @Test("a backing without a format extension is probed")
    func probedBacking() throws {
        let dir = try TestDirectory()
        var base = TestImage(size: 1024)
        let data = base.addCluster(pattern(5))
        _ = base.addL2(l1Index: 0, words: [0, data | copied])
        try base.write(to: dir.file("base.qcow2"))
        var top = TestImage(size: 1024)
        top.backingName = dir.file("base.qcow2")   // absolute names are used as they are
        try top.write(to: dir.file("top.qcow2"))

        let image = try ImageOpener.open(path: dir.file("top.qcow2"))
        defer { try? image.close() }
        #expect(image.backing?.format == .qcow2)
        #expect(try image.read(1024, at: 0) == [UInt8](repeating: 0, count: 512) + pattern(5))
    }

    @Test("corrupt L1 and L2 metadata is reported, not followed")
    func corruptMetadata() throws {
        let dir = try TestDirectory()
        func open(_ image: TestImage) throws -> Qcow2Image {
            let path = dir.file("c\(UUID().uuidString).qcow2")
            try image.write(to: path)
            return try Qcow2Image.open(path: path)
        }
        // Offsets keep bits 9 and up, so only clusters above 512 bytes can be misaligned.
        var misaligned = TestImage(size: 8192, clusterBits: 12)
        let l2 = misaligned.addL2(l1Index: 0, words: [])
        misaligned.l1[0] = (l2 + 0x200) | copied
        #expect(corruption { _ = try open(misaligned).read(512, at: 0) } == "L2 table offset 0x3200 unaligned (L1 index: 0)")

        var pastEnd = TestImage(size: 1024)
        pastEnd.l1[0] = 0x10_0000 | copied
        #expect(corruption { _ = try open(pastEnd).read(512, at: 0) }?.contains("beyond the end of the file") == true)

        var l1Reserved = TestImage(size: 1024)
        _ = l1Reserved.addL2(l1Index: 0, words: [])
        l1Reserved.l1[0] |= 1 << 60
        #expect(corruption { _ = try open(l1Reserved).blockStatus(at: 0, length: 512) }?.contains("reserved bits") == true)

        var l2Reserved = TestImage(size: 1024)
        let cluster = l2Reserved.addCluster(pattern(1))
        _ = l2Reserved.addL2(l1Index: 0, words: [cluster | copied | 0x10])
        #expect(corruption { _ = try open(l2Reserved).read(512, at: 0) }?.contains("L2 entry 0x8000000000000610 has reserved bits set") == true)

        var unalignedData = TestImage(size: 8192, clusterBits: 12)
        _ = unalignedData.addL2(l1Index: 0, words: [0x4000 | copied, 0x10_0200 | copied])
        #expect(corruption { _ = try open(unalignedData).read(512, at: 4096) } == "Cluster allocation offset 0x100200 unaligned (L2 offset: 0x3000, L2 index: 0x1)")

        var invalidBitmap = TestImage(size: 64 * 1024, clusterBits: 14, extendedL2: true)  // extended L2 needs 16 KiB clusters
        let host = invalidBitmap.addCluster(pattern(1))
        _ = invalidBitmap.addL2(l1Index: 0, words: [host | copied, 0x0000_0001_0000_0001])
        #expect(corruption { _ = try open(invalidBitmap).read(128, at: 0) }?.hasPrefix("Invalid cluster entry found") == true)

        var zeroInVersion2 = TestImage(size: 1024, version: 2)
        _ = zeroInVersion2.addL2(l1Index: 0, words: [1])
        #expect(corruption { _ = try open(zeroInVersion2).read(512, at: 0) }?.hasPrefix("Zero cluster entry found in pre-v3 image") == true)
    }

    @Test("garbage compressed data fails to decompress with a clear error")
    func badCompressedData() throws {
        let dir = try TestDirectory()
        var image = TestImage(size: 512)
        let holder = image.addCluster([UInt8](repeating: 0xff, count: 512))
        _ = image.addL2(l1Index: 0, words: [CompressedClusterDescriptor(hostOffset: holder, sectorCount: 1).entry(clusterBits: 9).rawValue])
        try image.write(to: dir.file("a.qcow2"))
        let qcow2 = try Qcow2Image.open(path: dir.file("a.qcow2"))
        defer { try? qcow2.close() }
        #expect { _ = try qcow2.read(512, at: 0) } throws: { error in
            if case Qcow2Error.decompressionFailed = error { return true } else { return false }
        }
    }

    @Test("chains: self-reference, loops and excessive depth are refused")
    func hostileChains() throws {
        let dir = try TestDirectory()
        var selfish = TestImage(size: 512)
        selfish.backingName = "self.qcow2"
        selfish.backingFormat = "qcow2"
        try selfish.write(to: dir.file("self.qcow2"))
        #expect(throws: Qcow2Error.backingChainLoop(path: dir.file("self.qcow2"))) {
            _ = try ImageOpener.open(path: dir.file("self.qcow2"))
        }
        // The same file under another name (a symlink) is still a loop.
        try FileManager.default.createSymbolicLink(atPath: dir.file("alias.qcow2"), withDestinationPath: dir.file("self.qcow2"))
        var viaAlias = selfish
        viaAlias.backingName = "alias.qcow2"
        try viaAlias.write(to: dir.file("self.qcow2"))
        #expect(throws: Qcow2Error.backingChainLoop(path: dir.file("alias.qcow2"))) {
            _ = try ImageOpener.open(path: dir.file("self.qcow2"))
        }

        // layer0 -> layer1 -> ... -> layer(N): fine up to the limit, refused past it.
        let limit = Qcow2Limits.maxBackingChainDepth
        for index in 0...(limit + 1) {
            var layer = TestImage(size: 512)
            if index < limit + 1 {
                layer.backingName = "layer\(index + 1).qcow2"
                layer.backingFormat = "qcow2"
            }
            try layer.write(to: dir.file("layer\(index).qcow2"))
        }
        #expect(throws: Qcow2Error.backingChainTooDeep(limit: limit)) {
            _ = try ImageOpener.open(path: dir.file("layer0.qcow2"))
        }
        let deepest = try ImageOpener.open(path: dir.file("layer1.qcow2"))
        defer { try? deepest.close() }
        #expect(deepest.chain.count == limit + 1)
        #expect(try deepest.chainBlockStatus(at: 0, length: 512).depth == limit)
    }

    @Test("open errors name the file, nesting once per backing link")
    func openErrors() throws {
        let dir = try TestDirectory()
        #expect(throws: Qcow2Error.openFailed(path: dir.file("none"), errno: ENOENT)) {
            _ = try ImageOpener.open(path: dir.file("none"))
        }
        var mid = TestImage(size: 512)
        mid.backingName = "missing.qcow2"
        mid.backingFormat = "qcow2"
        try mid.write(to: dir.file("mid.qcow2"))
        var top = TestImage(size: 512)
        top.backingName = "mid.qcow2"
        try top.write(to: dir.file("top.qcow2"))
        do {
            _ = try ImageOpener.open(path: dir.file("top.qcow2"))
            Issue.record("opened a chain with a missing backing")
        } catch {
            #expect(ImageOpener.failureMessage(path: "top.qcow2", error: error) ==
                "Could not open 'top.qcow2': Could not open backing file: Could not open backing file: "
                + "Could not open '\(dir.file("missing.qcow2"))': No such file or directory")
        }
        var unknownFormat = TestImage(size: 512)
        unknownFormat.backingName = "mid.qcow2"
        unknownFormat.backingFormat = "vmdk"
        try unknownFormat.write(to: dir.file("vmdk.qcow2"))
        #expect(throws: Qcow2Error.inBackingFile(.backingFormatUnknown("vmdk"))) {
            _ = try ImageOpener.open(path: dir.file("vmdk.qcow2"))
        }
    }
}

@Suite("Read path: raw images")
struct ReadPathRawTests {
    @Test("size rounds up to a sector; block status follows the file's holes")
    func rawImage() throws {
        let dir = try TestDirectory()
        let path = dir.file("a.raw")
        try Data(repeating: 7, count: 5000).write(to: URL(fileURLWithPath: path))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 1 << 20)
        try handle.seek(toOffset: (1 << 20) - 100)
        try handle.write(contentsOf: Data(repeating: 8, count: 99))
        try handle.close()

        let raw = try RawImage.open(path: path)
        defer { try? raw.close() }
        #expect(raw.size == 1 << 20)
        #expect(try raw.read(10, at: 4995) == [7, 7, 7, 7, 7, 0, 0, 0, 0, 0])
        let first = try raw.blockStatus(at: 0, length: 1 << 20)
        #expect(first.isData && !first.isZero && first.isAllocated && first.hostOffset == 0)
        #expect(first.length >= 5000 && first.length < 1 << 20)
        let hole = try raw.blockStatus(at: 65536, length: 1 << 20)
        #expect(hole.isZero && !hole.isData && hole.isAllocated && hole.hostOffset == 65536)
        #expect(hole.length + 65536 <= (1 << 20) - 100)

        try Data(repeating: 1, count: 1001).write(to: URL(fileURLWithPath: dir.file("odd.raw")))
        let odd = try RawImage.open(path: dir.file("odd.raw"))
        defer { try? odd.close() }
        #expect(odd.size == 1024)
        #expect(try odd.blockStatus(at: 0, length: 1024) == BlockStatus(length: 1001, isData: true, isZero: false, isAllocated: true, hostOffset: 0, hostFile: dir.file("odd.raw")))
        #expect(try odd.blockStatus(at: 1001, length: 1024).isZero)
        #expect(try odd.read(1024, at: 0) == [UInt8](repeating: 1, count: 1001) + [UInt8](repeating: 0, count: 23))
    }
}
