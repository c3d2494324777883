// ImageInfo in qemu-img's two output forms: the QAPI object (for
// --output=json, and for QMP replies that embed ImageInfo) and the
// human-readable block. Members go into objects in QAPI schema order; the
// JSON printer then orders them as QEMU's QDict does.

import Qcow2
import QemuJSON

extension ImageInfo {
    /// QEMU's ImageInfo as a JSON object.
    public var qapiJSON: JSONValue {
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
        if let formatSpecific {
            o.append(("format-specific", .object([("type", .string("qcow2")), ("data", formatSpecific.qapiJSON)])))
        }
        return .object(o)
    }

    /// The block `qemu-img info` prints for one image, ending with a newline.
    public var humanText: String {
        var out = "image: \(filename)\n"
        out += "file format: \(format)\n"
        out += "virtual size: \(SizeString.format(virtualSize)) (\(Int64(truncatingIfNeeded: virtualSize)) bytes)\n"
        out += "disk size: \(actualSize.map(SizeString.format) ?? "unavailable")\n"
        if let clusterSize { out += "cluster_size: \(Int64(truncatingIfNeeded: clusterSize))\n" }
        if dirtyFlag == true { out += "cleanly shut down: no\n" }
        if let backingFilename {
            out += "backing file: \(backingFilename)"
            if let full = fullBackingFilename {
                if full != backingFilename { out += " (actual path: \(full))" }
            } else {
                out += " (cannot determine actual path)"
            }
            out += "\n"
            if let backingFilenameFormat { out += "backing file format: \(backingFilenameFormat)\n" }
        }
        if let snapshots {
            out += "Snapshot list:\n" + SnapshotListing.header + "\n"
            for snapshot in snapshots { out += SnapshotListing.row(snapshot) + "\n" }
        }
        if let formatSpecific {
            out += "Format specific information:\n" + formatSpecific.qapiJSON.qemuHumanDump(indentation: 1)
        }
        return out
    }
}

extension SnapshotInfo {
    /// QEMU's SnapshotInfo as a JSON object.
    public var qapiJSON: JSONValue {
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
    public var qapiJSON: JSONValue {
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
