// The one way the codec reports a problem it carries on after. QEMU prints
// such problems and continues: some with error_report (the program's name in
// front: "qemu-io: Failed to flush the L2 table cache: ..."), a few with a
// bare line on standard error ("qcow2_free_clusters failed: ..."). A library
// must not print behind its embedder's back, so every such report goes to a
// sink: the image's own if one is set, else the process-wide one, else a
// line on standard error exactly as QEMU prints it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage
import Synchronization

/// A problem the codec reported and went on after.
public struct Qcow2Diagnostic: Sendable, Equatable, CustomStringConvertible {
    /// How QEMU prints it.
    public enum Style: Sendable, Equatable {
        /// error_report: the program's name and ": " come first.
        case errorReport
        /// A bare line on standard error.
        case plain
    }

    /// How the line is printed.
    public let style: Style
    /// The report without any program name.
    public let message: String

    /// A report of `message`, printed in `style`.
    public init(_ style: Style, _ message: String) {
        self.style = style
        self.message = message
    }

    /// The line as QEMU prints it from `program` (no line break).
    public func line(program: String?) -> String {
        guard style == .errorReport, let program else { return message }
        return "\(program): \(message)"
    }

    /// The message alone.
    public var description: String { message }
}

/// Where diagnostics go. Process-wide settings here; an image can have its
/// own sink (`Qcow2Image.diagnosticSink`).
public enum Qcow2Diagnostics {
    /// Receives each report; called on whichever thread made it.
    public typealias Sink = @Sendable (Qcow2Diagnostic) -> Void

    private struct Settings {
        var sink: Sink?
        var program: String?
    }
    private static let settings = Mutex(Settings())

    /// The name error_report-style lines start with on standard error
    /// (the CLI sets its own, as qemu-img and qemu-io print theirs); nil
    /// prints the bare message.
    public static var programName: String? {
        get { settings.withLock { $0.program } }
        set { settings.withLock { $0.program = newValue } }
    }

    /// Replaces the process-wide sink; nil restores standard error.
    public static func setSink(_ sink: Sink?) {
        settings.withLock { $0.sink = sink }
    }

    /// Delivers `diagnostic` to `sink`, else to the process-wide sink, else
    /// to standard error.
    static func report(_ diagnostic: Qcow2Diagnostic, to sink: Sink? = nil) {
        if let sink { return sink(diagnostic) }
        let (global, program) = settings.withLock { ($0.sink, $0.program) }
        if let global { return global(diagnostic) }
        let bytes = Array((diagnostic.line(program: program) + "\n").utf8)
        _ = try? FileDescriptor.standardError.writeAll(bytes)  // nowhere left to report to
    }
}

extension Qcow2Error {
    /// The errno QEMU's driver returns for `error` at the same point: the
    /// one the error carries, else EIO (EINVAL, EPERM for the cases QEMU
    /// reports with those).
    public static func errnoValue(of error: Error) -> Int32 {
        guard let error = error as? Qcow2Error else { return EIO }
        switch error.innermost {
        case let .io(_, code), let .openFailed(_, code), let .writeFailed(code, _), let .checkFailed(code): return code
        case .invalidArgument: return EINVAL
        case .readOnly: return EPERM
        default: return EIO
        }
    }

    /// The strerror text of `errnoValue(of:)`, as QEMU prints it after a colon.
    public static func reason(of error: Error) -> String {
        String(cString: strerror(errnoValue(of: error)))
    }
}
