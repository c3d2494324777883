// query-named-block-nodes' entries as QEMU builds them (BlockDeviceInfo with
// its ImageInfo chain): members put in schema order; the printer then orders
// them as QEMU's QDict does.
import BlockGraph
import Qcow2
import QemuJSON

extension BlockDeviceInfo {
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("file", .string(file)),
            ("node-name", .string(nodeName)),
            ("ro", .bool(readOnly)),
            ("drv", .string(driver)),
        ]
        if let backingFile { o.append(("backing_file", .string(backingFile))) }
        o += [
            ("backing_file_depth", .int(Int64(backingFileDepth))),
            ("encrypted", .bool(encrypted)),
            ("encryption_key_missing", .bool(encryptionKeyMissing)),
            ("detect_zeroes", .string(detectZeroes)),
            ("bps", .int(bps)), ("bps_rd", .int(bpsRd)), ("bps_wr", .int(bpsWr)),
            ("iops", .int(iops)), ("iops_rd", .int(iopsRd)), ("iops_wr", .int(iopsWr)),
            ("image", image.qapiJSON),
            ("cache", .object([
                ("writeback", .bool(cache.writeback)),
                ("direct", .bool(cache.direct)),
                ("no-flush", .bool(cache.noFlush)),
            ])),
            ("write_threshold", .uint(writeThreshold)),
        ]
        return .object(o)
    }
}

extension BlockImageInfo {
    /// ImageInfo with the backing chain nested as `backing-image`.
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("filename", .string(info.filename)),
            ("format", .string(info.format)),
        ]
        if let dirtyFlag = info.dirtyFlag { o.append(("dirty-flag", .bool(dirtyFlag))) }
        if let actualSize = info.actualSize { o.append(("actual-size", .uint(actualSize))) }
        o.append(("virtual-size", .uint(info.virtualSize)))
        if let clusterSize = info.clusterSize { o.append(("cluster-size", .uint(clusterSize))) }
        if let name = info.backingFilename { o.append(("backing-filename", .string(name))) }
        if let name = info.fullBackingFilename { o.append(("full-backing-filename", .string(name))) }
        if let format = info.backingFilenameFormat { o.append(("backing-filename-format", .string(format))) }
        if let snapshots = info.snapshots { o.append(("snapshots", .array(snapshots.map(\.qapiJSON)))) }
        if let backingImage { o.append(("backing-image", backingImage.qapiJSON)) }
        return .object(o)
    }
}

extension SnapshotInfo {
    var qapiJSON: JSONValue {
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
