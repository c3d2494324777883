// An export as the server lists and serves it: a name, an optional
// description, the backend, and which optional features it offers.
// (QEMU's BlockExportOptionsNbd, less what belongs to the block graph.)

/// An export to add to an `NBDServer`.
public struct NBDExport: Sendable {
    /// The name clients ask for (up to 4096 bytes; "" is qemu-nbd's default).
    public var name: String
    /// Sent with NBD_INFO_DESCRIPTION and NBD_OPT_LIST (up to 4096 bytes).
    public var description: String?
    public var backend: any NBDExportBackend
    /// Serve the qemu:allocation-depth meta context (qemu-nbd -A).
    public var allocationDepth: Bool
    /// Advertise NBD_FLAG_CAN_MULTI_CONN. QEMU 7.2 does for every export of
    /// a server whose max-connections is not 1 (qemu-nbd: -e other than 1).
    public var multiConnection: Bool
    /// Served as qemu:dirty-bitmap:NAME contexts, in this order.
    public var bitmaps: [NBDExportBitmap]

    public init(name: String, description: String? = nil, backend: any NBDExportBackend,
                allocationDepth: Bool = false, multiConnection: Bool = false, bitmaps: [NBDExportBitmap] = []) {
        self.name = name
        self.description = description
        self.backend = backend
        self.allocationDepth = allocationDepth
        self.multiConnection = multiConnection
        self.bitmaps = bitmaps
    }

    /// The transmission flags QEMU's server gives the export; clients that
    /// negotiated structured replies also get NBD_FLAG_SEND_DF.
    var transmissionFlags: NBDProtocol.TransmissionFlags {
        var flags: NBDProtocol.TransmissionFlags = [.hasFlags, .sendFlush, .sendFUA, .sendCache]
        if multiConnection { flags.insert(.canMultiConn) }
        if backend.isReadOnly {
            flags.insert(.readOnly)
        } else {
            flags.formUnion([.sendTrim, .sendWriteZeroes, .sendFastZero])
        }
        return flags
    }

    /// The size clients see: the backend's, in whole 512-byte sectors.
    var exportSize: UInt64 { backend.size & ~511 }
}
