// The target side of a convert: opening it as qemu-img does (with its
// backing chain, in one of QEMU's cache modes), the facts about it the copy
// needs (cluster size, zero initialisation, backing length), and closing it.

/// QEMU's cache modes (-t, -T), and what QcowKit does for each.
package enum CacheMode: String, CaseIterable, Sendable {
    case none, writeback, writethrough, directsync, unsafe

    /// Flushes do nothing (BDRV_O_NO_FLUSH): only `unsafe`.
    package var ignoresFlushes: Bool { self == .unsafe }
    /// Every write is flushed before the next (writethrough semantics).
    package var flushesEachWrite: Bool { self == .writethrough || self == .directsync }
    /// Whether the files bypass the host page cache (O_DIRECT), as QEMU's
    /// cache.direct=on.
    package var wantsDirectIO: Bool { self == .none || self == .directsync }

    /// The mode named `name` as QEMU spells it ("off" is not one).
    package init?(qemuName name: String) { self.init(rawValue: name) }
}

package enum ConvertTarget {
    /// Opens the target `path` as `format` for writing, with its backing
    /// chain (partial writes copy from it). Throws `Qcow2Error` as opening does.
    package static func open(path: String, format: ImageFormat?, cache: CacheMode) throws -> WritableBlockImage {
        let image = try ImageOpener.open(path: path, format: format, writable: true,
                                         locking: ImageLocking(direct: cache.wantsDirectIO))
        guard let writable = image as? WritableBlockImage else {
            try? image.close()
            throw Qcow2Error.readOnly
        }
        if cache.ignoresFlushes {
            // A convert that does not complete leaves no usable image either
            // way; syncing each metadata step would only make it wait.
            (writable as? Qcow2Image)?.file.ignoresFlushes = true
            (writable as? RawImage)?.file.ignoresFlushes = true
        }
        return writable
    }

    /// Fills in what `settings` needs to know about `target`: its cluster
    /// size, whether it reads as zeroes already (a new image without a
    /// backing file; QEMU's bdrv_has_zero_init is true for qcow2 and raw
    /// files), and its backing file's length.
    package static func prepare(_ settings: inout ConvertSettings, for target: WritableBlockImage, isNew: Bool,
                                cache: CacheMode = .unsafe) throws {
        if let qcow2 = target as? Qcow2Image {
            settings.clusterSectors = Int(qcow2.header.clusterSize) / ConvertSettings.sectorSize
        } else if settings.compressed {
            throw Qcow2Error.invalidArgument("Compression not supported for this file format")
        }
        if isNew && settings.minSparse > 0 && !settings.targetHasBacking { settings.targetIsZero = true }
        if settings.targetHasBacking && isNew, let backing = target.backing {
            settings.targetBackingSectors = Int64(backing.size / UInt64(ConvertSettings.sectorSize))
        }
        settings.flushAfterWrite = cache.flushesEachWrite
    }

    /// Runs `copy`, then writes back the target's metadata and closes it
    /// (closing it also when the copy fails).
    package static func finish(_ target: WritableBlockImage, _ copy: () throws -> Void) throws {
        do {
            try copy()
            try target.flush()
        } catch {
            try? target.close()
            throw error
        }
        try target.close()
    }
}
