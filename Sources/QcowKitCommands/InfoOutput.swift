// ImageInfo as qemu-img info's human-readable block. The QAPI object (for
// --output=json, and the "Format specific information" dumped here) is built
// in QMP's ImageInfoJSON.swift, which query-named-block-nodes uses too.

import QMP
import Qcow2
import QemuJSON

extension ImageInfo {
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
