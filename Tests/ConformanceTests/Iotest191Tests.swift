// Issue 4's acceptance test: the spec scenario (QEMU's iotest 191) run end
// to end by Scripts/iotest-191.sh, once with QcowKit's tools and once with
// QEMU 7.2's, each transcript compared with the spec's 191.out line for line.
// QEMU's run is the harness's honesty check: the same script, pointed at the
// program that made the fixture, must reproduce it (up to the differences
// listed in QemuKnownDifferences).
import Foundation
import Testing
import TestSupport

@Suite("iotest 191 (block-commit, top with two parents)", .serialized)
struct Iotest191Tests {
    /// Seconds the harness waits for each line of a reply.
    static let replyTimeout = "30"

    static func runHarness(img: [String], io: [String], prog: [String]) throws -> ScriptRun {
        let words = { (command: [String]) in command.map(ConformanceProcess.shellQuoted).joined(separator: " ") }
        return try ConformanceProcess.run(
            ["bash", ConformanceProcess.harnessScript],
            environment: [
                "QEMU_IMG": words(img), "QEMU_IO": words(io), "QEMU_PROG": words(prog),
                "QEMU_COMM_TIMEOUT": replyTimeout,
            ],
            timeout: 600)
    }

    static func failureReport(_ run: ScriptRun) -> String {
        let tail = run.output.split(separator: "\n", omittingEmptySubsequences: false).suffix(40)
        return "harness exited \(run.status)\(run.timedOut ? " (killed after its deadline)" : ""); "
            + "last lines:\n" + tail.joined(separator: "\n")
    }

    @Test("qcowkit create/io/serve/info reproduce 191.out line for line")
    func qcowkitMatchesFixture() throws {
        let qcowkit = try TestTools.qcowkit()
        let run = try Self.runHarness(img: [qcowkit], io: [qcowkit, "io"], prog: [qcowkit, "serve"])
        let expected = Transcript.normalized(try Transcript.fixture("191.out"))
        let actual = Transcript.normalized(run.output)
        let diff = Transcript.diff(expected: expected, actual: actual)
        #expect(diff.isEmpty, "qcowkit's transcript differs from 191.out\n\(diff)")
        #expect(run.status == 0 && !run.timedOut, "\(Self.failureReport(run))")
    }

    @Test("the harness is honest: QEMU 7.2 reproduces 191.out up to the listed differences")
    func qemuMatchesFixtureUpToKnownDifferences() throws {
        _ = try TestTools.program("qemu-img", package: "qemu-utils")
        _ = try TestTools.program("qemu-io", package: "qemu-utils")
        _ = try TestTools.program("qemu-system-x86_64", package: "qemu-system-x86")
        let run = try Self.runHarness(img: ["qemu-img"], io: ["qemu-io"], prog: ["qemu-system-x86_64", "-M", "none"])
        #expect(run.status == 0 && !run.timedOut, "\(Self.failureReport(run))")

        let expected = Transcript.normalized(try Transcript.fixture("191.out"))
        let (actual, applied) = QemuKnownDifferences.undo(Transcript.normalized(run.output))
        let diff = Transcript.diff(expected: expected, actual: actual)
        #expect(diff.isEmpty, "QEMU's transcript, known differences undone, differs from 191.out\n\(diff)")
        for (name, changes) in applied {
            #expect(changes > 0, "known difference '\(name)' no longer occurs: remove it from the list")
        }
    }

    @Test("a reply that never comes fails the run instead of hanging it")
    func missingReplyTimesOut() throws {
        // A "service" that greets like QMP and then reads commands without
        // ever answering (the harness appends QEMU's options; sh ignores them).
        let silent = ["sh", "-c", "printf '{\\n    \"capabilities\": []\\n}\\n'; exec cat >/dev/null", "sh"]
        let started = Date()
        let run = try ConformanceProcess.run(
            ["bash", ConformanceProcess.harnessScript],
            environment: [
                "QEMU_PROG": silent.map(ConformanceProcess.shellQuoted).joined(separator: " "),
                "QEMU_COMM_TIMEOUT": "1",
            ],
            timeout: 120)
        #expect(!run.timedOut)
        #expect(run.status == 1)
        let lines = Transcript.normalized(run.output)
        #expect(lines.suffix(2) == ["{ 'execute': 'qmp_capabilities' }", "Timeout waiting for ^}"],
                "\(lines.suffix(5))")
        #expect(Date().timeIntervalSince(started) < 60)
    }

    @Test("the known differences are narrow: they rewrite QEMU's form, not a changed value")
    func knownDifferencesAreNarrow() throws {
        // The format-specific block of a fresh image goes; one saying the
        // image is corrupt stays.
        let formatSpecific = [
            "\"actual-size\": SIZE,", "\"format-specific\": {", "\"type\": \"IMGFMT\",", "\"data\": {",
            "\"compat\": \"1.1\",", "\"compression-type\": \"zlib\",", "\"lazy-refcounts\": false,",
            "\"refcount-bits\": 16,", "\"corrupt\": false,", "\"extended-l2\": false", "}", "},",
            "\"dirty-flag\": false",
        ]
        #expect(QemuKnownDifferences.undo(formatSpecific).lines == ["\"actual-size\": SIZE,", "\"dirty-flag\": false"])
        var corrupt = formatSpecific
        corrupt[8] = "\"corrupt\": true,"
        #expect(QemuKnownDifferences.undo(corrupt).lines == corrupt)

        // The host-qmp-quit SHUTDOWN moves after quit's return; a SHUTDOWN
        // for another reason does not.
        let shutdown = [
            "{", "\"timestamp\": {", "\"seconds\": TIMESTAMP,", "\"microseconds\": TIMESTAMP", "},",
            "\"event\": \"SHUTDOWN\",", "\"data\": {", "\"guest\": false,", "\"reason\": \"host-qmp-quit\"", "}", "}",
        ]
        let reply = ["{", "\"return\": {", "}", "}"]
        let quit = ["{ 'execute': 'quit' }"]
        #expect(QemuKnownDifferences.undo(quit + shutdown + reply).lines == quit + reply + shutdown)
        var guestShutdown = shutdown
        guestShutdown[8] = "\"reason\": \"guest-shutdown\""
        #expect(QemuKnownDifferences.undo(quit + guestShutdown + reply).lines == quit + guestShutdown + reply)

        // encryption_key_missing comes back only as a node's last member.
        #expect(QemuKnownDifferences.undo(["\"file\": \"TEST_DIR/t.IMGFMT\"", "},"]).lines
                == ["\"file\": \"TEST_DIR/t.IMGFMT\",", "\"encryption_key_missing\": false", "},"])
        let notLast = ["\"file\": \"TEST_DIR/t.IMGFMT\"", "\"ro\": false"]
        #expect(QemuKnownDifferences.undo(notLast).lines == notLast)
    }
}
