// Header extensions (docs/interop/qcow2.txt, "Header extensions"): a list of
// (type, length, data padded to 8 bytes) records after the fixed header, ended
// by a type-0 record, all inside the first cluster.

package enum HeaderExtension: Equatable, Sendable {
    case backingFormat(String)
    case featureNameTable([FeatureName])
    /// Persistent dirty bitmaps: carried unchanged, not interpreted.
    case bitmaps([UInt8])
    /// Full disk encryption header location (offset, length): refused on open.
    case fullDiskEncryption([UInt8])
    case externalDataFile(String)
    case unknown(type: UInt32, data: [UInt8])

    package enum Magic {
        package static let end: UInt32 = 0x0000_0000
        package static let backingFormat: UInt32 = 0xe279_2aca
        package static let featureNameTable: UInt32 = 0x6803_f857
        package static let bitmaps: UInt32 = 0x2385_2875
        package static let fullDiskEncryption: UInt32 = 0x0537_be77
        package static let externalDataFile: UInt32 = 0x4441_5441
    }

    package var type: UInt32 {
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
    package var payload: [UInt8] {
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

    /// Decodes the extension area `bytes[start..<end]` (bytes past the end of
    /// `bytes` read as zeroes, as past the end of a file). Stops at the end
    /// marker; an area that ends without one is accepted, as QEMU does. A
    /// record whose header or data would cross `end` is refused, as is a
    /// backing format name too long for QEMU.
    package static func decodeAll(_ bytes: [UInt8], from start: Int, to end: Int) throws -> [HeaderExtension] {
        let (extensions, error) = decodeReportingError(bytes, from: start, to: end)
        if let error { throw error }
        return extensions
    }

    /// The extensions before the first invalid record, and the error that
    /// stopped decoding there, if any. QEMU names unsupported feature bits
    /// from a feature table found this way, ignoring what follows it.
    package static func decodeReportingError(
        _ bytes: [UInt8], from start: Int, to end: Int
    ) -> (extensions: [HeaderExtension], error: Qcow2Error?) {
        var result: [HeaderExtension] = []
        guard start >= 0, end > start else { return (result, nil) }
        // The area lies in the first cluster, so it is at most 2 MiB; this
        // bounds the zero padding below.
        guard end - start <= 1 << Qcow2Limits.maxClusterBits else { return (result, .headerExtensionTooLarge) }
        var area = bytes
        if area.count < end { area += [UInt8](repeating: 0, count: end - area.count) }
        var offset = start
        while offset < end {
            // The 8-byte record header itself must fit, then its data.
            guard end - offset >= 8 else { return (result, .headerExtensionTooLarge) }
            let type = area.be(UInt32.self, at: offset)
            let length = area.be(UInt32.self, at: offset + 4)
            offset += 8
            guard UInt64(length) <= UInt64(end - offset) else { return (result, .headerExtensionTooLarge) }
            if type == Magic.end { break }
            let data = Array(area[offset..<offset + Int(length)])
            do {
                result.append(try decodeOne(type: type, data: data))
            } catch let error as Qcow2Error {
                return (result, error)
            } catch {
                return (result, .invalidHeaderExtension("\(error)"))
            }
            // Records are padded to 8 bytes; the padding may run past `end`.
            offset += (Int(length) + 7) & ~7
        }
        return (result, nil)
    }

    static func decodeOne(type: UInt32, data: [UInt8]) throws -> HeaderExtension {
        switch type {
        case Magic.backingFormat:
            guard data.count <= Int(Qcow2Limits.maxBackingFormatLength) else {
                throw Qcow2Error.invalidHeaderExtension(
                    "ERROR: ext_backing_format: len=\(data.count) too large (>=\(Qcow2Limits.maxBackingFormatLength + 1))")
            }
            return .backingFormat(cString(data[...]))
        case Magic.externalDataFile:
            return .externalDataFile(cString(data[...]))
        case Magic.featureNameTable:
            // A trailing partial entry reads as if zero-padded, as in QEMU.
            var entries: [FeatureName] = []
            var i = 0
            while i + 2 <= data.count {
                let nameEnd = min(i + FeatureName.entrySize, data.count)
                entries.append(FeatureName(rawKind: data[i], bit: data[i + 1], name: cString(data[(i + 2)..<nameEnd])))
                i += FeatureName.entrySize
            }
            return .featureNameTable(entries)
        case Magic.bitmaps: return .bitmaps(data)
        case Magic.fullDiskEncryption: return .fullDiskEncryption(data)
        default: return .unknown(type: type, data: data)
        }
    }

    /// Names are C strings in QEMU: they end at the first NUL byte.
    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Encodes a list of extensions followed by the end marker.
    package static func encodeAll(_ extensions: [HeaderExtension]) -> [UInt8] {
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
