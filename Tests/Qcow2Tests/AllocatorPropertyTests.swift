// Property-based tests of the allocator and refcounts (issue 3), with
// x-sheep/swift-property-based: for generated geometries (cluster size,
// refcount width, extended L2, lazy refcounts, backing file) and generated
// sequences of writes, zero writes, discards, compressed writes, flushes and
// reopens,
//  (a) the image reads back as the byte-array model of the guest disk;
//  (b) the refcounts on disk equal the references counted, both by the
//      codec's checker and by an independent reading (IndependentLayout),
//      and for a sample by `qemu-img check`;
//  (c) no two live clusters overlap, and no metadata overlaps data;
//  (d) the image opened again reads the same.
// A failing case is shrunk to a short sequence of small operations.
import Foundation
import PropertyBased
import Testing
@testable import Qcow2

@Suite("Allocator and refcount properties")
struct AllocatorPropertyTests {
    @Test("random operations: data, refcounts, layout and reopening")
    func randomOperations() async {
        let ops = PropertyOp.generator(clusters: 96, maxLengthClusters: 5).array(of: 1...24)
        await propertyCheck(count: 60, input: PropertyGeometry.generator, ops, Gen.bool(0.1)) { geometry, ops, qemuCheck in
            try PropertyRun(geometry).run(ops, qemuCheck: qemuCheck)
        }
    }

    /// Small clusters, wide refcounts and long writes: many refcount blocks
    /// are allocated, freed clusters are reused, and with 64-bit refcounts
    /// the refcount table often grows (64 entries of 64-cluster blocks cover
    /// 2 MiB of file).
    @Test("allocation-heavy sequences with 512-byte clusters")
    func allocationHeavy() async {
        let geometry = zip(Gen.int(in: 5...6), Gen.bool, Gen.bool).map { order, lazy, backing in
            PropertyGeometry(clusterBits: 9, refcountOrder: order, extendedL2: false, lazyRefcounts: lazy,
                             backing: backing, clusters: 16384)
        }
        let ops = PropertyOp.generator(clusters: 16384, maxLengthClusters: 4096).array(of: 1...10)
        await propertyCheck(count: 10, input: geometry, ops, Gen.bool(0.25)) { geometry, ops, qemuCheck in
            try PropertyRun(geometry).run(ops, qemuCheck: qemuCheck)
        }
    }
}

/// One generated case: an image and the model of its guest disk.
final class PropertyRun {
    let geometry: PropertyGeometry
    let dir: PropertyScratch
    let path: String
    var model: [UInt8]
    var image: Qcow2Image?
    /// The operations so far, for failure messages.
    var done: [ConcreteOp] = []

    init(_ geometry: PropertyGeometry) throws {
        self.geometry = geometry
        dir = try PropertyScratch()
        path = dir.file("image.qcow2")
        model = [UInt8](repeating: 0, count: Int(geometry.size))
        var options = Qcow2CreateOptions(size: geometry.size)
        options.clusterSize = geometry.clusterSize
        options.refcountWidth = try RefcountWidth(order: UInt32(geometry.refcountOrder))
        options.extendedL2 = geometry.extendedL2
        options.lazyRefcounts = geometry.lazyRefcounts
        if geometry.backing {
            let backing = dir.file("backing.qcow2")
            try Qcow2Creator.create(path: backing, options: Qcow2CreateOptions(size: geometry.size))
            let image = try Qcow2Image.open(path: backing, writable: true)
            // Data in some clusters, partly: copy-on-write has something to copy.
            for (start, end, value) in [(geometry.size / 8 + 700, geometry.size / 2, UInt8(0xB1)),
                                        (geometry.size * 5 / 8, geometry.size * 7 / 8 - 300, UInt8(0xB2))] {
                let bytes = [UInt8](repeating: value, count: Int(end - start))
                try bytes.withUnsafeBytes { try image.write($0, at: start) }
                model.replaceSubrange(Int(start)..<Int(end), with: bytes)
            }
            try image.close()
            options.backingFile = backing
            options.backingFormat = "qcow2"
        }
        try Qcow2Creator.create(path: path, options: options)
        image = try openImage(writable: true)
    }

    private func openImage(writable: Bool) throws -> Qcow2Image {
        guard let image = try ImageOpener.open(path: path, format: .qcow2, writable: writable) as? Qcow2Image else {
            throw Qcow2Error.notQcow2
        }
        return image
    }

