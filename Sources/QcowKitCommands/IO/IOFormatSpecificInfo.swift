// The "Format specific information" qemu-io's `info` prints for qcow2, and
// the VM state offset: the same fields as QEMU's ImageInfoSpecificQCow2, in
// the order QEMU's dictionary happens to hold them, nested four spaces per
// level with dashes in names shown as spaces.
import Qcow2

enum IOFormatSpecificInfo {
    indirect enum Value: Equatable {
        case string(String)
        case number(UInt64)
        case bool(Bool)
        case list([Value])
        case dict([(String, Value)])

        static func == (a: Value, b: Value) -> Bool {
            switch (a, b) {
            case let (.string(x), .string(y)): return x == y
            case let (.number(x), .number(y)): return x == y
            case let (.bool(x), .bool(y)): return x == y
            case let (.list(x), .list(y)): return x == y
            case let (.dict(x), .dict(y)): return x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
            default: return false
            }
        }
    }

    /// Where QEMU keeps a qcow2 image's VM state: the first L2-table span
    /// past the virtual disk (qcow2's vm_state_offset).
    static func vmStateOffset(_ header: Qcow2Header) -> Int64 {
        let shift = UInt64(header.clusterBits) + UInt64(header.l2Bits)
        guard shift < 64 else { return 0 }
        let index = (header.size >> shift) + (header.size & ((1 << shift) - 1) == 0 ? 0 : 1)
        // QEMU shifts a signed 64-bit value; an absurd size wraps the same way.
        return Int64(bitPattern: index &<< shift)
    }

    /// The fields for `image`. An image opened read-write shows every
    /// persistent bitmap as in use, since QEMU marks them so while it has
    /// the image open for writing.
    static func qcow2(_ image: Qcow2Image, openedReadWrite: Bool) throws -> Value {
        let header = image.header
        if header.version < 3 {
            return .dict([("compat", .string("0.10")), ("compression-type", .string(header.compressionType.description)),
                          ("refcount-bits", .number(header.refcountBits))])
        }
        var fields: [(String, Value)] = [
            ("compat", .string("1.1")),
            ("compression-type", .string(header.compressionType.description)),
            ("lazy-refcounts", .bool(header.hasLazyRefcounts)),
        ]
        let bitmaps = try IOBitmapDirectory.read(image)
        if !bitmaps.isEmpty {
            fields.append(("bitmaps", .list(bitmaps.map { bitmap in
                var flags: [Value] = []
                if bitmap.inUse || openedReadWrite { flags.append(.string("in-use")) }
                if bitmap.auto { flags.append(.string("auto")) }
                return .dict([("flags", .list(flags)), ("name", .string(bitmap.name)),
                              ("granularity", .number(bitmap.granularity))])
            })))
        }
        fields += [
            ("refcount-bits", .number(header.refcountBits)),
            ("corrupt", .bool(header.isCorrupt)),
            ("extended-l2", .bool(header.hasExtendedL2)),
        ]
        return .dict(fields)
    }

    /// QEMU's human-readable dump of a QAPI value.
    static func dump(_ value: Value, indentation: Int) -> String {
        let pad = String(repeating: " ", count: indentation * 4)
        switch value {
        case let .dict(entries):
            return entries.map { key, entry in
                pad + key.replacingDashes + ":" + (entry.isComposite ? "\n" : " ") + dump(entry, indentation: indentation + 1)
            }.joined()
        case let .list(items):
            return items.enumerated().map { index, item in
                pad + "[\(index)]:" + (item.isComposite ? "\n" : " ") + dump(item, indentation: indentation + 1)
            }.joined()
        case let .string(text): return text + "\n"
        case let .number(n): return "\(n)\n"
        case let .bool(flag): return flag ? "true\n" : "false\n"
        }
    }
}

private extension IOFormatSpecificInfo.Value {
    var isComposite: Bool {
        switch self {
        case .dict, .list: return true
        default: return false
        }
    }
}

private extension String {
    var replacingDashes: String { String(map { $0 == "-" ? " " : $0 }) }
}
