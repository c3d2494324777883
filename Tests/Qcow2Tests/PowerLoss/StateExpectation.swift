// What a crash state of a maintenance workload must satisfy beyond the
// common checks (which already require the guest view unchanged by amend,
// and refcounts matching the structure the header names), checked on the
// state as it stands, before any repair or check opens it for writing:
//  - amend: the header names the old or the new version and refcount
//    width, never another; a version 2 header only once no L2 entry
//    (active or a snapshot's) still has the zero flag, which version 2
//    does not have;
//  - bitmaps: each bitmap the state has is either marked in-use (QEMU and
//    we then treat it as inconsistent) or holds exactly the bits it had at a
//    point of rest (the prepared base, or the clean close), and then, if
//    enabled, every guest sector that reads differently from that point is
//    dirty in it: never silently wrong. A state whose bitmaps are all ignored (the
//    autoclear bit clear around an in-place directory update) is allowed.
//    On the qemu-img sample, `qemu-img info` must list the same bitmaps
//    with the same in-use flags and granularities.
import Foundation
import TestSupport
@testable import Qcow2

struct StateExpectation {
    struct RestPoint {
        let label: String
        let view: GuestView
        let bitmaps: [String: [UInt64]]
    }

    private var versions: Set<UInt32> = []
    private var refcountOrders: Set<UInt32> = []
    private var restPoints: [RestPoint] = []

    /// Nil for workloads without checks of their own.
    init?(_ workload: PowerLossWorkload, base: [UInt8], history: GuestHistory, closed: [UInt8]) throws {
        switch workload.kind {
        case let .amend(amendment):
            let old = try Qcow2Header.decode(Array(base.prefix(4096)))
            versions = [old.version, amendment.version ?? old.version]
            refcountOrders = [old.refcountOrder, amendment.refcountBits.map { UInt32($0.trailingZeroBitCount) } ?? old.refcountOrder]
        case .bitmaps:
            let dir = try ScratchDirectory()
            let path = dir.file("rest.qcow2")
            for (label, bytes, view) in [("base", base, history.entries.first!.view), ("close", closed, history.entries.last!.view)] {
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                let image = try Qcow2Image.open(path: path, locking: .off)
                defer { try? image.close() }
                var bitmaps: [String: [UInt64]] = [:]
                for bitmap in try image.dirtyBitmaps() {
                    guard !bitmap.isInconsistent else { throw BitmapError("bitmap \(bitmap.name) in-use at \(label)") }
                    bitmaps[bitmap.name] = Self.fingerprint(bitmap)
                }
                restPoints.append(RestPoint(label: label, view: view, bitmaps: bitmaps))
            }
        default:
            return nil
        }
    }

    /// The granularity, then the dirty ranges.
    private static func fingerprint(_ bitmap: DirtyBitmap) -> [UInt64] {
        [bitmap.granularity] + bitmap.dirtyRanges().flatMap { [$0.offset, $0.length] }
    }

    func failure(path: String, state: [UInt8], qemu: Bool, counts: inout CrashStateCheck.Counts) throws -> String? {
        let header = try Qcow2Header.decode(Array(state.prefix(4096)))
        if !versions.isEmpty {
            guard versions.contains(header.version), refcountOrders.contains(header.refcountOrder) else {
                return "amend: header version \(header.version), refcount order \(header.refcountOrder)"
            }
            if header.version == 2, let entry = zeroFlaggedEntry(state, header) { return "amend: version 2 with zero flag L2 entry \(entry)" }
        }
        if !restPoints.isEmpty { return try bitmapFailure(path: path, qemu: qemu, counts: &counts) }
        return nil
    }

