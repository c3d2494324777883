// The state qemu-io keeps between commands: the open image (at most one),
// how it was opened, and the reports of asynchronous requests that have not
// been printed yet.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

/// The open image and the options it was opened with.
final class IODevice {
    let image: BlockImage
    /// The file it was opened from.
    let path: String
    var options: IOOpenOptions
    var readOnly: Bool { options.readOnly }

    init(image: BlockImage, path: String, options: IOOpenOptions) {
        self.image = image
        self.path = path
        self.options = options
    }

    /// The image's write interface; nil when its format has none yet.
    var writable: WritableBlockImage? { image as? WritableBlockImage }

    /// After a write: flushed in writethrough mode or for a -f (FUA) request.
    func completeWrite(forceUnitAccess: Bool) throws {
        guard options.writethrough || forceUnitAccess else { return }
        try flush()
    }

    func flush() throws {
        guard !options.readOnly, !options.ignoreFlushes, let writable else { return }
        try writable.flush()
    }

    /// Flushes (as closing a QEMU block node does) and closes. QEMU's close
    /// cannot fail: bdrv_close ignores its flush's result, and the image
    /// reports what it could not write back itself (Qcow2Diagnostics).
    func close() {
        try? flush()
        try? image.close()
    }
}

final class IOSession {
    /// The name diagnostics start with, where qemu-io prints "qemu-io".
    static var program: String { ProgramName.current }

    let console: IOConsole
    private(set) var device: IODevice?
    /// --image-opts: `open` takes its file as an option string.
    var imageOptionsMode = false
    /// Set by `quit`: no further commands run.
    var quitRequested = false
    /// Reports of asynchronous requests, printed when qemu-io would next
    /// poll for completions (the requests themselves are already done).
    private var asynchronousReports: [() -> Void] = []

    init(console: IOConsole) {
        self.console = console
    }

    /// Opens an image as qemu-io's `openfile`; false (with the message
    /// printed) on failure.
    @discardableResult
    func open(_ name: String?, options given: IOOpenOptions) -> Bool {
        if device != nil {
            console.err("\(Self.program): file open already, try 'help close'")
            return false
        }
        let label = name.map { " device \($0)" } ?? ""
        func fail(_ message: String) -> Bool {
            console.err("\(Self.program): can't open\(label): \(message)")
            return false
        }
        var options = given
        let argument: ImageArgument
        do {
            argument = try ImageArgument(ioOptions: given.optionStrings, filename: name, format: given.format, warn: warn)
        } catch {
            return fail("\(error)")
        }
        options.take(argument)
        if options.forceShare && !options.readOnly {
            return fail("force-share=on can only be used with read-only images")
        }
        do { try argument.checkOpen(writable: !options.readOnly, attachingBacking: true) } catch { return fail("\(error)") }
        if options.copyOnRead && options.readOnly {
            return fail("Can't use copy-on-read on read-only device")
        }
        let format = argument.format.flatMap(ImageFormat.init(rawValue:))
        let path = argument.path
        let locking = argument.locking(options.locking)
        let image: BlockImage
        do {
            image = argument.opensBacking
                ? try ImageOpener.open(path: path, format: format, writable: !options.readOnly, locking: locking)
                : try ImageOpener.openWithoutBacking(path: path, format: format, writable: !options.readOnly, locking: locking)
        } catch {
            return fail("\(error)")
        }
        if format == nil, let raw = image as? RawImage {
            raw.isProbed = true
            if !options.readOnly {
                console.err(ProbedRawWarning.text(path: path))
            }
        }
        if format == nil {
            do {
                try argument.checkProbed(image.format)
            } catch {
                try? image.close()  // nothing was written yet
                return fail("\(error)")
            }
        }
        device = IODevice(image: image, path: path, options: options)
        return true
    }

    /// Applies new options to the open image, reopening its file when the
    /// access mode changes; an error message if that failed (the image then
    /// stays as it was). A reopen starts with a flush, and fails if that
    /// does (bdrv_reopen_prepare).
    func reopen(with options: IOOpenOptions) -> String? {
        guard let old = device else { return nil }
        guard options.readOnly != old.readOnly || options.direct != old.options.direct else {
            old.options = options
            return nil
        }
        completeAsynchronousRequests()
        do {
            try old.flush()
        } catch {
            return "Error flushing drive: \(Qcow2Error.reason(of: error))"
        }
        let image: BlockImage
        do {
            image = try ImageOpener.reopen(old.image, writable: !options.readOnly,
                                           user: options.readOnly ? VerbAccess.read : VerbAccess.write,
                                           locking: ImageLocking(forceShare: old.options.forceShare, direct: options.direct))
        } catch {
            return "\(error)"
        }
        // A probed raw image stays under the probing restrictions.
        if let raw = image as? RawImage, let oldRaw = old.image as? RawImage { raw.isProbed = oldRaw.isProbed }
        // As a close: what cannot be written back was reported by the image.
        try? old.image.close()
        device = IODevice(image: image, path: old.path, options: options)
        return nil
    }

    /// Closes the open image, after its outstanding reports.
    func close() {
        completeAsynchronousRequests()
        device?.close()
        device = nil
    }

    /// Prints a warning as QEMU's warn_report does.
    func warn(_ message: String) {
        console.err("\(Self.program): warning: \(message)")
    }

    /// Queues the report of an asynchronous request.
    func deferReport(_ print: @escaping () -> Void) {
        asynchronousReports.append(print)
    }

    /// Prints the reports of requests that completed since the last poll.
    func completeAsynchronousRequests() {
        let reports = asynchronousReports
        asynchronousReports.removeAll()
        for report in reports { report() }
    }

    /// The text of the errno a failed request maps to, as qemu-io prints it
    /// after "read failed: " and the like.
    static func reason(for error: Error) -> String {
        Qcow2Error.reason(of: error)
    }
}
