// Header extensions (docs/interop/qcow2.txt, "Header extensions"): a list of
// (type, length, data padded to 8 bytes) records after the fixed header, ended
// by a type-0 record, all inside the first cluster.

public enum HeaderExtension: Equatable, Sendable {
    case backingFormat(String)
    case featureNameTable([FeatureName])
    /// Persistent dirty bitmaps: carried unchanged, not interpreted.
    case bitmaps([UInt8])
    /// Full disk encryption header location (offset, length): refused on open.
    case fullDiskEncryption([UInt8])
    case externalDataFile(String)
    case unknown(type: UInt32, data: [UInt8])

    public enum Magic {
        public static let end: UInt32 = 0x0000_0000
        public static let backingFormat: UInt32 = 0xe279_2aca
        public static let featureNameTable: UInt32 = 0x6803_f857
        public static let bitmaps: UInt32 = 0x2385_2875
        public static let fullDiskEncryption: UInt32 = 0x0537_be77
        public static let externalDataFile: UInt32 = 0x4441_5441
    }

    public var type: UInt32 {
        switch self {
        case .backingFormat: return Magic.backingFormat
        case .featureNameTable: return Magic.featureNameTable
        case .bitmaps: return Magic.bitmaps
        case .fullDiskEncryption: return Magic.fullDiskEncryption
        case .externalDataFile: return Magic.externalDataFile
        case let .unknown(type, _): return type
        }
    }

    /// The record's payload, unpadded.
    public var payload: [UInt8] {
        switch self {
        case let .backingFormat(s), let .externalDataFile(s): return Array(s.utf8)
        case let .featureNameTable(entries):
            var out = [UInt8](repeating: 0, count: entries.count * FeatureName.entrySize)
            for (i, e) in entries.enumerated() {
                let base = i * FeatureName.entrySize
                out[base] = e.kind
                out[base + 1] = e.bit
                for (j, c) in e.name.utf8.prefix(FeatureName.nameLength).enumerated() { out[base + 2 + j] = c }
            }
            return out
        case let .bitmaps(d), let .fullDiskEncryption(d), let .unknown(_, d): return d
        }
    }

    /// Decodes the extension area `bytes[start..<end]`. Stops at the end marker;
    /// an area that ends without one is accepted, as QEMU does.
    public static func decodeAll(_ bytes: [UInt8], from start: Int, to end: Int) throws -> [HeaderExtension] {
        var result: [HeaderExtension] = []
        var offset = start
        while offset < end {
            guard end - offset >= 8 else { throw Qcow2Error.invalidHeaderExtension("truncated extension header at offset \(offset)") }
            let type = bytes.be(UInt32.self, at: offset)
            let length = Int(bytes.be(UInt32.self, at: offset + 4))
            offset += 8
            if type == Magic.end { break }
            guard length <= end - offset else {
                throw Qcow2Error.invalidHeaderExtension(extensionName(type) + " is too large (\(length) bytes)")
            }
            let data = Array(bytes[offset..<offset + length])
            offset += (length + 7) & ~7
            result.append(try decodeOne(type: type, data: data))
        }
        return result
    }

    static func decodeOne(type: UInt32, data: [UInt8]) throws -> HeaderExtension {
        switch type {
        case Magic.backingFormat:
            return .backingFormat(String(decoding: data.prefix { $0 != 0 }, as: UTF8.self))
        case Magic.externalDataFile:
            return .externalDataFile(String(decoding: data.prefix { $0 != 0 }, as: UTF8.self))
        case Magic.featureNameTable:
            var entries: [FeatureName] = []
            var i = 0
            while i + FeatureName.entrySize <= data.count {
                let nameBytes = data[(i + 2)..<(i + FeatureName.entrySize)].prefix { $0 != 0 }
                entries.append(FeatureName(rawKind: data[i], bit: data[i + 1], name: String(decoding: nameBytes, as: UTF8.self)))
                i += FeatureName.entrySize
            }
            return .featureNameTable(entries)
        case Magic.bitmaps: return .bitmaps(data)
        case Magic.fullDiskEncryption: return .fullDiskEncryption(data)
        default: return .unknown(type: type, data: data)
        }
    }

    /// Encodes a list of extensions followed by the end marker.
    public static func encodeAll(_ extensions: [HeaderExtension]) -> [UInt8] {
        var out: [UInt8] = []
        for ext in extensions {
            let payload = ext.payload
            var record = [UInt8](repeating: 0, count: 8 + ((payload.count + 7) & ~7))
            record.setBE(ext.type, at: 0)
            record.setBE(UInt32(payload.count), at: 4)
            record.replaceSubrange(8..<(8 + payload.count), with: payload)
            out += record
        }
        out += [UInt8](repeating: 0, count: 8)
        return out
    }
}

/// "header extension 0x6803f857": how errors name an extension type.
func extensionName(_ type: UInt32) -> String {
    let hex = String(type, radix: 16)
    return "header extension 0x" + String(repeating: "0", count: max(0, 8 - hex.count)) + hex
}
