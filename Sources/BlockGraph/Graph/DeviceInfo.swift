// What query-named-block-nodes reports for a node (QEMU's BlockDeviceInfo,
// block/qapi.c bdrv_block_device_info and bdrv_query_image_info), typed; the
// QMP side turns it into JSON in QEMU's key order. QcowKit has no throttling,
// no encryption and no write threshold, so those members are always zero or
// false; `encryption_key_missing` is kept because the acceptance scenario
// (QEMU's iotest 191 output) still shows it.

import Qcow2

/// A node's image and, nested, the images down its backing chain
/// (ImageInfo's `backing-image`).
public struct BlockImageInfo: Equatable, Sendable {
    public var info: ImageInfo
    private var below: [BlockImageInfo]

    public init(info: ImageInfo, backingImage: BlockImageInfo? = nil) {
        self.info = info
        self.below = backingImage.map { [$0] } ?? []
    }

    public var backingImage: BlockImageInfo? {
        get { below.first }
        set { below = newValue.map { [$0] } ?? [] }
    }
}

/// BlockdevCacheInfo: QcowKit's nodes behave as cache=writeback.
public struct BlockDeviceCacheInfo: Equatable, Sendable {
    public var writeback = true
    public var direct = false
    public var noFlush = false
    public init() {}
}

public struct BlockDeviceInfo: Equatable, Sendable {
    /// The node's file name (`file`).
    public var file: String
    public var nodeName: String
    /// `ro`
    public var readOnly: Bool
    /// `drv`: "qcow2", "raw" or "file".
    public var driver: String
    /// The file name of the node's backing node, if it has one (QEMU 7.2's
    /// `backing_file`: not the header's name; absent with `backing: null`).
    public var backingFile: String?
    /// Backing links below the node (`backing_file_depth`).
    public var backingFileDepth: Int
    public var encrypted = false
    public var encryptionKeyMissing = false
    public var detectZeroes = "off"
    public var bps: Int64 = 0
    public var bpsRd: Int64 = 0
    public var bpsWr: Int64 = 0
    public var iops: Int64 = 0
    public var iopsRd: Int64 = 0
    public var iopsWr: Int64 = 0
    public var writeThreshold: UInt64 = 0
    public var cache = BlockDeviceCacheInfo()
    public var image: BlockImageInfo
    /// The node's dirty bitmaps, newest first (`dirty-bitmaps`, absent when none).
    public var dirtyBitmaps: [DirtyBitmapInfo] = []

    public init(file: String, nodeName: String, readOnly: Bool, driver: String, backingFile: String?,
                backingFileDepth: Int, image: BlockImageInfo) {
        self.file = file
        self.nodeName = nodeName
        self.readOnly = readOnly
        self.driver = driver
        self.backingFile = backingFile
        self.backingFileDepth = backingFileDepth
        self.image = image
    }
}

extension BlockGraph {
    /// The query-named-block-nodes entry of `node`.
    public func deviceInfo(_ node: BlockNode) throws -> BlockDeviceInfo {
        var chain: [BlockNode] = [node]
        while let next = chain[chain.count - 1].backing { chain.append(next) }
        var image: BlockImageInfo?
        for layer in chain.reversed() {
            image = BlockImageInfo(info: try imageInfo(layer), backingImage: image)
        }
        guard let image else { throw BlockGraphError("Node '\(node.nodeName)' has no image") }
        var info = BlockDeviceInfo(file: node.filename, nodeName: node.nodeName, readOnly: node.isReadOnly,
                                   driver: node.driver, backingFile: node.backing?.filename,
                                   backingFileDepth: chain.count - 1, image: image)
        info.dirtyBitmaps = dirtyBitmaps(of: node)
        info.cache.noFlush = node.cacheNoFlush
        return info
    }

    /// One node's ImageInfo (no backing-image; no format-specific block,
    /// which the scenario's listing does not show).
    func imageInfo(_ node: BlockNode) throws -> ImageInfo {
        if let qcow2 = node.qcow2 {
            var warnings: [ImageInfoWarning] = []
            var info = try ImageInfoReader.qcow2(image: qcow2, filename: node.filename, warnings: &warnings)
            info.formatSpecific = nil
            return info
        }
        guard let blockFile = node.file?.blockFile ?? node.blockFile else {
            throw BlockGraphError("Node '\(node.nodeName)' has no file")
        }
        var info = try ImageInfoReader.raw(file: blockFile, filename: node.filename)
        info.format = node.driver
        return info
    }
}
