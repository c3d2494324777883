// Host clusters whose refcount dropped to zero, waiting to be discarded in the
// file (QEMU's s->discards and qcow2_process_discards). Whether a free is
// passed through depends on why the cluster was freed (QEMU's
// qcow2_discard_type with the defaults of an image opened with discard=unmap,
// as qemu-io and qemu-img open images): guest discards and zero writes that
// unmap, snapshot deletion and "always" frees punch holes; frees of old
// tables ("other") and of clusters that are replaced anyway ("never") do not.
// Operations that free many clusters defer the discards to their end.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why clusters are freed (QEMU's enum qcow2_discard_type).
enum DiscardType {
    case never, always, request, snapshot, other

    /// QEMU's discard_passthrough[] for an image opened with discard=unmap.
    var passesThrough: Bool {
        switch self {
        case .always, .request, .snapshot: return true
        case .never, .other: return false
        }
    }
}

struct DiscardQueue {
    /// Regions in the order they were first queued; adjacent ones merge.
    private(set) var regions: [(offset: UInt64, length: UInt64)] = []
    /// While set, discards wait for `process` (QEMU's s->cache_discards).
    var isDeferring = false

    /// Queues a freed range. Freed clusters are never freed twice, so a new
    /// range never overlaps a queued one; it may touch one or two.
    mutating func add(offset: UInt64, length: UInt64) {
        let end = offset + length
        if let i = regions.firstIndex(where: { $0.offset == end || $0.offset + $0.length == offset }) {
            regions[i].offset = min(regions[i].offset, offset)
            regions[i].length += length
            // The grown region may now touch another one.
            let merged = regions[i]
            if let j = regions.indices.first(where: {
                $0 != i && (regions[$0].offset == merged.offset + merged.length
                            || regions[$0].offset + regions[$0].length == merged.offset)
            }) {
                regions[i].offset = min(merged.offset, regions[j].offset)
                regions[i].length += regions[j].length
                regions.remove(at: j)
            }
        } else {
            regions.append((offset, length))
        }
    }

    mutating func take() -> [(offset: UInt64, length: UInt64)] {
        defer { regions = [] }
        return regions
    }
}

extension RefcountAllocator {
    /// Discards the queued regions in the file (punching holes), or only
    /// forgets them when the operation that freed them failed. Discarding is
    /// advisory: errors are ignored, as in QEMU.
    /// `durably`: the L2 entries that dropped the clusters now send reads to
    /// a backing file, so they are made durable before the holes (see below).
    func processDiscards(succeeded: Bool, durably: Bool = false) {
        let regions = discards.take()
        guard succeeded, !regions.isEmpty else { return }
        // Not while an L2 entry in the file may still name the clusters (a
        // compressed one would then be unreadable after a crash): the L2
        // tables that dropped them are written first. Synced only when the
        // entries became unallocated over a backing file: after a power
        // failure a hole under a stale entry reads as zeroes, which is what
        // the new entry reads too (a zero flag, or no backing), except where
        // the backing's data should show (found by the power-loss replay of
        // a commit's emptying by discards: the top read zeroes where base
        // held the committed data). QEMU 7.2 does not order these
        // (qcow2_cluster_discard passes the discards to the file with the
        // L2 updates still in its cache; traced, qemu-img commit of a compat
        // 0.10 top punches before it writes the L2 table). A sync for every
        // guest discard would cost too much, and is not needed.
        do {
            if durably {
                try l2Tables?.writeBack()
                try file.flush()
            } else {
                try blocks.dependency?.writeBack()
            }
        } catch { return }
        // Discarding is advisory: QEMU only traces a failure.
        for region in regions { try? file.punchHole(offset: region.offset, length: region.length) }
    }
}
