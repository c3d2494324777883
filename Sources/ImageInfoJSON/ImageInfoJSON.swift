// QEMU's ImageInfo (with SnapshotInfo and qcow2's ImageInfoSpecificQCow2) as
// a JSON object: the one builder behind `qemu-img info --output=json` (the
// CLI) and the `image` member of query-named-block-nodes (QMP), which QEMU
// fills from the same QAPI type; a module of its own below both, so that the
// CLI's `info` does not depend on the service. Members go in in schema order; the printer then orders them as
// QEMU's QDict does. Sizes are QAPI `int`s.
import Qcow2
import QemuJSON

extension ImageInfo {
    /// QEMU's ImageInfo as a JSON object.
    package var qapiJSON: JSONValue { qapiJSON(backingImage: nil) }

    /// ImageInfo with `backingImage` (already built) as its `backing-image`.
    package func qapiJSON(backingImage: JSONValue?) -> JSONValue {
        var o: [(String, JSONValue)] = [
            ("filename", .string(filename)),
            ("format", .string(format)),
        ]
        if let dirtyFlag { o.append(("dirty-flag", .bool(dirtyFlag))) }
        if let actualSize { o.append(("actual-size", .int(Int64(truncatingIfNeeded: actualSize)))) }
        o.append(("virtual-size", .int(Int64(truncatingIfNeeded: virtualSize))))
        if let clusterSize { o.append(("cluster-size", .int(Int64(truncatingIfNeeded: clusterSize)))) }
        if let backingFilename { o.append(("backing-filename", .string(backingFilename))) }
        if let fullBackingFilename { o.append(("full-backing-filename", .string(fullBackingFilename))) }
        if let backingFilenameFormat { o.append(("backing-filename-format", .string(backingFilenameFormat))) }
        if let snapshots { o.append(("snapshots", .array(snapshots.map(\.qapiJSON)))) }
        if let backingImage { o.append(("backing-image", backingImage)) }
        if let formatSpecific {
            o.append(("format-specific", .object([("type", .string("qcow2")), ("data", formatSpecific.qapiJSON)])))
        }
        return .object(o)
    }
}

extension SnapshotInfo {
    /// QEMU's SnapshotInfo as a JSON object.
    package var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("id", .string(id)),
            ("name", .string(name)),
            ("vm-state-size", .int(vmStateSize)),
            ("date-sec", .int(dateSeconds)),
            ("date-nsec", .int(dateNanoseconds)),
            ("vm-clock-sec", .int(vmClockSeconds)),
            ("vm-clock-nsec", .int(vmClockNanoseconds)),
        ]
        if let icount { o.append(("icount", .int(icount))) }
        return .object(o)
    }
}

extension Qcow2FormatInfo {
    /// QEMU's ImageInfoSpecificQCow2 as a JSON object.
    package var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [("compat", .string(compat))]
        if let extendedL2 { o.append(("extended-l2", .bool(extendedL2))) }
        if let lazyRefcounts { o.append(("lazy-refcounts", .bool(lazyRefcounts))) }
        if let corrupt { o.append(("corrupt", .bool(corrupt))) }
        o.append(("refcount-bits", .int(Int64(truncatingIfNeeded: refcountBits))))
        if let bitmaps {
            o.append(("bitmaps", .array(bitmaps.map { bitmap in
                .object([
                    ("name", .string(bitmap.name)),
                    ("granularity", .uint(UInt64(bitmap.granularity))),
                    ("flags", .array(bitmap.flags.map { .string($0.rawValue) })),
                ])
            })))
        }
        o.append(("compression-type", .string(compressionType.description)))
        return .object(o)
    }
}
