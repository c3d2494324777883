// An independent reading of a closed qcow2 file for the allocator
// properties: it decodes the header, the L1/L2 tables and the refcount
// structure itself (from the spec, not with the codec's types) and reports
//  - refcounts that differ from the references counted (header, L1 table,
//    L2 tables, data and compressed clusters, refcount table and blocks);
//  - clusters used twice: by two kinds of metadata, by metadata and data, or
//    by two data clusters (compressed clusters may share host clusters with
//    each other, never with anything else);
//  - COPIED flags that do not say "refcount 1";
//  - anything referenced past the end of the file;
//  - the dirty or corrupt bit still set.
import Foundation

struct LayoutProblems: CustomStringConvertible {
    var problems: [String] = []
    var isEmpty: Bool { problems.isEmpty }
    var description: String { problems.prefix(12).joined(separator: "; ") }
    mutating func add(_ problem: String) { problems.append(problem) }
}

enum IndependentLayout {
    private static func be<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, _: T.Type) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value = value << 8 | T(bytes[offset + i]) }
        return value
    }

    /// Refcount `index` of a refcount block (sub-byte widths: lowest bits
    /// first, as QEMU's get_refcount_ro0..2; wider ones big-endian).
    private static func refcount(_ block: ArraySlice<UInt8>, _ index: Int, order: Int) -> UInt64 {
        let bits = 1 << order
        let base = block.startIndex
        switch bits {
        case 1, 2, 4:
            let perByte = 8 / bits
            let byte = block[base + index / perByte]
            return UInt64((byte >> UInt8((index % perByte) * bits)) & UInt8((1 << bits) - 1))
        default:
            let width = bits / 8
            var value: UInt64 = 0
            for i in 0..<width { value = value << 8 | UInt64(block[base + index * width + i]) }
            return value
        }
    }

    /// The problems found in the file at `path` (the image must be closed).
    static func check(_ path: String) throws -> LayoutProblems {
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var problems = LayoutProblems()
        let clusterBits = Int(be(file, 20, UInt32.self))
        let cs = 1 << clusterBits
        let l1Size = Int(be(file, 36, UInt32.self))
        let l1Offset = Int(be(file, 40, UInt64.self))
        let tableOffset = Int(be(file, 48, UInt64.self))
        let tableClusters = Int(be(file, 56, UInt32.self))
        let incompatible = be(file, 72, UInt64.self)
        let order = Int(be(file, 96, UInt32.self))
        let extendedL2 = incompatible & (1 << 4) != 0
        if incompatible & 0b11 != 0 { problems.add("dirty or corrupt bit set: \(incompatible)") }
        let fileClusters = (file.count + cs - 1) / cs

        // Who uses each cluster; compressed data counts separately.
        var exclusive: [Int: [String]] = [:]
        var compressed: [Int: Int] = [:]
        var references: [Int: UInt64] = [:]
        func use(_ offset: Int, _ length: Int, _ what: String) {
            guard length > 0 else { return }
            if offset + length > fileClusters * cs { problems.add("\(what) at \(offset) past the end of the file") }
            for c in (offset / cs)...((offset + length - 1) / cs) {
                exclusive[c, default: []].append(what)
                references[c, default: 0] += 1
            }
        }

        use(0, cs, "header")
        use(l1Offset, l1Size * 8, "L1 table")
        use(tableOffset, tableClusters * cs, "refcount table")
        var blocks: [Int] = []
        for i in 0..<(tableClusters * cs / 8) {
            let entry = Int(be(file, tableOffset + i * 8, UInt64.self) & ~UInt64(cs - 1))
            blocks.append(entry)
            if entry != 0 { use(entry, cs, "refcount block \(i)") }
        }
        var copiedWanted: [(cluster: Int, copied: Bool, what: String)] = []
        let entrySize = extendedL2 ? 16 : 8
        let offsetMask: UInt64 = 0x00ff_ffff_ffff_fe00
        for i in 0..<l1Size {
            let l1Entry = be(file, l1Offset + i * 8, UInt64.self)
            let l2 = Int(l1Entry & offsetMask)
            guard l2 != 0 else { continue }
            use(l2, cs, "L2 table \(i)")
            copiedWanted.append((l2 / cs, l1Entry >> 63 != 0, "L1 entry \(i)"))
            guard l2 + cs <= file.count else { continue }
            for j in 0..<(cs / entrySize) {
                let entry = be(file, l2 + j * entrySize, UInt64.self)
                let guestCluster = i * (cs / entrySize) + j
                if entry & (1 << 62) != 0 {
                    // Compressed: offset bits, then the count of extra 512-byte sectors.
                    let offsetBits = 62 - (clusterBits - 8)
                    let hostOffset = Int(entry & ((1 << UInt64(offsetBits)) - 1))
                    let sectors = Int((entry >> UInt64(offsetBits)) & ((1 << UInt64(clusterBits - 8)) - 1)) + 1
                    let length = sectors * 512 - (hostOffset & 511)
                    for c in (hostOffset / cs)...((hostOffset + length - 1) / cs) {
                        compressed[c, default: 0] += 1
                        references[c, default: 0] += 1
                    }
                    if hostOffset + length > fileClusters * cs { problems.add("compressed cluster \(guestCluster) past the end") }
                } else if entry & offsetMask != 0 {
                    let host = Int(entry & offsetMask)
                    use(host, cs, "data of guest cluster \(guestCluster)")
                    copiedWanted.append((host / cs, entry >> 63 != 0, "L2 entry of guest cluster \(guestCluster)"))
                }
            }
        }

        for (cluster, users) in exclusive where users.count > 1 || (compressed[cluster] ?? 0) > 0 {
            problems.add("cluster \(cluster) used by \(users) and \(compressed[cluster] ?? 0) compressed clusters")
        }
        // Refcounts on disk against the references counted.
        let perBlock = (cs * 8) >> order
        func onDisk(_ cluster: Int) -> UInt64 {
            let index = cluster / perBlock
            guard index < blocks.count, blocks[index] != 0, blocks[index] + cs <= file.count else { return 0 }
            return refcount(file[blocks[index]..<(blocks[index] + cs)], cluster % perBlock, order: order)
        }
        let covered = max(fileClusters, (references.keys.max() ?? 0) + 1)
        for cluster in 0..<covered where onDisk(cluster) != references[cluster] ?? 0 {
            problems.add("cluster \(cluster): refcount \(onDisk(cluster)), \(references[cluster] ?? 0) references")
        }
        for wanted in copiedWanted where wanted.copied != (onDisk(wanted.cluster) == 1) {
            problems.add("\(wanted.what): COPIED \(wanted.copied) with refcount \(onDisk(wanted.cluster))")
        }
        return problems
    }
}
