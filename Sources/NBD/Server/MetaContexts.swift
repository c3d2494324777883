// Meta contexts (NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT): which
// queries select which of an export's contexts, as QEMU's server reads them.
// base:allocation always exists; qemu:allocation-depth when the export
// offers it; qemu:dirty-bitmap:NAME comes with the bitmaps work.

/// The contexts a client selected (SET) or a query matched (LIST).
struct MetaContextSelection: Equatable, Sendable {
    var baseAllocation = false
    var allocationDepth = false

    var count: Int { (baseAllocation ? 1 : 0) + (allocationDepth ? 1 : 0) }

    /// Every context the export has (LIST with no queries).
    static func all(of export: NBDExport) -> Self {
        Self(baseAllocation: true, allocationDepth: export.allocationDepth)
    }

    /// Adds what `query` selects on `export`. `listing`: an empty leaf
    /// ("base:", "qemu:") matches everything under it, as LIST allows.
    /// Unknown namespaces and names select nothing.
    mutating func add(query: String, of export: NBDExport, listing: Bool) {
        if query.hasPrefix("base:") {
            let leaf = query.dropFirst("base:".count)
            if leaf == "allocation" || (leaf.isEmpty && listing) { baseAllocation = true }
        } else if query.hasPrefix("qemu:") {
            let leaf = query.dropFirst("qemu:".count)
            if leaf == "allocation-depth" || (leaf.isEmpty && listing) {
                allocationDepth = allocationDepth || export.allocationDepth
            }
        }
    }

    /// The selected contexts with their ids, in QEMU's order.
    var contexts: [(name: String, id: UInt32)] {
        var list: [(String, UInt32)] = []
        if baseAllocation { list.append((NBDProtocol.baseAllocation, NBDProtocol.baseAllocationID)) }
        if allocationDepth { list.append((NBDProtocol.allocationDepth, NBDProtocol.allocationDepthID)) }
        return list
    }
}
