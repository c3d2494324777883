// Meta contexts (NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT): which
// queries select which of an export's contexts, as QEMU's server reads them.
// base:allocation always exists; qemu:allocation-depth when the export
// offers it; qemu:dirty-bitmap:NAME for each of the export's bitmaps.

/// The contexts a client selected (SET) or a query matched (LIST).
struct MetaContextSelection: Equatable, Sendable {
    var baseAllocation = false
    var allocationDepth = false
    /// Indexes into the export's bitmaps.
    var bitmaps: Set<Int> = []

    var count: Int { (baseAllocation ? 1 : 0) + (allocationDepth ? 1 : 0) + bitmaps.count }

    /// Every context the export has (LIST with no queries).
    static func all(of export: NBDExport) -> Self {
        Self(baseAllocation: true, allocationDepth: export.allocationDepth, bitmaps: Set(export.bitmaps.indices))
    }

    /// Adds what `query` selects on `export`. `listing`: an empty leaf
    /// ("base:", "qemu:", "qemu:dirty-bitmap:") matches everything under
    /// it, as LIST allows. Unknown namespaces and names select nothing.
    mutating func add(query: String, of export: NBDExport, listing: Bool) {
        if query.hasPrefix("base:") {
            let leaf = query.dropFirst("base:".count)
            if leaf == "allocation" || (leaf.isEmpty && listing) { baseAllocation = true }
        } else if query.hasPrefix("qemu:") {
            let leaf = query.dropFirst("qemu:".count)
            if leaf.isEmpty && listing {
                allocationDepth = allocationDepth || export.allocationDepth
                bitmaps.formUnion(export.bitmaps.indices)
            } else if leaf == "allocation-depth" {
                allocationDepth = allocationDepth || export.allocationDepth
            } else if query.hasPrefix(NBDProtocol.dirtyBitmapPrefix) {
                let name = query.dropFirst(NBDProtocol.dirtyBitmapPrefix.count)
                if name.isEmpty {
                    if listing { bitmaps.formUnion(export.bitmaps.indices) }
                } else if let index = export.bitmaps.firstIndex(where: { $0.name == name }) {
                    bitmaps.insert(index)
                }
            }
        }
    }

    /// The selected contexts with their ids, in QEMU's order. `export`
    /// names the bitmaps.
    func contexts(of export: NBDExport) -> [(name: String, id: UInt32)] {
        var list: [(String, UInt32)] = []
        if baseAllocation { list.append((NBDProtocol.baseAllocation, NBDProtocol.baseAllocationID)) }
        if allocationDepth { list.append((NBDProtocol.allocationDepth, NBDProtocol.allocationDepthID)) }
        for index in bitmaps.sorted() {
            list.append((NBDProtocol.dirtyBitmapPrefix + export.bitmaps[index].name,
                         NBDProtocol.dirtyBitmapFirstID + UInt32(index)))
        }
        return list
    }
}