    private func bitmapFailure(path: String, qemu: Bool, counts: inout CrashStateCheck.Counts) throws -> String? {
        let image = try Qcow2Image.open(path: path, locking: .off)
        defer { try? image.close() }
        let bitmaps = try image.dirtyBitmaps()
        if qemu {
            let ours = bitmaps.map { "\($0.name) \($0.granularity)\($0.isInconsistent ? " in-use" : "")" }.sorted()
            let theirs = try Self.qemuBitmaps(path)
            guard ours == theirs else { return "qemu-img info lists bitmaps \(theirs), we read \(ours)" }
        }
        if bitmaps.isEmpty { counts.bitmapsIgnored += 1 }
        var view: GuestView?
        for bitmap in bitmaps {
            if bitmap.isInconsistent {
                counts.bitmapsInUse += 1
                continue
            }
            let bits = Self.fingerprint(bitmap)
            let points = restPoints.filter { $0.bitmaps[bitmap.name] == bits }
            guard !points.isEmpty else { return "bitmap \(bitmap.name) not in-use, with bits never stored: \(bits.prefix(9))" }
            // A disabled bitmap tracks nothing: its bits are all there is.
            guard bitmap.isEnabled else {
                counts.bitmapsConsistent += 1
                continue
            }
            if view == nil { view = try GuestView(of: image) }
            let found = view!
            let misses = points.map { point in
                (0..<min(found.sectors.count, point.view.sectors.count)).first { index in
                    found.sectors[index] != point.view.sectors[index]
                        && !bitmap.bit(UInt64(index * GuestView.sectorSize) / bitmap.granularity)
                }
            }
            if let sector = misses.compactMap({ $0 }).first, !misses.contains(where: { $0 == nil }) {
                return "bitmap \(bitmap.name) not in-use, as at '\(points.map(\.label))', but guest sector \(sector) changed "
                    + "since and is clean in it (silently wrong)"
            }
            counts.bitmapsConsistent += 1
        }
        return nil
    }

    /// The bitmaps `qemu-img info` lists: "name granularity[ in-use]".
    private static func qemuBitmaps(_ path: String) throws -> [String] {
        let info = try run(try TestTools.qemuImg(), ["info", "--output=json", "-f", "qcow2", path])
        guard info.status == 0,
              let json = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any] else {
            throw BitmapError("qemu-img info exit \(info.status): \(info.stderr)")
        }
        let data = (json["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let list = data?["bitmaps"] as? [[String: Any]] ?? []
        return list.map { bitmap in
            let flags = bitmap["flags"] as? [String] ?? []
            return "\(bitmap["name"] as? String ?? "?") \(bitmap["granularity"] as? Int ?? 0)"
                + (flags.contains("in-use") ? " in-use" : "")
        }.sorted()
    }

    /// The first L2 entry (active or a snapshot's) with the zero flag, as
    /// "L1 offset/L2 offset/index", or nil.
    private func zeroFlaggedEntry(_ file: [UInt8], _ header: Qcow2Header) -> String? {
        func u64(_ at: Int) -> UInt64 { at + 8 <= file.count ? file[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } : 0 }
        func u32(_ at: Int) -> UInt32 { UInt32(truncatingIfNeeded: u64(at - 4) & 0xffff_ffff) }
        func u16(_ at: Int) -> Int { Int(u64(at - 6) & 0xffff) }
        var tables = [(header.l1TableOffset, Int(header.l1Size))]
        var entry = Int(header.snapshotsOffset)
        for _ in 0..<header.snapshotCount {
            tables.append((u64(entry), Int(u32(entry + 8))))
            let extra = Int(u32(entry + 36)), id = u16(entry + 12), name = u16(entry + 14)
            entry += (40 + extra + id + name + 7) / 8 * 8
        }
        let clusterSize = Int(header.clusterSize)
        for (l1Offset, l1Size) in tables {
            for i in 0..<l1Size {
                let l2 = Int(u64(Int(l1Offset) + i * 8) & 0x00ff_ffff_ffff_fe00)
                guard l2 != 0 else { continue }
                for j in 0..<clusterSize / 8 where u64(l2 + j * 8) & 1 != 0 { return "\(l1Offset)/\(l2)/\(j)" }
            }
        }
        return nil
    }
}
