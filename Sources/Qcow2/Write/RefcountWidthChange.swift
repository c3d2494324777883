// Changing the refcount width of an open image (amend refcount_bits=N):
// QEMU 7.2's qcow2_change_refcount_order, so that the new refcount blocks and
// table land where QEMU puts them.
//
// The old refcount table is walked (walk_over_reftable) in refcount-block
// order, every old entry carried into new blocks of the new width:
//  1. allocation walks: every new block that will hold a non-zero refcount
//     gets a cluster from the old structure (allocating changes old
//     refcounts, so the walk repeats until one allocates nothing), and the
//     new table gets clusters sized for it (re-allocated after each walk
//     that allocated);
//  2. a writing walk fills the new blocks and writes them;
//  3. the new table is written, the old block cache flushed, and the whole
//     header rewritten to name the new table and width;
//  4. through the new structure, the old blocks and the old table are freed.
// A failure before the header names the new structure frees what the walks
// allocated, through the old one.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Qcow2Writer {
    /// Rebuilds the refcount structure with `newWidth`-bit entries.
    /// `progress(done, total)` follows QEMU's status callback.
    func changeRefcountWidth(to newWidth: RefcountWidth, progress: (UInt64, UInt64) -> Void) throws {
        var walk = RefcountWidthWalk(width: newWidth, clusterSize: clusterSize)
        var newTableOffset: UInt64 = 0
        var allocatedTableSize: UInt64 = 0
        var walkIndex: UInt64 = 0
        var succeeded = false
        defer {
            if !succeeded {
                // Undo the walks' allocations (through the old structure).
                for entry in walk.table where entry != 0 {
                    freeClusters(offset: entry & Qcow2EntryMask.refcountTableOffset, length: clusterSize, type: .other)
                }
                if newTableOffset != 0 { freeClusters(offset: newTableOffset, length: UInt64(walk.table.count) * 8, type: .other) }
            }
        }

        var allocatedSomething: Bool
        repeat {
            allocatedSomething = false
            let walks = max(walkIndex + 2, 3)
            try walkOldRefcounts(&walk, writing: false, allocated: &allocatedSomething, index: walkIndex, total: walks,
                                 progress: progress)
            walkIndex += 1
            if allocatedSomething {
                if newTableOffset != 0 { freeClusters(offset: newTableOffset, length: allocatedTableSize * 8, type: .never) }
                newTableOffset = 0
                newTableOffset = try failing("Failed to allocate the new reftable") {
                    try allocator.allocateClusters(UInt64(walk.table.count) * 8)
                }
                allocatedTableSize = UInt64(walk.table.count)
            }
        } while allocatedSomething

        try walkOldRefcounts(&walk, writing: true, allocated: &allocatedSomething, index: walkIndex, total: walkIndex + 1,
                             progress: progress)
        precondition(!allocatedSomething)

        let tableBytes = RefcountTable(entries: walk.table).encode()
        try failing("Overlap check failed") { try checkOverlap(offset: newTableOffset, length: UInt64(tableBytes.count)) }
        try failing("Failed to write the new reftable") { try file.write(tableBytes, at: newTableOffset) }
        try failing("Failed to flush the refblock cache") { try allocator.blocks.flush() }

        // The header names the new structure before it is used.
        let newAllocator = RefcountAllocator(
            file: file, clusterBits: UInt32(clusterBits), width: newWidth, tableOffset: newTableOffset,
            table: walk.table, cacheCapacity: allocator.blocks.capacity)
        let oldOrder = header.refcountOrder
        let old = replaceAllocator(with: newAllocator)
        header.refcountOrder = newWidth.order
        do {
            try failing("Failed to update the qcow2 header") { try writeHeaderCluster() }
        } catch {
            header.refcountOrder = oldOrder
            _ = replaceAllocator(with: old)
            throw error
        }
        header.refcountTableOffset = newTableOffset
        header.refcountTableClusters = UInt32(UInt64(walk.table.count) * 8 / clusterSize)
        succeeded = true

        for entry in old.table where entry & Qcow2EntryMask.refcountTableOffset != 0 {
            freeClusters(offset: entry & Qcow2EntryMask.refcountTableOffset, length: clusterSize, type: .other)
        }
        freeClusters(offset: old.tableOffset, length: UInt64(old.table.count) * 8, type: .other)
    }

    /// One walk over the old refcount table (walk_over_reftable): every old
    /// refcount, in order, into new blocks; at each full new block, either
    /// its cluster is allocated (`writing` false) or it is written.
    private func walkOldRefcounts(_ walk: inout RefcountWidthWalk, writing: Bool, allocated: inout Bool,
                                  index: UInt64, total: UInt64, progress: (UInt64, UInt64) -> Void) throws {
        walk.start(writing: writing)
        let oldWidth = allocator.width
        var tableIndex = 0
        // The old table may be replaced (grown) by the walk's allocations.
        while tableIndex < allocator.table.count {
            let tableSize = UInt64(allocator.table.count)
            progress(index * tableSize + UInt64(tableIndex), total * tableSize)
            let blockOffset = allocator.table[tableIndex] & Qcow2EntryMask.refcountTableOffset
            if blockOffset != 0 && blockOffset & (clusterSize - 1) != 0 {
                _ = signalCorruption("Refblock offset \(hex(blockOffset)) unaligned (reftable index: \(hex(tableIndex)))")
                throw Qcow2Error.writeFailed(errno: EIO, reason: "Image is corrupt (unaligned refblock offset)")
            }
            guard blockOffset != 0 else {
                // No block: its refcounts are all zero, added in runs.
                var remaining = Int(allocator.refblockSize)
                while remaining > 0 {
                    if walk.blockIsFull { try finishNewBlock(&walk, writing: writing, allocated: &allocated) }
                    let run = min(remaining, walk.entriesPerBlock - walk.entriesInBlock)
                    walk.appendZeroes(run)
                    remaining -= run
                }
                tableIndex += 1
                continue
            }
            var block = try failing("Failed to retrieve refblock") { try allocator.blocks.get(blockOffset) }
            for entry in 0..<Int(allocator.refblockSize) {
                if walk.blockIsFull {
                    try finishNewBlock(&walk, writing: writing, allocated: &allocated)
                    // An allocation may have evicted the old block from the cache.
                    block = try failing("Failed to retrieve refblock") { try allocator.blocks.get(blockOffset) }
                }
                let refcount = RefcountCoding.get(block.readOnlyBytes, index: entry, width: oldWidth)
                if walk.width.order < 6 && refcount >> walk.width.bits != 0 {
                    let offset = ((UInt64(tableIndex) << allocator.refblockBits) + UInt64(entry)) << clusterBits
                    throw Qcow2Error.writeFailed(
                        errno: EINVAL, reason: "Cannot decrease refcount entry width to \(walk.width.bits) bits: "
                            + "Cluster at offset \(hex(offset)) has a refcount of \(refcount)")
                }
                walk.append(refcount)
            }
            tableIndex += 1
        }
        if walk.entriesInBlock > 0 {
            try finishNewBlock(&walk, writing: writing, allocated: &allocated)
        }
        let tableSize = UInt64(allocator.table.count)
        progress((index + 1) * tableSize, total * tableSize)
    }

    /// alloc_refblock or flush_refblock for the new block just completed.
    private func finishNewBlock(_ walk: inout RefcountWidthWalk, writing: Bool, allocated: inout Bool) throws {
        let index = walk.blockIndex
        if writing {
            if index < walk.table.count && walk.table[index] != 0 {
                let offset = walk.table[index]
                try failing("Overlap check failed") { try checkOverlap(offset: offset, length: clusterSize) }
                try failing("Failed to write refblock") { try file.write(walk.block, at: offset) }
            } else {
                precondition(walk.blockIsEmpty)
            }
        } else if !walk.blockIsEmpty {
            if index >= walk.table.count {
                let entriesPerCluster = Int(clusterSize / 8)
                let size = (index + 1 + entriesPerCluster - 1) / entriesPerCluster * entriesPerCluster
                guard UInt64(size) <= RefcountAllocator.maxReftableSize / 8 else {
                    throw Qcow2Error.writeFailed(
                        errno: ENOTSUP, reason: "This operation would make the refcount table grow "
                            + "beyond the maximum size supported by QEMU, aborting")
                }
                walk.table += [UInt64](repeating: 0, count: size - walk.table.count)
            }
            if walk.table[index] == 0 {
                walk.table[index] = try failing("Failed to allocate refblock") { try allocator.allocateClusters(clusterSize) }
                allocated = true
            }
        }
        walk.nextBlock()
    }
}

