// Writing a whole guest disk (through its backing chain) into a new qcow2
// image, as `qemu-img convert -O qcow2` does: the image is created with the
// given options, then ConvertCopy writes only data that is allocated and not
// zero, in guest order, so the write path allocates clusters where QEMU would.

/// Writes a guest disk into a new qcow2 image (`qemu-img convert -O qcow2`).
public enum Qcow2Export {
    /// Creates `path` with `options` (its size is replaced by the image's)
    /// and copies `image`'s guest data into it; with `compress`, every
    /// cluster that holds data is written compressed. With a backing file in
    /// `options`, only what `image`'s top layer holds is copied (qemu-img
    /// convert -B: the backing is taken to hold the rest).
    ///
    /// The output is written as qemu-img writes its target (cache=unsafe):
    /// the write path keeps QEMU's order of writes, but its flushes do not
    /// sync the file. A convert that does not complete leaves no usable image
    /// either way, and syncing the new image's metadata steps one by one only
    /// made the copy wait for the disk.
    /// Throws `Qcow2Error.creation` when the output cannot be created,
    /// `Qcow2Error.export` when reading or writing fails.
    public static func write(_ image: BlockImage, to path: String, options: Qcow2CreateOptions, compress: Bool = false) throws {
        try RawExport.refuseOutputInChain(image, path: path)
        var options = options
        options.size = image.size
        try Qcow2Creator.create(path: path, options: options, replacing: true)
        let output = try ConvertTarget.open(path: path, format: .qcow2, cache: .unsafe)
        var settings = ConvertSettings()
        settings.compressed = compress
        settings.targetHasBacking = options.backingFile != nil
        try ConvertTarget.prepare(&settings, for: output, isNew: true)
        try ConvertTarget.finish(output) {
            try ConvertCopy(sources: ConvertSources([image]), target: output, settings: settings).run()
        }
    }
}
