// Changing an open image's creation options in place (qemu-img amend):
// QEMU 7.2's qcow2_amend_options, in its order, with its messages:
//  1. upgrade to version 3 first (some options need it): a snapshot table
//     without v3 extra data is rewritten, then the header;
//  2. the refcount width (RefcountWidthChange.swift);
//  3. the header rewritten (always, even when nothing else changes);
//  4. the backing file or format cannot change (only the same names pass);
//  5. lazy refcounts on (a header bit) or off (the image made clean first);
//  6. the size, through the resize path (Truncate.swift);
//  7. downgrade to version 2 last, once what v2 cannot hold is gone:
//     refused for other refcount widths, snapshots of another size,
//     incompatible features, zstd with compressed clusters; the dirty bit
//     cleared, compatible and autoclear bits dropped, zero clusters expanded
//     (ZeroClusterExpansion.swift), then the v2 header.
// Option values are checked by the caller (the command line): here only
// what depends on the image.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What `amend` changes; nil leaves an option as it is.
package struct Qcow2AmendRequest: Sendable {
    /// 2 (compat=0.10) or 3 (compat=1.1).
    package var version: UInt32?
    package var refcountWidth: RefcountWidth?
    package var lazyRefcounts: Bool?
    /// The new virtual size; 0 or nil leaves it.
    package var size: UInt64?
    /// backing_file and backing_fmt as given (either given: both compared).
    package var backingFile: String?
    package var backingFormat: String?
    package var backingGiven = false

    package init() {}
}

/// Why an amend failed: QEMU's message for it. `backingFileChange` is the
/// one that comes with a hint naming the tool (the caller adds it).
package enum Qcow2AmendError: Error, Equatable {
    case backingFileChange
}

extension Qcow2Image {
    /// Amends the image as `request` asks; `progress(done, total)` is QEMU's
    /// amend status callback, its operations combined as qemu-img sees them.
    package func amend(_ request: Qcow2AmendRequest, progress: @escaping (UInt64, UInt64) -> Void) throws {
        guard isWritable else { throw Qcow2Error.readOnly }
        var tracker = AmendProgress(sink: progress)
        // Whatever step fails, the image's copy of the header follows.
        defer { syncStoredHeader() }
        let oldVersion = try withWriter { writer, _ in writer.version }
        let newVersion = request.version ?? oldVersion

        try withWriter { writer, _ in
            try writer.checkUsable()
            let widthChanges = request.refcountWidth.map { $0 != writer.allocator.width } ?? false
            tracker.totalOperations = (newVersion != oldVersion ? 1 : 0) + (widthChanges ? 1 : 0)
            if newVersion > oldVersion {
                tracker.operation = .upgrading
                try writer.upgrade(to: newVersion) { tracker.report($0, $1) }
            }
            if let width = request.refcountWidth, widthChanges {
                if newVersion < 3 && width.bits != 16 {
                    throw Qcow2Error.writeFailed(
                        errno: EINVAL, reason: "Refcount widths other than 16 bits require compatibility level 1.1 "
                            + "or above (use compat=1.1 or greater)")
                }
                tracker.operation = .changingRefcountWidth
                try writer.guarded { try writer.changeRefcountWidth(to: width) { tracker.report($0, $1) } }
            }
            try writer.updateHeader()
            if request.backingGiven {
                if request.backingFile != writer.backingFileName || request.backingFormat != backingFormat {
                    throw Qcow2AmendError.backingFileChange
                }
            }
            if let lazy = request.lazyRefcounts, lazy != writer.useLazyRefcounts {
                try writer.setLazyRefcounts(lazy, version: newVersion)
            }
        }
        if let size = request.size, size != 0 {
            try truncate(to: size, preallocation: .off)
        }
        if newVersion < oldVersion {
            try withWriter { writer, _ in
                tracker.operation = .downgrading
                try writer.downgrade(to: newVersion) { tracker.report($0, $1) }
            }
        }
    }

    /// The image's copy of the header follows the writer's.
    private func syncStoredHeader() {
        guard var header = try? withWriter({ writer, _ in writer.header }) else { return }
        header.size = size
        stored.withLock { $0.header = header }
    }
}

extension Qcow2Writer {
    /// qcow2_update_header, with amend's message on failure.
    func updateHeader() throws {
        try failing("Failed to update the image header") { try writeHeaderCluster() }
    }

    /// The version changed in the header, or left as it was if that fails.
    private func setVersion(_ newVersion: UInt32) throws {
        let oldVersion = version
        version = newVersion
        header.version = newVersion
        do {
            try updateHeader()
        } catch {
            version = oldVersion
            header.version = oldVersion
            throw error
        }
    }

