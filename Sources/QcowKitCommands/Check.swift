// `qcowkit check`: qemu-img 7.2's check. Findings go to standard error as
// they are found, the summary to standard output (human or JSON); with -r
// the image is repaired, then checked again and that second result printed.
// Exit status: 0 clean, 1 check failed, 2 corruptions, 3 leaks only, 63 for
// formats without checks (raw).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2
import QemuJSON

struct Check: ParsedVerb {
    var format: String?
    var repair: CheckRepair = []
    var output: String?
    var quiet = false
    var locking = ImageLocking.standard
    /// -T: checked as qemu-img checks it; reads are buffered whatever it says.
    var cache: String?
    var imageOpts = false
    var filenames: [String] = []

    /// qemu-img check's command line after the verb, read as img_check
    /// reads it (VerbGetopt; -r is checked as it comes). Throws ExitCode when
    /// it ends the run (help shown, a bad flag reported) or CommandFailure.
    static func parse(_ arguments: [String]) throws -> Check {
        var check = Check()
        var options = VerbGetopt("check", arguments)
        while let (code, value) = try options.next() {
            switch code {
            case UInt8(ascii: "f"): check.format = value
            case UInt8(ascii: "r"):
                switch value {
                case "leaks": check.repair = .leaks
                case "all": check.repair = .all
                default:
                    throw VerbGetopt.usageError("Unknown option value for -r (expecting 'leaks' or 'all'): \(value)")
                }
            case QemuImgVerb.output.code: check.output = value
            case UInt8(ascii: "q"): check.quiet = true
            case UInt8(ascii: "T"): check.cache = value
            case QemuImgVerb.forceShare.code: check.locking = .forceShared
            case QemuImgVerb.imageOpts.code: check.imageOpts = true
            default: break
            }
        }
        check.filenames = options.operands
        return check
    }

    func run() throws {
        guard filenames.count == 1, let filename = filenames.first else {
            throw VerbGetopt.usageError("Expecting one image file name")
        }
        let style: CheckReport.Style
        switch output {
        case nil, "human"?: style = .human
        case "json"?: style = .json
        default: throw CommandFailure("--output must be used with human or json as argument.")
        }
        if let cache { try CacheModeArgument.check(cache, what: "source") }

        let argument = try ImageArgument(filename, format: format, imageOpts: imageOpts)
        let checker = try CheckCommand.open(argument, writable: !repair.isEmpty, locking: locking)
        defer { try? checker.close() }
        let status = CheckCommand.run(checker, filename: argument.text, repair: repair, style: style, quiet: quiet)
        if status != 0 { throw CommandFailure("", status: status) }
    }
}

enum CheckCommand {
    /// Opens the image as qemu-img check does (backing chain included, so
    /// that a missing backing file fails the same way). Raw images cannot be
    /// checked: exit status 63.
    static func open(_ argument: ImageArgument, writable: Bool,
                     locking requested: ImageLocking = .standard) throws -> Qcow2Checker {
        let path = argument.path, text = argument.text
        for warning in argument.warnings { Terminal.printError(ProgramName.prefixed(warning)) }
        let format = try ReadCommands.format(argument.format, path: text)
        try argument.checkOpen(writable: writable, attachingBacking: true)
        let locking = argument.locking(requested)
        let file: BlockFile
        do {
            if locking.forceShare && writable { throw Qcow2Error.forceShareReadWrite }
            file = try ImageOpener.openFile(path: path, writable: writable, locking: locking.mode)
        } catch {
            throw CommandFailure(ImageOpener.failureMessage(path: text, error: error))
        }
        let user = writable ? VerbAccess.write : VerbAccess.read
        do {
            let chosen = try format ?? ImageFormat.probe(file)
            if format == nil {
                do { try argument.checkProbed(chosen) } catch { try? file.close(); throw error }
            }
            try file.setAccess(user.forFile(of: chosen, writable: writable, forceShare: locking.forceShare))
            if chosen == .raw {
                try? file.close()
                if format == nil && writable {
                    Terminal.printError(ProbedRawWarning.text(path: path))
                }
                throw CommandFailure("This image format does not support checks", status: 63)
            }
            let identity = try file.identity()
            let checker = try Qcow2Checker(file: file)
            // The chain is opened (and closed again) for its errors: the
            // checked image is its top.
            let link = BackingLink(name: checker.backingFileName, format: checker.backingFormat, overlayPath: path)
            if argument.opensBacking {
                let backing = try BackingChain.openBacking(link, below: .top, overlay: identity,
                                                           user: user.forBacking, locking: locking)
                try? backing?.close()
            }
            return checker
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            try? file.close()
            throw CommandFailure(ImageOpener.failureMessage(path: text, error: error))
        }
    }

    /// Checks (and repairs), prints the outcome, closes the image as QEMU
    /// does, and returns the exit status.
    static func run(_ checker: Qcow2Checker, filename: String, repair: CheckRepair,
                    style: CheckReport.Style, quiet: Bool) -> Int32 {
        let status = checkAndReport(checker, filename: filename, repair: repair, style: style, quiet: quiet)
        // qemu-img closes the image last (qcow2_inactivate): a refcount block
        // it cannot write back then is reported (by finishRepairs) after
        // everything else, and the exit status stays the check's.
        try? checker.finishRepairs()
        return status
    }