    private var context: String { "\(geometry), after:\n  " + done.map(\.description).joined(separator: "\n  ") }

    func run(_ ops: [PropertyOp], qemuCheck: Bool) throws {
        for op in ops {
            let concrete = ConcreteOp(op, geometry)
            done.append(concrete)
            try apply(concrete)
        }
        try closeAndCheck(qemuCheck: qemuCheck)
        // (d) A fresh open, read-only this time, reads the same.
        let reopened = try openImage(writable: false)
        try expectReads(reopened, "read-only reopen")
        try reopened.close()
    }

    private func apply(_ op: ConcreteOp) throws {
        guard let open = image else { return }
        let cs = geometry.clusterSize
        switch op {
        case let .write(o, l, p):
            let bytes = [UInt8](repeating: p, count: Int(l))
            try bytes.withUnsafeBytes { try open.write($0, at: o) }
            model.replaceSubrange(Int(o)..<Int(o + l), with: bytes)
        case let .zeroes(o, l, unmap):
            try open.writeZeroes(at: o, length: l, mayUnmap: unmap)
            model.replaceSubrange(Int(o)..<Int(o + l), with: repeatElement(0, count: Int(l)))
        case let .discard(o, l):
            try open.discard(at: o, length: l)
            // Whole clusters read as zeroes afterwards (with a backing file too).
            let start = (o + cs - 1) / cs * cs, end = (o + l) / cs * cs
            if end > start { model.replaceSubrange(Int(start)..<Int(end), with: repeatElement(0, count: Int(end - start))) }
        case let .compressed(o, p):
            let bytes = [UInt8](repeating: p, count: Int(cs))
            do {
                try bytes.withUnsafeBytes { try open.writeCompressed($0, at: o) }
                model.replaceSubrange(Int(o)..<Int(o + cs), with: bytes)
            } catch let Qcow2Error.writeFailed(code, _) where code == EIO {
                // Compression never replaces an allocated cluster (QEMU's -EIO).
            }
        case .flush:
            try open.flush()
            try expectReads(open, "flush")
            if !geometry.lazyRefcounts {
                // Both caches are written: the file alone is consistent.
                let result = try open.checkRefcounts()
                #expect(result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0 && !result.rebuild,
                        "the writer's own check after a flush: \(result)\n\(context)")
                let layout = try IndependentLayout.check(path)
                #expect(layout.isEmpty, "after a flush: \(layout)\n\(context)")
            }
        case .reopen:
            try closeAndCheck(qemuCheck: false)
            let reopened = try openImage(writable: true)
            image = reopened
            try expectReads(reopened, "reopen")
        }
    }

    /// (a) every byte as in the model.
    private func expectReads(_ image: Qcow2Image, _ when: String) throws {
        var bytes = [UInt8](repeating: 0, count: model.count)
        try bytes.withUnsafeMutableBytes { try image.read(into: $0, at: 0) }
        guard bytes != model else { return }
        let first = zip(bytes, model).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
        Issue.record("after \(when): byte \(first) reads \(bytes[first]), expected \(model[first])\n\(context)")
    }

    /// (b), (c): the closed file, by the independent reading, the codec's
    /// checker and (when asked) qemu-img check.
    private func closeAndCheck(qemuCheck: Bool) throws {
        try image?.close()
        image = nil
        let layout = try IndependentLayout.check(path)
        #expect(layout.isEmpty, "\(layout)\n\(context)")
        let checker = try Qcow2Checker.open(path: path, writable: false)
        let result = try checker.check(diagnostics: { _ in })
        try checker.close()
        #expect(result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0,
                "the codec's checker: \(result)\n\(context)")
        if qemuCheck {
            let check = try Qcow2Tests.run(QemuImg.path, ["check", path])
            #expect(check.status == 0, "qemu-img check: \(check.stdout)\(check.stderr)\n\(context)")
        }
    }
}

/// A directory for one generated case, in memory when /dev/shm is there:
/// nothing here needs syncs to reach a disk, and the write path syncs often.
final class PropertyScratch {
    let path: String

    init() throws {
        let shm = "/dev/shm"
        let base = FileManager.default.isWritableFile(atPath: shm) ? shm + "/" : NSTemporaryDirectory()
        path = base + "qcowkit-property-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
