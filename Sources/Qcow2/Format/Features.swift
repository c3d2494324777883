// Feature bits of the version 3 header, with the names QEMU writes into the
// feature name table (and reports when it refuses an unknown bit).

package struct IncompatibleFeatures: OptionSet, Hashable, Sendable {
    package let rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Refcounts may be stale (lazy refcounts); rebuild before trusting them.
    package static let dirty = IncompatibleFeatures(rawValue: 1 << 0)
    /// Metadata found inconsistent: only read-only opening is allowed.
    package static let corrupt = IncompatibleFeatures(rawValue: 1 << 1)
    /// Guest data lives in a separate file named by a header extension.
    package static let externalDataFile = IncompatibleFeatures(rawValue: 1 << 2)
    /// The compression type field (byte 104) is not zlib.
    package static let compressionType = IncompatibleFeatures(rawValue: 1 << 3)
    /// 128-bit L2 entries with subcluster bitmaps.
    package static let extendedL2 = IncompatibleFeatures(rawValue: 1 << 4)

    /// Bits this codec implements; any other set bit refuses the image.
    package static let known: IncompatibleFeatures = [.dirty, .corrupt, .externalDataFile, .compressionType, .extendedL2]
}

package struct CompatibleFeatures: OptionSet, Hashable, Sendable {
    package let rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    package static let lazyRefcounts = CompatibleFeatures(rawValue: 1 << 0)
}

package struct AutoclearFeatures: OptionSet, Hashable, Sendable {
    package let rawValue: UInt64
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    /// The bitmaps extension is consistent with the image.
    package static let bitmaps = AutoclearFeatures(rawValue: 1 << 0)
    /// The external data file is a valid raw image by itself.
    package static let rawExternalData = AutoclearFeatures(rawValue: 1 << 1)
    /// Autoclear bits we keep on rewrite; others are cleared, as the spec asks
    /// of a writer that does not understand them.
    package static let known: AutoclearFeatures = [.bitmaps, .rawExternalData]
}

/// One entry of the feature name table header extension.
package struct FeatureName: Equatable, Sendable {
    package enum Kind: UInt8, Sendable {
        case incompatible = 0, compatible = 1, autoclear = 2
    }
    package var kind: UInt8
    package var bit: UInt8
    package var name: String

    package init(kind: Kind, bit: UInt8, name: String) {
        self.kind = kind.rawValue; self.bit = bit; self.name = name
    }
    package init(rawKind: UInt8, bit: UInt8, name: String) {
        self.kind = rawKind; self.bit = bit; self.name = name
    }

    /// The table QEMU writes into every version 3 image, in QEMU's order.
    package static let qemuTable: [FeatureName] = [
        FeatureName(kind: .incompatible, bit: 0, name: "dirty bit"),
        FeatureName(kind: .incompatible, bit: 1, name: "corrupt bit"),
        FeatureName(kind: .incompatible, bit: 2, name: "external data file"),
        FeatureName(kind: .incompatible, bit: 3, name: "compression type"),
        FeatureName(kind: .incompatible, bit: 4, name: "extended L2 entries"),
        FeatureName(kind: .compatible, bit: 0, name: "lazy refcounts"),
        FeatureName(kind: .autoclear, bit: 0, name: "bitmaps"),
        FeatureName(kind: .autoclear, bit: 1, name: "raw external data"),
    ]

    /// Each table entry: type (1 byte), bit number (1 byte), name (46 bytes, NUL padded).
    package static let entrySize = 48
    package static let nameLength = 46
}

/// How compressed clusters are coded (header byte 104).
public enum CompressionType: UInt8, Sendable, CustomStringConvertible {
    case zlib = 0
    case zstd = 1

    /// The name qemu-img uses (`compression_type` option, info output).
    public var description: String {
        switch self {
        case .zlib: return "zlib"
        case .zstd: return "zstd"
        }
    }

    /// The type named `name` ("zlib" or "zstd"), or nil.
    public init?(name: String) {
        switch name {
        case "zlib": self = .zlib
        case "zstd": self = .zstd
        default: return nil
        }
    }
}
