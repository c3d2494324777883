// Image locking against real QEMU processes: while qemu-io, qemu-storage-
// daemon or qemu-system-x86_64 holds an image, every qcowkit verb gives the
// outcome and message the same qemu-img / qemu-io command gives (run both,
// compare); while `qcowkit io` or `qcowkit serve` holds one, QEMU's tools are
// refused exactly as a QEMU holder refuses them; the lost write of issue 12
// stays refused.
import Foundation
import Testing
import TestSupport

@Suite("Image locking: qcowkit and QEMU processes protect each other", .serialized)
struct ImageLockingInteropTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "qcowkit-locking-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", dir + "/src.qcow2", "1M"])
    }

    /// A fresh 1 MiB qcow2 image `name`.
    func image(_ name: String) throws {
        _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", dir + "/" + name, "1M"])
    }

    /// Runs a command in the scratch directory: status and standard error,
    /// the program's name taken out of it.
    func outcome(_ command: [String]) throws -> String {
        let run = try QemuOracle.run(command, in: URL(fileURLWithPath: dir), check: false)
        var errors = run.errorOutput
        for program in ["qemu-img: ", "qemu-io: ", "qcowkit: "] {
            errors = errors.replacingOccurrences(of: program, with: "PROGRAM: ")
        }
        return "status \(run.status): \(errors)"
    }

    /// The verbs probed against a held `img.qcow2`, as (qcowkit, QEMU)
    /// command lines; `replacing` may replace the image.
    static let probes: [([String], [String])] = {
        var probes: [([String], [String])] = []
        for flags in [[], ["-U"]] {
            probes.append((["qcowkit", "info"] + flags + ["img.qcow2"], ["qemu-img", "info"] + flags + ["img.qcow2"]))
            probes.append((["qcowkit", "check"] + flags + ["img.qcow2"], ["qemu-img", "check"] + flags + ["img.qcow2"]))
            probes.append((["qcowkit", "check", "-r", "leaks"] + flags + ["img.qcow2"],
                           ["qemu-img", "check", "-r", "leaks"] + flags + ["img.qcow2"]))
            probes.append((["qcowkit", "map"] + flags + ["img.qcow2"], ["qemu-img", "map"] + flags + ["img.qcow2"]))
            probes.append((["qcowkit", "convert"] + flags + ["-O", "raw", "img.qcow2", "out.raw"],
                           ["qemu-img", "convert"] + flags + ["-O", "raw", "img.qcow2", "out.raw"]))
            probes.append((["qcowkit", "io", "-r"] + flags + ["-c", "read 0 512", "img.qcow2"],
                           ["qemu-io", "-r"] + flags + ["-c", "read 0 512", "img.qcow2"]))
            probes.append((["qcowkit", "io"] + flags + ["-c", "read 0 512", "img.qcow2"],
                           ["qemu-io"] + flags + ["-c", "read 0 512", "img.qcow2"]))
            // reopen: read-only to read-write and back, the locks moved each time.
            let reopen = ["-c", "reopen -w", "-c", "reopen -r", "-c", "read 0 512", "img.qcow2"]
            probes.append((["qcowkit", "io", "-r"] + flags + reopen, ["qemu-io", "-r"] + flags + reopen))
            // The verbs that only read the image.
            for verb in [["compare"] + flags + ["img.qcow2", "img.qcow2"],
                         ["measure"] + flags + ["-O", "qcow2", "img.qcow2"],
                         ["dd"] + flags + ["-O", "raw", "if=img.qcow2", "of=out.raw"],
                         ["bench"] + flags + ["-c", "1", "img.qcow2"],
                         ["snapshot"] + flags + ["-l", "img.qcow2"]] {
                probes.append((["qcowkit"] + verb, ["qemu-img"] + verb))
            }
        }
        return probes
    }()
    /// Verbs that change the image where a holder lets them: each gets a
    /// fresh image and holder (qemu-img's run first, then ours on its result).
    static let changing: [([String], [String])] = [
        ["snapshot", "-c", "s1", "img.qcow2"], ["snapshot", "-U", "-c", "s1", "img.qcow2"],
        ["resize", "img.qcow2", "2M"], ["rebase", "-u", "-b", "", "img.qcow2"],
        ["bench", "-w", "-c", "1", "img.qcow2"], ["bench", "-U", "-w", "-c", "1", "img.qcow2"],
        ["commit", "img.qcow2"], ["amend", "-o", "lazy_refcounts=on", "img.qcow2"],
    ].map { (["qcowkit"] + $0, ["qemu-img"] + $0) }
    static let replacing: [([String], [String])] = [
        (["qcowkit", "convert", "-O", "qcow2", "src.qcow2", "img.qcow2"],
         ["qemu-img", "convert", "-O", "qcow2", "src.qcow2", "img.qcow2"]),
        (["qcowkit", "create", "-q", "-f", "qcow2", "img.qcow2", "1M"],
         ["qemu-img", "create", "-q", "-f", "qcow2", "img.qcow2", "1M"]),
    ]

    /// QEMU processes holding `img.qcow2`, and the lock bytes each shows when ready.
    static let qemuHolders: [(name: String, command: [String], ready: Set<Int>)] = [
        ("qemu-io read-write", ["qemu-io", "img.qcow2"], [100, 101, 103, 201, 203]),
        ("qemu-io read-only", ["qemu-io", "-r", "img.qcow2"], [100, 201, 203]),
        ("qemu-io -r -U", ["qemu-io", "-r", "-U", "img.qcow2"], [100]),
        ("qemu-storage-daemon, node read-write",
         ["qemu-storage-daemon", "--blockdev", "driver=qcow2,node-name=n,file.driver=file,file.filename=img.qcow2"],
         [100, 101, 103, 201, 203]),
        ("qemu-storage-daemon, node read-only",
         ["qemu-storage-daemon", "--blockdev", "driver=qcow2,node-name=n,read-only=on,file.driver=file,file.filename=img.qcow2"],
         [100, 201, 203]),
        ("qemu-system-x86_64 -M none -blockdev",
         ["qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none", "-monitor", "none",
          "-blockdev", "driver=qcow2,node-name=n,file.driver=file,file.filename=img.qcow2"],
         [100, 101, 103, 201, 203]),
    ]

    @Test("every verb, against each QEMU holder, as qemu-img / qemu-io", arguments: 0..<6)
    func verbsAgainstQemuHolder(_ index: Int) throws {
        let holder = Self.qemuHolders[index]
        // The probes that leave the image as it is share one holder; one
        // that may replace it gets a fresh image and holder each.
        for batch in [Self.probes] + (Self.replacing + Self.changing).map({ [$0] }) {
            try image("img.qcow2")
            let held = try LockHolder(holder.command, in: dir, image: "img.qcow2", ready: holder.ready)
            defer { held.stop() }
            for (ours, theirs) in batch {
                let expected = try outcome(theirs)
                let got = try outcome(ours)
                #expect(got == expected, "\(holder.name): \(ours.joined(separator: " ")) vs \(theirs.joined(separator: " "))")
            }
        }
    }

    /// QEMU's tools against a held image: the same outcomes whoever holds it.
    static let qemuProbes: [[String]] = [
        ["qemu-img", "info", "img.qcow2"], ["qemu-img", "info", "-U", "img.qcow2"],
        ["qemu-img", "check", "img.qcow2"], ["qemu-img", "check", "-U", "img.qcow2"],
        ["qemu-img", "convert", "-O", "raw", "img.qcow2", "out.raw"],
        ["qemu-img", "convert", "-U", "-O", "raw", "img.qcow2", "out.raw"],
        ["qemu-img", "commit", "img.qcow2"],
        ["qemu-io", "-c", "read 0 512", "img.qcow2"], ["qemu-io", "-r", "-c", "read 0 512", "img.qcow2"],
        ["qemu-io", "-r", "-U", "-c", "read 0 512", "img.qcow2"],
    ]

    @Test("qcowkit io and serve holding an image refuse QEMU's tools as a QEMU holder does",
          arguments: [
            (["qcowkit", "io", "img.qcow2"], ["qemu-io", "img.qcow2"]),
            (["qcowkit", "io", "-r", "img.qcow2"], ["qemu-io", "-r", "img.qcow2"]),
            (["qcowkit", "serve", "-qmp", "stdio", "--blockdev",
              "driver=qcow2,node-name=n,file.driver=file,file.filename=img.qcow2"],
             ["qemu-storage-daemon", "--blockdev", "driver=qcow2,node-name=n,file.driver=file,file.filename=img.qcow2"]),
            (["qcowkit", "serve", "-qmp", "stdio", "--blockdev",
              "driver=qcow2,node-name=n,read-only=on,file.driver=file,file.filename=img.qcow2"],
             ["qemu-storage-daemon", "--blockdev",
              "driver=qcow2,node-name=n,read-only=on,file.driver=file,file.filename=img.qcow2"]),
          ])
    func qemuAgainstQcowkitHolder(_ ours: [String], _ theirs: [String]) throws {
        var outcomes: [[String]] = []
        for holderCommand in [theirs, ours] {
            _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "src.qcow2", "-F", "qcow2",
                                    dir + "/img.qcow2"])
            let held = try LockHolder(holderCommand, in: dir, image: "img.qcow2", ready: [100])
            defer { held.stop() }
            // The holders hold the same bytes, and QEMU's tools meet the same refusals.
            var these = ["holds \(try LockTable.bytes(of: dir + "/img.qcow2").sorted())"]
            for probe in Self.qemuProbes { these.append(probe.joined(separator: " ") + ": " + (try outcome(probe))) }
            outcomes.append(these)
        }
        #expect(outcomes[1] == outcomes[0], "while \(ours.joined(separator: " ")) holds the image")
    }

    @Test("issue 12: a second writer is refused while qemu-io writes, and no acknowledged write is lost")
    func lostWriteRace() throws {
        try image("img.qcow2")
        let held = try LockHolder(["qemu-io", "img.qcow2"], in: dir, image: "img.qcow2", ready: [101])
        held.send("write -P 0x01 0 64k")
        let second = try QemuOracle.run(["qcowkit", "io", "-c", "write -P 0x02 0 64k", "img.qcow2"],
                                        in: URL(fileURLWithPath: dir), check: false)
        held.send("quit")
        held.stop()
        #expect(second.status == 1)
        #expect(second.output.isEmpty, "nothing may be acknowledged: \(second.output)")
        #expect(second.errorOutput == "qcowkit: can't open device img.qcow2: Failed to get \"write\" lock\n"
                + "Is another process using the image [img.qcow2]?\n")
        let read = try QemuOracle.run(["qemu-io", "-c", "read -P 0x01 0 64k", dir + "/img.qcow2"])
        #expect(!read.output.contains("Pattern verification failed"))
        let check = try QemuOracle.run(["qemu-img", "check", "img.qcow2"], in: URL(fileURLWithPath: dir), check: false)
        #expect(check.status == 0)
    }

    @Test("a commit reopening a base another process reads is refused as qemu-storage-daemon refuses it")
    func commitReopenRefused() throws {
        var replies: [String] = []
        for daemon in [["qemu-storage-daemon", "--chardev", "stdio,id=m", "--monitor", "chardev=m"],
                       ["qcowkit", "serve", "-qmp", "stdio"]] {
            try image("base.qcow2")
            _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                                    dir + "/top.qcow2"])
            let reader = try LockHolder(["qemu-io", "-r", "base.qcow2"], in: dir, image: "base.qcow2", ready: [100])
            defer { reader.stop() }
            let input = #"{"execute":"qmp_capabilities"}"# + "\n"
                + #"{"execute":"block-commit","arguments":{"device":"top","job-id":"j"}}"# + "\n"
                + #"{"execute":"quit"}"# + "\n"
            let result = try QemuOracle.run(daemon + ["--blockdev",
                "driver=qcow2,node-name=top,file.driver=file,file.filename=top.qcow2"], in: URL(fileURLWithPath: dir),
                check: false, input: input)
            replies.append(result.output.split(whereSeparator: \.isNewline).filter { $0.contains("\"error\"") }.joined(separator: "\n"))
        }
        #expect(replies[0].contains(#"Failed to get \"write\" lock"#))
        #expect(replies[1] == replies[0])
    }

    @Test("a commit's nodes hold qemu-storage-daemon's lock bytes while it runs")
    func commitJobLocks() throws {
        var observed: [[String]] = []
        for daemon in [["qemu-storage-daemon", "--chardev", "stdio,id=m", "--monitor", "chardev=m"],
                       ["qcowkit", "serve", "-qmp", "stdio"]] {
            try image("base.qcow2")
            _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                                    dir + "/mid.qcow2"])
            _ = try QemuOracle.run(["qemu-io", "-c", "write 0 1M", dir + "/mid.qcow2"])
            _ = try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2",
                                    dir + "/top.qcow2"])
            let held = try LockHolder(daemon + ["--blockdev", "driver=qcow2,node-name=top,file.driver=file,file.filename=top.qcow2"],
                                      in: dir, image: "base.qcow2", ready: [100])
            defer { held.stop() }
            func bytes() throws -> String {
                try ["top", "mid", "base"].map { "\($0) \(try LockTable.bytes(of: dir + "/\($0).qcow2").sorted())" }
                    .joined(separator: ", ")
            }
            var these = ["open: " + (try bytes())]
            held.send(#"{"execute":"qmp_capabilities"}"#)
            // Slow enough (1 MiB to copy at 64 KiB/s) to be seen running.
            held.send(#"{"execute":"block-commit","arguments":{"device":"top","job-id":"j","top":"mid.qcow2","#
                      + #""base":"base.qcow2","speed":65536}}"#)
            try held.waitUntil(dir + "/mid.qcow2", holds: [200])
            try held.waitUntil(dir + "/base.qcow2", holds: [101])
            these.append("committing: " + (try bytes()))
            held.send(#"{"execute":"job-cancel","arguments":{"id":"j"}}"#)
            observed.append(these)
        }
        #expect(observed[1] == observed[0])
    }
}
