// query-named-block-nodes' entries as QEMU builds them (BlockDeviceInfo with
// its ImageInfo chain, from the ImageInfoJSON module): members put in schema
// order; the printer then orders them as QEMU's QDict does.
import BlockGraph
import ImageInfoJSON
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
        if !dirtyBitmaps.isEmpty { o.append(("dirty-bitmaps", .array(dirtyBitmaps.map(\.qapiJSON)))) }
        return .object(o)
    }
}

extension BlockImageInfo {
    /// ImageInfo with the backing chain nested as `backing-image`.
    var qapiJSON: JSONValue { info.qapiJSON(backingImage: backingImage?.qapiJSON) }
}

extension DirtyBitmapInfo {
    /// BlockDirtyInfo in schema order (`inconsistent` only when set).
    var qapiJSON: JSONValue {
        var o: [(String, JSONValue)] = [
            ("name", .string(name)),
            ("recording", .bool(recording)),
            ("persistent", .bool(persistent)),
            ("busy", .bool(false)),
            ("granularity", .uint(granularity)),
            ("count", .uint(count)),
        ]
        if inconsistent { o.append(("inconsistent", .bool(true))) }
        return .object(o)
    }
}
