// ImageInfo as qemu-img info's human-readable block, and its "Format
// specific information" part, which qemu-io's info prints too. The QAPI
// object (for --output=json, and dumped here) is built in the ImageInfoJSON
// module, which QMP's query-named-block-nodes uses too.

import ImageInfoJSON
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
            out += SnapshotListing.table(snapshots)
        }
        if let formatSpecific { out += formatSpecific.humanText }
        return out
    }
}

extension Qcow2FormatInfo {
    /// The "Format specific information" block, as qemu-img info and
    /// qemu-io's info both print it.
    var humanText: String { "Format specific information:\n" + qapiJSON.qemuHumanDump(indentation: 1) }
}