/// The new structure as the walks build it: the new table, and the new
/// block being filled.
private struct RefcountWidthWalk {
    let width: RefcountWidth
    let entriesPerBlock: Int
    /// The new refcount table (block offsets), grown as blocks are allocated.
    var table: [UInt64] = []
    /// The new block being filled (writing walk only).
    var block: [UInt8]
    private var writing = false
    private(set) var blockIndex = 0
    private(set) var entriesInBlock = 0
    private(set) var blockIsEmpty = true

    init(width: RefcountWidth, clusterSize: UInt64) {
        self.width = width
        entriesPerBlock = Int(width.entriesPerBlock(clusterSize: clusterSize))
        block = [UInt8](repeating: 0, count: Int(clusterSize))
    }

    var blockIsFull: Bool { entriesInBlock >= entriesPerBlock }

    mutating func start(writing: Bool) {
        self.writing = writing
        blockIndex = 0
        entriesInBlock = 0
        blockIsEmpty = true
        for i in block.indices { block[i] = 0 }
    }

    /// Zero refcounts (the block is zeroed when started: nothing to write).
    mutating func appendZeroes(_ count: Int) {
        entriesInBlock += count
    }

    mutating func append(_ refcount: UInt64) {
        if writing {
            let index = entriesInBlock
            let width = width
            block.withUnsafeMutableBytes { RefcountCoding.set($0, index: index, value: refcount, width: width) }
        }
        entriesInBlock += 1
        blockIsEmpty = blockIsEmpty && refcount == 0
    }

    /// Starts the next new block: zeroed, so that a partial last block ends
    /// in zeroes (an empty one holds only zeroes already).
    mutating func nextBlock() {
        blockIndex += 1
        entriesInBlock = 0
        if writing && !blockIsEmpty { for i in block.indices { block[i] = 0 } }
        blockIsEmpty = true
    }
}
