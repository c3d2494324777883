// qemu-img's other way of showing progress (util/qemu-progress.c, and its
// manual: "If the -p option is not used for a command that supports it, the
// progress is reported when the process receives a SIGUSR1"): without -p a
// convert, commit, rebase, amend or compare catches SIGUSR1 and reports the
// next progress point once on standard error as "    (NN.NN/100%)\n"; with
// -p it does not catch it (the signal's default action stands). Compared
// with qemu-img 7.2 on a commit slowed down by -r, so that it is still
// running when the signal is sent: whether SIGUSR1 is caught is read from
// /proc/PID/status (SigCgt), not guessed from timing.
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("SIGUSR1 progress reports against qemu-img 7.2")
struct ProgressSignalInteropTests {
    /// Whether `pid` catches SIGUSR1, or nil once it has exited.
    static func catchesUSR1(_ pid: Int32) -> Bool? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
              let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) else { return nil }
        return mask & (1 << (UInt64(SIGUSR1) - 1)) != 0
    }

    struct Outcome: Equatable {
        var caught: Bool
        var exitedNormally: Bool
        var reports: [String]
    }

    /// `tool commit [-p] -r 1M img` on a fresh copy of an 8 MiB chain with
    /// 4 MiB to copy; with `signal`, SIGUSR1 is sent once the tool is seen
    /// catching it (or, with -p, once it has drawn its first line).
    static func run(_ tool: String, progress: Bool) throws -> Outcome {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qcowkit-usr1-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for command in [ImageVerbSetup.qcow2("base", "8M"), ImageVerbSetup.qcow2("img", "8M", backing: "base"),
                        ImageVerbSetup.io("img", "write -P 3 0 4M")] {
            try QemuOracle.run(command, in: dir)
        }
        let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        let (executable, arguments) = try TestTools.resolve([tool, "commit"] + (progress ? ["-p"] : []) + ["-r", "1M", "img"])
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = dir
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        let pid = process.processIdentifier
        var caught = false
        while process.isRunning {
            if progress {
                // Progress is set up once its first line is out.
                if (try? Data(contentsOf: out))?.isEmpty == false {
                    caught = catchesUSR1(pid) ?? false
                    break
                }
            } else if catchesUSR1(pid) == true {
                caught = true
                break
            }
            usleep(2000)
        }
        if caught { kill(pid, SIGUSR1) }
        process.waitUntilExit()
        let reports = String(decoding: try Data(contentsOf: err), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return Outcome(caught: caught, exitedNormally: process.terminationReason == .exit && process.terminationStatus == 0,
                       reports: reports)
    }

    @Test("without -p SIGUSR1 gets one report on stderr; with -p it is not caught")
    func reportOnSignal() throws {
        let qcowkit = try TestTools.qcowkit()
        for progress in [false, true] {
            let theirs = try Self.run("qemu-img", progress: progress)
            let mine = try Self.run(qcowkit, progress: progress)
            let context = Comment(rawValue: progress ? "-p" : "no -p")
            #expect(mine.caught == theirs.caught, context)
            #expect(theirs.caught == !progress, context)
            #expect(mine.exitedNormally && theirs.exitedNormally, context)
            if !progress {
                // One report, "    (NN.NN/100%)" and a newline; the value
                // depends on when the signal landed.
                for outcome in [theirs, mine] {
                    #expect(outcome.reports.count == 2 && outcome.reports[1].isEmpty, "\(outcome.reports)")
                    #expect(outcome.reports.first?.wholeMatch(of: /\ {4}\(\d{1,3}\.\d\d\/100%\)/) != nil,
                            "\(outcome.reports)")
                }
            } else {
                #expect(mine.reports == [""] && theirs.reports == [""], context)
            }
        }
    }
}