    private static func checkAndReport(_ checker: Qcow2Checker, filename: String, repair: CheckRepair,
                                       style: CheckReport.Style, quiet: Bool) -> Int32 {
        let diagnostics = DiagnosticsPrinter()
        defer { diagnostics.flush() }
        if checker.bitmapsAreStale {
            // QEMU's warning on open; its second line has no line break.
            diagnostics.write(ProgramName.prefixed("warning: a program lacking bitmap support modified this file, so all bitmaps "
                              + "are now considered inconsistent\nSome clusters may be leaked, run '\(ProgramName.current) check -r' "
                              + "on the image file to fix."))
        }
        var result: CheckResult
        do {
            result = try checker.check(repair: repair, diagnostics: diagnostics.print)
            if result.corruptionsFixed != 0 || result.leaksFixed != 0 {
                if style == .human && !quiet {
                    diagnostics.flush()
                    Terminal.print("The following inconsistencies were found and repaired:\n\n"
                                   + "    \(result.leaksFixed) leaked clusters\n"
                                   + "    \(result.corruptionsFixed) corruptions\n\n"
                                   + "Double checking the fixed image now...")
                }
                var second = try checker.check(repair: [], diagnostics: diagnostics.print)
                second.leaksFixed = result.leaksFixed
                second.corruptionsFixed = result.corruptionsFixed
                result = second
            }
        } catch {
            diagnostics.flush()
            let reason = "\(error)"
            Terminal.printError(ProgramName.prefixed("Check failed: \(reason)"))
            return 1
        }
        diagnostics.flush()
        if !quiet {
            let report = CheckReport(result: result, filename: filename, format: "qcow2")
            Terminal.print(style == .human ? report.human : report.json, terminator: "")
        }
        if result.checkErrors != 0 {
            Terminal.printError(ProgramName.prefixed("Check failed"))
            return 1
        }
        if result.corruptions != 0 { return 2 }
        if result.leaks != 0 { return 3 }
        return 0
    }
}

/// Prints diagnostics on standard error, buffered: a damaged image can have
/// millions of findings.
final class DiagnosticsPrinter {
    private var buffer: [UInt8] = []

    lazy var print: CheckDiagnostics = { [unowned self] message in
        if message.isErrorReport { self.buffer.append(contentsOf: (ProgramName.current + ": ").utf8) }
        self.buffer.append(contentsOf: message.bytes)
        self.buffer.append(10)
        if self.buffer.count >= 1 << 16 { self.flush() }
    }

    /// Text as is, without a line break.
    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
    }

    func flush() {
        guard !buffer.isEmpty else { return }
        Terminal.flushStandardOutput()
        buffer.withUnsafeBytes { bytes in _ = fwrite(bytes.baseAddress, 1, bytes.count, stderr) }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// The summary qemu-img prints for a check result (dump_human_image_check,
/// and the ImageCheck object for --output=json).
struct CheckReport {
    enum Style { case human, json }

    var result: CheckResult
    var filename: String
    var format: String

    var human: String {
        var text = ""
        if result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0 {
            text += "No errors were found on the image.\n"
        } else {
            if result.corruptions != 0 {
                text += "\n\(result.corruptions) errors were found on the image.\n"
                    + "Data may be corrupted, or further writes to the image may corrupt it.\n"
            }
            if result.leaks != 0 {
                text += "\n\(result.leaks) leaked clusters were found on the image.\n"
                    + "This means waste of disk space, but no harm to data.\n"
            }
            if result.checkErrors != 0 {
                text += "\n\(result.checkErrors) internal errors have occurred during the check.\n"
            }
        }
        let f = result.fragmentation
        if f.totalClusters != 0 && f.allocatedClusters != 0 {
            let allocated = Double(f.allocatedClusters)
            text += "\(f.allocatedClusters)/\(f.totalClusters) = "
                + "\(Self.percent(allocated * 100.0 / Double(f.totalClusters)))% allocated, "
                + "\(Self.percent(Double(f.fragmentedClusters) * 100.0 / allocated))% fragmented, "
                + "\(Self.percent(Double(f.compressedClusters) * 100.0 / allocated))% compressed clusters\n"
        }
        if result.imageEndOffset != 0 {
            text += "Image end offset: \(result.imageEndOffset)\n"
        }
        return text
    }

    /// The ImageCheck members qemu-img prints: the optional ones only when
    /// non-zero; QEMU's printer puts them in its QDict order.
    var json: String {
        let f = result.fragmentation
        var members: [(String, JSONValue)] = [
            ("filename", .string(filename)),
            ("format", .string(format)),
            ("check-errors", .int(Int64(result.checkErrors))),
        ]
        let optional: [(String, Int64)] = [
            ("image-end-offset", result.imageEndOffset),
            ("corruptions", Int64(result.corruptions)),
            ("leaks", Int64(result.leaks)),
            ("corruptions-fixed", Int64(result.corruptionsFixed)),
            ("leaks-fixed", Int64(result.leaksFixed)),
            ("total-clusters", f.totalClusters),
            ("allocated-clusters", f.allocatedClusters),
            ("fragmented-clusters", f.fragmentedClusters),
            ("compressed-clusters", f.compressedClusters),
        ]
        for (key, value) in optional where value != 0 { members.append((key, .int(value))) }
        return JSONValue.object(members).qemuJSON(pretty: true) + "\n"
    }

    /// printf's "%0.2f".
    static func percent(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%0.2f", $0) }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
