// The second half of header validation: what needs the extensions and the
// file's size, continuing the ordered pass `Qcow2Header.decode` began, in
// QEMU's order (qcow2_do_open): unsupported feature bits, the corrupt bit,
// subcluster size, refcount width, the refcount, snapshot and L1 tables, the
// image size, encryption, the extensions, the backing file name. Every table
// goes through `validateTable`, which names the table in its error ("Active L1
// table too large"), as QEMU does.

package struct ValidatedLayout: Sendable {
    package var header: Qcow2Header
    package var extensions: [HeaderExtension]
    /// The backing file name as stored (up to its first NUL), not resolved.
    package var backingFileName: String?
    /// A bitmaps extension is present but the autoclear bit that vouches for
    /// it is clear: a program without bitmap support changed the image, so
    /// the bitmaps are stale. QEMU warns, ignores them, and drops the
    /// extension when it next rewrites the header.
    package var bitmapsAreStale: Bool = false

    package var backingFormat: String? {
        for case let .backingFormat(f) in extensions { return f }
        return nil
    }
    package var featureNames: [FeatureName] {
        for case let .featureNameTable(t) in extensions { return t }
        return []
    }
    /// The bitmaps extension, when present and vouched for by the autoclear bit.
    package var bitmaps: BitmapsExtension? {
        guard !bitmapsAreStale else { return nil }
        for case let .bitmaps(data) in extensions { return try? BitmapsExtension(data: data) }
        return nil
    }
}

