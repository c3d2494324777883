// The warnings qemu-img prints while reading info, and the open failure in
// its words (the errors themselves are `Qcow2Error` cases).

extension Qcow2Error {
    /// `couldNotOpen` with the reason QEMU's file driver gives when it cannot
    /// open `path` (for a directory, `Qcow2Error.notRegularFile` says it all).
    static func openFailure(path: String, error: Error) -> Qcow2Error {
        if case let Qcow2Error.io(step: "open", errno: code) = error {
            return .couldNotOpen(path: path, reason: Qcow2Error.openFailed(path: path, errno: code).description)
        }
        return .couldNotOpen(path: path, reason: "\(error)")
    }
}

/// A warning qemu-img prints while reading an image's info.
public enum ImageInfoWarning: Equatable, Sendable {
    /// The bitmaps extension is present but its autoclear bit is not: the
    /// bitmaps are ignored.
    case bitmapsInconsistent(versionTwo: Bool)

    /// What qemu-img writes to standard error for it, given its program name
    /// (a warning line, then a hint without a final newline).
    public func message(program: String) -> String {
        switch self {
        case let .bitmapsInconsistent(versionTwo):
            let warning = versionTwo
                ? "This qcow2 v2 image contains bitmaps, but they may have been modified by a program "
                    + "without persistent bitmap support; so now they must all be considered inconsistent"
                : "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent"
            return "\(program): warning: \(warning)\n"
                + "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix."
        }
    }
}
