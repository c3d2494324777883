// The qcow2 header (docs/interop/qcow2.txt, "Header"): versions 2 and 3.
//
// Validation is one ordered pass in QEMU's order, split in two: `decode` checks
// what the header alone decides and comes first in that order (magic, version,
// cluster_bits, version 2 defaults, header_length, backing file offset,
// compression type); `HeaderValidation.validate` continues with what needs the
// extensions and the file (features, refcount width, tables, backing name).

package struct Qcow2Header: Equatable, Sendable {
    /// "QFI\xfb"
    package static let magic: UInt32 = 0x5146_49fb

    /// Byte offsets of the fixed header's fields (docs/interop/qcow2.txt,
    /// "Header"; names as there). Version 2 headers end at
    /// `incompatibleFeatures`; every field is big-endian.
    enum FieldOffset {
        static let magic = 0                    // u32
        static let version = 4                  // u32
        static let backingFileOffset = 8        // u64
        static let backingFileSize = 16         // u32
        static let clusterBits = 20             // u32
        static let size = 24                    // u64
        static let cryptMethod = 32             // u32
        static let l1Size = 36                  // u32
        static let l1TableOffset = 40           // u64
        static let refcountTableOffset = 48     // u64
        static let refcountTableClusters = 56   // u32
        static let nbSnapshots = 60             // u32
        static let snapshotsOffset = 64         // u64
        static let incompatibleFeatures = 72    // u64, version 3 from here on
        static let compatibleFeatures = 80      // u64
        static let autoclearFeatures = 88       // u64
        static let refcountOrder = 96           // u32
        static let headerLength = 100           // u32
        static let compressionType = 104        // u8, when header_length > 104
    }

    package var version: UInt32
    package var backingFileOffset: UInt64
    package var backingFileSize: UInt32
    package var clusterBits: UInt32
    /// Virtual disk size in bytes.
    package var size: UInt64
    package var cryptMethod: UInt32
    package var l1Size: UInt32
    package var l1TableOffset: UInt64
    package var refcountTableOffset: UInt64
    package var refcountTableClusters: UInt32
    package var snapshotCount: UInt32
    package var snapshotsOffset: UInt64

    // Version 3 fields (version 2 images get the defaults the spec gives).
    package var incompatibleFeatures: IncompatibleFeatures
    package var compatibleFeatures: CompatibleFeatures
    package var autoclearFeatures: AutoclearFeatures
    package var refcountOrder: UInt32
    package var headerLength: UInt32
    package var compressionType: CompressionType
    /// Header bytes past the fields we know (header_length beyond 112), kept
    /// so that a rewrite preserves them.
    package var unknownFields: [UInt8]

    package init(
        version: UInt32 = 3, clusterBits: UInt32 = 16, size: UInt64,
        refcountOrder: UInt32 = 4, compressionType: CompressionType = .zlib
    ) {
        self.version = version
        backingFileOffset = 0
        backingFileSize = 0
        self.clusterBits = clusterBits
        self.size = size
        cryptMethod = 0
        l1Size = 0
        l1TableOffset = 0
        refcountTableOffset = 0
        refcountTableClusters = 0
        snapshotCount = 0
        snapshotsOffset = 0
        incompatibleFeatures = compressionType == .zlib ? [] : .compressionType
        compatibleFeatures = []
        autoclearFeatures = []
        self.refcountOrder = refcountOrder
        headerLength = version >= 3 ? Qcow2Limits.headerV3Length : Qcow2Limits.headerV2Length
        self.compressionType = compressionType
        unknownFields = []
    }

    // MARK: Derived geometry

    package var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    package var refcountBits: UInt64 { 1 << UInt64(refcountOrder) }
    package var hasExtendedL2: Bool { incompatibleFeatures.contains(.extendedL2) }
    /// Bytes per L2 entry: 8, or 16 with subcluster bitmaps.
    package var l2EntrySize: UInt64 { hasExtendedL2 ? 16 : 8 }
    package var l2EntriesPerTable: UInt64 { clusterSize / l2EntrySize }
    /// log2 of l2EntriesPerTable.
    package var l2Bits: UInt32 { clusterBits - (hasExtendedL2 ? 4 : 3) }
    package var subclustersPerCluster: UInt64 { hasExtendedL2 ? 32 : 1 }
    package var subclusterSize: UInt64 { clusterSize / subclustersPerCluster }
    /// Bytes of guest data one L2 table maps.
    package var bytesPerL2Table: UInt64 { l2EntriesPerTable << UInt64(clusterBits) }
    /// L1 entries needed to map `size` (QEMU's size_to_l1).
    package var requiredL1Entries: UInt64 { divideRoundingUp(size, bytesPerL2Table) }
    package var refcountEntriesPerBlock: UInt64 { (clusterSize * 8) >> UInt64(refcountOrder) }
    package var isDirty: Bool { incompatibleFeatures.contains(.dirty) }
    package var isCorrupt: Bool { incompatibleFeatures.contains(.corrupt) }
    package var hasLazyRefcounts: Bool { compatibleFeatures.contains(.lazyRefcounts) }

    /// Bytes of the fixed header this struct writes (before extensions).
    package var encodedLength: Int {
        version >= 3 ? Int(Qcow2Limits.headerV3Length) + unknownFields.count : Int(Qcow2Limits.headerV2Length)
    }

    // MARK: Decoding

    /// Decodes the fixed header from the first bytes of an image (the whole
    /// first cluster lets `unknownFields` be read) and checks what the header
    /// alone decides. Bytes past the end of `bytes` read as zeroes, as QEMU
    /// reads past the end of a file, so a truncated header fails the same
    /// check it fails in QEMU.
    package static func decode(_ input: [UInt8]) throws -> Qcow2Header {
        var bytes = input
        if bytes.count < Int(Qcow2Limits.headerV3Length) {
            bytes += [UInt8](repeating: 0, count: Int(Qcow2Limits.headerV3Length) - bytes.count)
        }
        guard bytes.be(UInt32.self, at: FieldOffset.magic) == magic else { throw Qcow2Error.notQcow2 }
        let version = bytes.be(UInt32.self, at: FieldOffset.version)
        guard version == 2 || version == 3 else { throw Qcow2Error.unsupportedVersion(version) }

        let clusterBits = bytes.be(UInt32.self, at: FieldOffset.clusterBits)
        guard (Qcow2Limits.minClusterBits...Qcow2Limits.maxClusterBits).contains(clusterBits) else {
            throw Qcow2Error.unsupportedClusterSize(bits: clusterBits)
        }
        let clusterSize = UInt64(1) << UInt64(clusterBits)

        var h = Qcow2Header(version: version, clusterBits: clusterBits, size: bytes.be(UInt64.self, at: FieldOffset.size))
        h.backingFileOffset = bytes.be(UInt64.self, at: FieldOffset.backingFileOffset)
        h.backingFileSize = bytes.be(UInt32.self, at: FieldOffset.backingFileSize)
        h.cryptMethod = bytes.be(UInt32.self, at: FieldOffset.cryptMethod)
        h.l1Size = bytes.be(UInt32.self, at: FieldOffset.l1Size)
        h.l1TableOffset = bytes.be(UInt64.self, at: FieldOffset.l1TableOffset)
        h.refcountTableOffset = bytes.be(UInt64.self, at: FieldOffset.refcountTableOffset)
        h.refcountTableClusters = bytes.be(UInt32.self, at: FieldOffset.refcountTableClusters)
        h.snapshotCount = bytes.be(UInt32.self, at: FieldOffset.nbSnapshots)
        h.snapshotsOffset = bytes.be(UInt64.self, at: FieldOffset.snapshotsOffset)

        // Version 2 has none of the later fields: the spec's defaults apply,
        // whatever bytes 72... hold (they are the first header extension).
        // `init` set them.
        if version == 3 {
            h.incompatibleFeatures = IncompatibleFeatures(rawValue: bytes.be(UInt64.self, at: FieldOffset.incompatibleFeatures))
            h.compatibleFeatures = CompatibleFeatures(rawValue: bytes.be(UInt64.self, at: FieldOffset.compatibleFeatures))
            h.autoclearFeatures = AutoclearFeatures(rawValue: bytes.be(UInt64.self, at: FieldOffset.autoclearFeatures))
            h.refcountOrder = bytes.be(UInt32.self, at: FieldOffset.refcountOrder)
            h.headerLength = bytes.be(UInt32.self, at: FieldOffset.headerLength)
            guard h.headerLength >= Qcow2Limits.headerV3MinLength else { throw Qcow2Error.headerTooShort(h.headerLength) }
        }
        guard UInt64(h.headerLength) <= clusterSize else { throw Qcow2Error.headerExceedsCluster(h.headerLength) }
        if h.headerLength > Qcow2Limits.headerV3Length {
            // Bounded by the cluster size (2 MiB at most) just above.
            let end = Int(h.headerLength)
            if bytes.count < end { bytes += [UInt8](repeating: 0, count: end - bytes.count) }
            h.unknownFields = Array(bytes[Int(Qcow2Limits.headerV3Length)..<end])
        }

        // The backing file name must start inside the first cluster; its
        // length is checked once the extensions have been read, as QEMU does.
        guard h.backingFileOffset <= clusterSize else { throw Qcow2Error.invalidBackingFileOffset(h.backingFileOffset) }

        // compression_type exists only when header_length covers it; otherwise zlib.
        let rawCompression: UInt8 = h.headerLength > Qcow2Limits.headerV3MinLength ? bytes[FieldOffset.compressionType] : 0
        guard let type = CompressionType(rawValue: rawCompression) else {
            throw Qcow2Error.invalidCompressionType(rawCompression)
        }
        h.compressionType = type
        // The incompatible bit and the type field must agree, both ways.
        let bitSet = h.incompatibleFeatures.contains(.compressionType)
        if (type != .zlib) != bitSet { throw Qcow2Error.compressionTypeFlagMismatch(bitSet: bitSet) }
        return h
    }

    // MARK: Encoding

    /// The fixed header as QEMU writes it: version 3 always with header_length
    /// 112 plus any preserved unknown fields; version 2 stops at byte 72.
    package func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: encodedLength)
        b.setBE(Self.magic, at: FieldOffset.magic)
        b.setBE(version, at: FieldOffset.version)
        b.setBE(backingFileOffset, at: FieldOffset.backingFileOffset)
        b.setBE(backingFileSize, at: FieldOffset.backingFileSize)
        b.setBE(clusterBits, at: FieldOffset.clusterBits)
        b.setBE(size, at: FieldOffset.size)
        b.setBE(cryptMethod, at: FieldOffset.cryptMethod)
        b.setBE(l1Size, at: FieldOffset.l1Size)
        b.setBE(l1TableOffset, at: FieldOffset.l1TableOffset)
        b.setBE(refcountTableOffset, at: FieldOffset.refcountTableOffset)
        b.setBE(refcountTableClusters, at: FieldOffset.refcountTableClusters)
        b.setBE(snapshotCount, at: FieldOffset.nbSnapshots)
        b.setBE(snapshotsOffset, at: FieldOffset.snapshotsOffset)
        if version >= 3 {
            b.setBE(incompatibleFeatures.rawValue, at: FieldOffset.incompatibleFeatures)
            b.setBE(compatibleFeatures.rawValue, at: FieldOffset.compatibleFeatures)
            b.setBE(autoclearFeatures.rawValue, at: FieldOffset.autoclearFeatures)
            b.setBE(refcountOrder, at: FieldOffset.refcountOrder)
            b.setBE(UInt32(encodedLength), at: FieldOffset.headerLength)
            b[FieldOffset.compressionType] = compressionType.rawValue
            for (i, byte) in unknownFields.enumerated() { b[Int(Qcow2Limits.headerV3Length) + i] = byte }
        }
        return b
    }
}