package enum HeaderValidation {
    /// Validates a decoded header against the first cluster and the file size.
    /// `firstCluster` may be shorter than a cluster (a short file): missing
    /// bytes read as zeroes. `writable` refuses images whose corrupt bit is set.
    /// `forCheck` is QEMU's check mode: an image without a refcount table
    /// and a broken snapshot table are left for the check to report.
    package static func validate(
        header h: Qcow2Header, firstCluster: [UInt8], fileSize: UInt64, writable: Bool, forCheck: Bool = false
    ) throws -> ValidatedLayout {
        // What decode checked, again, for headers built by hand: everything
        // below relies on the header lying inside one cluster of at most 2 MiB.
        guard (Qcow2Limits.minClusterBits...Qcow2Limits.maxClusterBits).contains(h.clusterBits) else {
            throw Qcow2Error.unsupportedClusterSize(bits: h.clusterBits)
        }
        let clusterSize = h.clusterSize
        guard UInt64(h.headerLength) <= clusterSize else { throw Qcow2Error.headerExceedsCluster(h.headerLength) }
        guard h.backingFileOffset <= clusterSize else { throw Qcow2Error.invalidBackingFileOffset(h.backingFileOffset) }

        var cluster = firstCluster
        if UInt64(cluster.count) < clusterSize {
            // At most 2 MiB (cluster_bits was bounded by decode).
            cluster += [UInt8](repeating: 0, count: Int(clusterSize) - cluster.count)
        }

        // Extensions run from the end of the fixed header (72 for version 2)
        // to the backing file name, or to the end of the first cluster. Both
        // ends are within the cluster: decode checked header_length and the
        // backing file offset.
        let extStart = Int(h.headerLength)
        let extEnd = Int(h.backingFileOffset != 0 ? h.backingFileOffset : clusterSize)

        // Unknown incompatible bits are refused by name, from the feature
        // table, read as far as the extensions can be read.
        let unknown = h.incompatibleFeatures.rawValue & ~IncompatibleFeatures.known.rawValue
        if unknown != 0 {
            let (found, _) = HeaderExtension.decodeReportingError(cluster, from: extStart, to: extEnd)
            var table: [FeatureName] = []
            for ext in found {
                // QEMU reads on only while each extension passes its checks.
                if (try? checkExtension(ext, header: h, cryptMethod: 0)) == nil { break }
                if case let .featureNameTable(t) = ext { table = t }
            }
            throw Qcow2Error.unsupportedIncompatibleFeatures(names: unsupportedFeatureNames(mask: unknown, table: table))
        }
        if h.isCorrupt && writable { throw Qcow2Error.imageIsCorrupt }
        if h.subclusterSize < Qcow2Limits.minSubclusterSize {
            throw Qcow2Error.unsupportedSubclusterSize(h.subclusterSize)
        }
        guard h.refcountOrder <= Qcow2Limits.maxRefcountOrder else {
            throw Qcow2Error.refcountWidthTooLarge(order: h.refcountOrder)
        }

        // Tables, in QEMU's order: refcount table, snapshot table, L1 table.
        guard h.refcountTableClusters > 0 || forCheck else { throw Qcow2Error.noRefcountTable }
        try validateTable("Reference count table", offset: h.refcountTableOffset,
                          entries: UInt64(h.refcountTableClusters), entrySize: clusterSize,
                          maxBytes: Qcow2Limits.maxRefcountTableBytes, clusterSize: clusterSize, fileSize: fileSize,
                          qemuChecksOnly: forCheck)
        // Entries are at least 40 bytes; their exact size is known only once
        // they are read. The offset is checked even without snapshots.
        if !forCheck {
            try validateTable("Snapshot table", offset: h.snapshotsOffset,
                              entries: UInt64(h.snapshotCount), entrySize: UInt64(SnapshotEntry.headerSize),
                              maxBytes: UInt64(SnapshotEntry.headerSize) * UInt64(Qcow2Limits.maxSnapshots),
                              clusterSize: clusterSize, fileSize: fileSize)
        }
        try validateTable("Active L1 table", offset: h.l1TableOffset, entries: UInt64(h.l1Size), entrySize: 8,
                          maxBytes: Qcow2Limits.maxL1TableBytes, clusterSize: clusterSize, fileSize: fileSize,
                          qemuChecksOnly: forCheck)

        // The L1 table must map the whole virtual size. QEMU rounds up in
        // 64-bit arithmetic that wraps for sizes within one L2 table's reach
        // of 2^64; those pass here and fail the sector count check below.
        let shift = UInt64(h.clusterBits + h.l2Bits)
        let required = (h.size &+ ((UInt64(1) << shift) - 1)) >> shift
        guard required <= Qcow2Limits.maxL1Entries else { throw Qcow2Error.imageTooBig(h.size) }
        guard UInt64(h.l1Size) >= required else { throw Qcow2Error.l1TableTooSmall }

        // Encrypted images are refused: QcowKit has no key handling. QEMU
        // names only methods it does not know; we refuse AES and LUKS too.
        if h.cryptMethod != 0 { throw Qcow2Error.unsupportedEncryption(method: h.cryptMethod) }

        let extensions = try HeaderExtension.decodeAll(cluster, from: extStart, to: extEnd)
        var layout = ValidatedLayout(header: h, extensions: extensions, backingFileName: nil)
        for ext in extensions {
            if try checkExtension(ext, header: h, cryptMethod: h.cryptMethod) == .stale { layout.bitmapsAreStale = true }
        }

        // Guest data in another file is not supported; the extension naming
        // the file means nothing without the incompatible bit.
        if h.incompatibleFeatures.contains(.externalDataFile) {
            throw Qcow2Error.unsupportedFeature("external data file")
        }

        if h.backingFileOffset != 0 {
            let length = UInt64(h.backingFileSize)
            guard length <= min(UInt64(Qcow2Limits.maxBackingFileNameLength), clusterSize - h.backingFileOffset) else {
                throw Qcow2Error.backingFileNameTooLong(h.backingFileSize)
            }
            let start = Int(h.backingFileOffset)
            layout.backingFileName = HeaderExtension.cString(cluster[start..<(start + Int(length))])
        }

        // Last, as QEMU's block layer does once the image is open: the size
        // in bytes must fit a signed 64-bit offset.
        guard h.size / 512 <= UInt64(Int64.max) / 512 else { throw Qcow2Error.virtualSizeTooLarge(h.size) }
        return layout
    }

    enum ExtensionStatus { case valid, stale }

    /// Checks one extension's contents as QEMU does when it reads it.
    static func checkExtension(_ ext: HeaderExtension, header h: Qcow2Header, cryptMethod: UInt32) throws -> ExtensionStatus {
        switch ext {
        case .fullDiskEncryption:
            // Only LUKS (crypt_method 2) has an encryption header.
            guard cryptMethod == 2 else {
                throw Qcow2Error.invalidHeaderExtension("CRYPTO header extension only expected with LUKS encryption method")
            }
        case let .bitmaps(data):
            let bitmaps = try BitmapsExtension(data: data)
            guard h.autoclearFeatures.contains(.bitmaps) else { return .stale }
            try bitmaps.validate(clusterSize: h.clusterSize)
        default:
            break
        }
        return .valid
    }

    /// The names of the unsupported incompatible bits in `mask`: those the
    /// feature table names (in table order, up to its first unnamed entry),
    /// then the remaining bits as one hexadecimal mask.
    package static func unsupportedFeatureNames(mask: UInt64, table: [FeatureName]) -> [String] {
        var remaining = mask
        var names: [String] = []
        for entry in table {
            if entry.name.isEmpty { break }
            guard entry.kind == FeatureName.Kind.incompatible.rawValue, entry.bit < 64 else { continue }
            let bit = UInt64(1) << UInt64(entry.bit)
            if remaining & bit != 0 {
                names.append(entry.name)
                remaining &= ~bit
            }
        }
        if remaining != 0 { names.append("Unknown incompatible feature: " + String(remaining, radix: 16)) }
        return names
    }

    /// QEMU's qcow2_validate_table, plus two checks of our own: a non-empty
    /// table must not start at offset 0 (over the header) and must lie inside
    /// the file. The table must be cluster aligned and no larger than `maxBytes`.
    /// `qemuChecksOnly` leaves out our own two checks (for `check`, which
    /// reads what QEMU reads: past the end of the file, zeroes).
    package static func validateTable(
        _ name: String, offset: UInt64, entries: UInt64, entrySize: UInt64,
        maxBytes: UInt64, clusterSize: UInt64, fileSize: UInt64, qemuChecksOnly: Bool = false
    ) throws {
        guard entries <= maxBytes / entrySize else { throw Qcow2Error.tableTooLarge(table: name) }
        let bytes = entries * entrySize   // <= maxBytes: no overflow
        guard offset % clusterSize == 0, offset <= UInt64(Int64.max) - bytes else {
            throw Qcow2Error.tableOffsetInvalid(table: name)
        }
        if bytes > 0 && !qemuChecksOnly {
            guard offset != 0 else { throw Qcow2Error.tableOffsetInvalid(table: name) }
            guard offset + bytes <= fileSize else { throw Qcow2Error.tableBeyondEndOfFile(table: name) }
        }
    }
}