    /// qcow2_upgrade: version 2 to 3.
    func upgrade(to newVersion: UInt32, progress: (UInt64, UInt64) -> Void) throws {
        progress(0, 2)
        // Version 3 snapshots carry the 64-bit VM state size and the disk size.
        if snapshots.entries.contains(where: { $0.extraDataSize < 16 }) {
            try failing("Failed to update the snapshot table") { try writeSnapshotTable(snapshots) }
        }
        progress(1, 2)
        try setVersion(newVersion)
        progress(2, 2)
    }

    /// Lazy refcounts on (version 3 only) or off (refcounts made exact first).
    func setLazyRefcounts(_ on: Bool, version newVersion: UInt32) throws {
        if on {
            guard newVersion >= 3 else {
                throw Qcow2Error.writeFailed(
                    errno: EINVAL, reason: "Lazy refcounts only supported with compatibility level 1.1 and above "
                        + "(use compat=1.1 or greater)")
            }
            header.compatibleFeatures.insert(.lazyRefcounts)
            do {
                try updateHeader()
            } catch {
                header.compatibleFeatures.remove(.lazyRefcounts)
                throw error
            }
            useLazyRefcounts = true
        } else {
            try failing("Failed to make the image clean") { try markClean() }
            header.compatibleFeatures.remove(.lazyRefcounts)
            do {
                try updateHeader()
            } catch {
                header.compatibleFeatures.insert(.lazyRefcounts)
                throw error
            }
            useLazyRefcounts = false
        }
    }

    /// qcow2_downgrade: version 3 to 2.
    func downgrade(to newVersion: UInt32, progress: (UInt64, UInt64) -> Void) throws {
        guard allocator.width.bits == 16 else {
            throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "compat=0.10 requires refcount_bits=16")
        }
        for snapshot in snapshots.entries
        where snapshot.vmStateSize > UInt64(UInt32.max) || (snapshot.diskSize ?? imageSize) != imageSize {
            throw Qcow2Error.writeFailed(errno: ENOTSUP, reason: "Internal snapshots prevent downgrade of image")
        }
        if header.isDirty { try failing("Failed to make the image clean") { try markClean() } }
        let remaining = header.incompatibleFeatures.subtracting(.compressionType)
        if !remaining.isEmpty {
            throw Qcow2Error.writeFailed(
                errno: ENOTSUP,
                reason: "Cannot downgrade an image with incompatible features 0x\(String(remaining.rawValue, radix: 16)) set")
        }
        header.compatibleFeatures = []
        header.autoclearFeatures = []
        try failing("Failed to turn zero into data clusters") { try expandZeroClusters(progress: progress) }
        if header.incompatibleFeatures.contains(.compressionType) {
            let compressed: Bool
            do {
                compressed = try hasCompressedClusters()
            } catch {
                throw Qcow2Error.writeFailed(errno: EINVAL, reason: "Failed to check block status")
            }
            if compressed {
                throw Qcow2Error.writeFailed(
                    errno: ENOTSUP,
                    reason: "Cannot downgrade an image with zstd compression type and existing compressed clusters")
            }
            header.incompatibleFeatures.remove(.compressionType)
            header.compressionType = .zlib
        }
        try setVersion(newVersion)
    }

    /// qcow2_has_compressed_clusters: whether the active tables map any
    /// guest byte to a compressed cluster.
    private func hasCompressedClusters() throws -> Bool {
        var offset: UInt64 = 0
        while offset < imageSize {
            let extent = try map.lookup(at: offset, length: min(imageSize - offset, UInt64(Int32.max)))
            if extent.type == .compressed { return true }
            offset += extent.length
        }
        return false
    }
}

/// qcow2_amend_helper_cb: each operation's own progress mapped onto one
/// line, the work of operations not begun yet projected from those seen.
private struct AmendProgress {
    enum Operation { case none, upgrading, changingRefcountWidth, downgrading }

    let sink: (UInt64, UInt64) -> Void
    var totalOperations = 0
    var operation = Operation.none
    private var lastOperation = Operation.none
    private var operationsCompleted: Int64 = 0
    private var offsetCompleted: Int64 = 0
    private var lastWorkSize: Int64 = 0

    init(sink: @escaping (UInt64, UInt64) -> Void) { self.sink = sink }

    mutating func report(_ done: UInt64, _ workSize: UInt64) {
        if operation != lastOperation {
            if lastOperation != .none {
                offsetCompleted += lastWorkSize
                operationsCompleted += 1
            }
            lastOperation = operation
        }
        // An operation reporting is always counted (QEMU asserts it); the
        // guard only keeps the division safe.
        let total = Int64(max(totalOperations, 1))
        lastWorkSize = Int64(workSize)
        let current = offsetCompleted + Int64(workSize)
        let projected = current * (total - operationsCompleted - 1) / (operationsCompleted + 1)
        sink(UInt64(offsetCompleted + Int64(done)), UInt64(current + projected))
    }
}
