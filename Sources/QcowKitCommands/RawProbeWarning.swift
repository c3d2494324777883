// QEMU's warning when an image opened for writing was probed as raw (the
// block layer's, printed by every verb that opens images read-write).

enum RawProbeWarning {
    /// The warning's three lines, without the final newline.
    static func text(path: String) -> String {
        "WARNING: Image format was not specified for '\(path)' and probing guessed raw.\n"
            + "         Automatically detecting the format is dangerous for raw images, "
            + "write operations on block 0 will be restricted.\n"
            + "         Specify the 'raw' format explicitly to remove the restrictions."
    }
}
