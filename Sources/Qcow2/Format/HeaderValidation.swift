// The second half of header validation: what needs the extensions and the
// file's size. Every table goes through `validateTable`, which names the
// table in its error ("Active L1 table too large"), as QEMU does.

public struct ValidatedLayout: Sendable {
    public var header: Qcow2Header
    public var extensions: [HeaderExtension]
    public var backingFileName: String?

    public var backingFormat: String? {
        for case let .backingFormat(f) in extensions { return f }
        return nil
    }
    public var featureNames: [FeatureName] {
        for case let .featureNameTable(t) in extensions { return t }
        return []
    }
}

public enum HeaderValidation {
    /// Validates a decoded header against the first cluster and the file size.
    /// `writable` refuses images whose corrupt bit is set.
    public static func validate(
        header h: Qcow2Header, firstCluster: [UInt8], fileSize: UInt64, writable: Bool
    ) throws -> ValidatedLayout {
        let clusterSize = h.clusterSize

        // Extensions run from the end of the fixed header to the backing file
        // name (or the end of the first cluster).
        let extStart = Int(h.version == 2 ? Qcow2Limits.headerV2Length : h.headerLength)
        let extEnd = Int(h.backingFileOffset != 0 ? h.backingFileOffset : clusterSize)
        let extensions = extEnd > extStart
            ? try HeaderExtension.decodeAll(firstCluster, from: extStart, to: min(extEnd, firstCluster.count))
            : []
        var layout = ValidatedLayout(header: h, extensions: extensions, backingFileName: nil)

        // Unknown incompatible bits are refused by name, from the feature table.
        let unknown = h.incompatibleFeatures.rawValue & ~IncompatibleFeatures.known.rawValue
        if unknown != 0 {
            var names: [String] = []
            for bit in 0..<64 where unknown & (UInt64(1) << UInt64(bit)) != 0 {
                let named = layout.featureNames.first { $0.kind == FeatureName.Kind.incompatible.rawValue && Int($0.bit) == bit }
                names.append(named?.name ?? "Unknown incompatible feature: \(bit)")
            }
            throw Qcow2Error.unsupportedIncompatibleFeatures(names: names)
        }
        if h.incompatibleFeatures.contains(.externalDataFile) || extensions.contains(where: { $0.type == HeaderExtension.Magic.externalDataFile }) {
            throw Qcow2Error.unsupportedFeature("external data file")
        }
        if h.isCorrupt && writable { throw Qcow2Error.imageIsCorrupt }
        if h.cryptMethod != 0 || extensions.contains(where: { $0.type == HeaderExtension.Magic.fullDiskEncryption }) {
            throw Qcow2Error.unsupportedEncryption(method: h.cryptMethod == 0 ? 2 : h.cryptMethod)
        }

        // Virtual size and the L1 table that must map it.
        guard h.size <= Qcow2Limits.maxVirtualSize else { throw Qcow2Error.imageTooBig(h.size) }
        guard UInt64(h.l1Size) * 8 <= Qcow2Limits.maxL1TableBytes else { throw Qcow2Error.tableTooLarge(table: "Active L1 table") }
        guard UInt64(h.l1Size) >= h.requiredL1Entries else {
            throw h.requiredL1Entries * 8 > Qcow2Limits.maxL1TableBytes ? Qcow2Error.imageTooBig(h.size) : Qcow2Error.l1TableTooSmall
        }
        try validateTable("Active L1 table", offset: h.l1TableOffset, entries: UInt64(h.l1Size), entrySize: 8,
                          maxBytes: Qcow2Limits.maxL1TableBytes, clusterSize: clusterSize, fileSize: fileSize)

        try validateTable("Reference count table", offset: h.refcountTableOffset,
                          entries: UInt64(h.refcountTableClusters) * clusterSize / 8, entrySize: 8,
                          maxBytes: Qcow2Limits.maxRefcountTableBytes, clusterSize: clusterSize, fileSize: fileSize)
        guard h.refcountTableClusters > 0 else { throw Qcow2Error.tableOffsetInvalid(table: "Reference count table") }

        guard h.snapshotCount <= Qcow2Limits.maxSnapshots else { throw Qcow2Error.tooManySnapshots(h.snapshotCount) }
        if h.snapshotCount > 0 {
            // Entries are at least 40 bytes; the exact size is known only after reading them.
            try validateTable("Snapshot table", offset: h.snapshotsOffset, entries: UInt64(h.snapshotCount), entrySize: 40,
                              maxBytes: Qcow2Limits.maxSnapshotTableBytes, clusterSize: clusterSize, fileSize: fileSize)
        }

        if h.backingFileOffset != 0 {
            let start = Int(h.backingFileOffset), end = start + Int(h.backingFileSize)
            guard end <= firstCluster.count else { throw Qcow2Error.backingFileNameTooLong(h.backingFileSize) }
            layout.backingFileName = String(decoding: firstCluster[start..<end], as: UTF8.self)
        }
        return layout
    }

    /// QEMU's qcow2_validate_table, plus an end-of-file check: the table must be
    /// cluster aligned, no larger than `maxBytes`, and lie inside the file.
    public static func validateTable(
        _ name: String, offset: UInt64, entries: UInt64, entrySize: UInt64,
        maxBytes: UInt64, clusterSize: UInt64, fileSize: UInt64
    ) throws {
        let (bytes, overflow) = entries.multipliedReportingOverflow(by: entrySize)
        guard !overflow, bytes <= maxBytes else { throw Qcow2Error.tableTooLarge(table: name) }
        guard offset % clusterSize == 0, offset <= UInt64(Int64.max) - bytes else {
            throw Qcow2Error.tableOffsetInvalid(table: name)
        }
        // An empty table may have offset 0; a real one must not overlap the header.
        if bytes > 0 {
            guard offset != 0 else { throw Qcow2Error.tableOffsetInvalid(table: name) }
            guard offset + bytes <= fileSize else { throw Qcow2Error.tableBeyondEndOfFile(table: name) }
        }
    }
}
