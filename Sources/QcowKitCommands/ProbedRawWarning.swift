// QEMU's warning when a raw image whose format was probed is opened for
// writing (bdrv_open_inherit): from then on, writes that would make block 0
// look like another format's header are refused (RawImage.isProbed).

enum ProbedRawWarning {
    static func text(path: String) -> String {
        "WARNING: Image format was not specified for '\(path)' and probing guessed raw.\n"
            + "         Automatically detecting the format is dangerous for raw images, "
            + "write operations on block 0 will be restricted.\n"
            + "         Specify the 'raw' format explicitly to remove the restrictions."
    }
}
