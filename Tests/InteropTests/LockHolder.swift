// A process that keeps an image open (and locked) while a test probes it:
// qemu-io or `qcowkit io` reading commands from a pipe, qemu-storage-daemon,
// qemu-system-x86_64 -M none or `qcowkit serve` with -blockdev nodes. It is
// ready once its lock bytes are in /proc/locks (no sleeps: the kernel says
// when), and is always killed, by `stop()` or when it goes away.
import Foundation
import TestSupport

final class LockHolder {
    let process = Process()
    private let input = Pipe()
    private let outputFile: String

    /// Starts `command` in `directory` and waits until `image` carries the
    /// lock bytes `ready` (e.g. [100, 101]).
    init(_ command: [String], in directory: String, image: String, ready: Set<Int>) throws {
        let (executable, arguments) = try TestTools.resolve(command)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardInput = input
        outputFile = directory + "/.holder-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outputFile, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputFile))
        process.standardOutput = output
        process.standardError = output
        try process.run()
        do {
            try waitUntil(directory + "/" + image, holds: ready)
        } catch {
            stop()
            throw error
        }
    }

    /// Polls the kernel's lock table until `path` carries `bytes`; a holder
    /// that never locks them (or dies) fails the test instead of hanging it.
    func waitUntil(_ path: String, holds bytes: Set<Int>) throws {
        for _ in 0..<6000 {
            if try LockTable.bytes(of: path).isSuperset(of: bytes) { return }
            if !process.isRunning { break }
            usleep(10_000)
        }
        let log = (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
        throw HolderNotReady(description: "\(process.arguments ?? []) never locked \(path) (\(bytes.sorted())): \(log)")
    }

    /// Ends the holder: its standard input closed, which ends qemu-io,
    /// `qcowkit io` and `qcowkit serve`; QEMU's daemons read no input and
    /// are killed (SIGKILL: a child of the test runner may inherit SIGTERM
    /// blocked and never see it), as is anything still running after that.
    func stop() {
        // `qcowkit serve -qmp stdio` quits when asked, as QEMU's monitors do.
        if process.isRunning, process.arguments?.contains("serve") == true {
            send(#"{"execute":"qmp_capabilities"}"#)
            send(#"{"execute":"quit"}"#)
        }
        try? input.fileHandleForWriting.close()
        let daemon = process.executableURL?.lastPathComponent == "env"
            && (process.arguments?.first.map { $0.hasPrefix("qemu-storage-daemon") || $0.hasPrefix("qemu-system") } ?? false)
        if !daemon {
            for _ in 0..<3000 where process.isRunning { usleep(10_000) }
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: outputFile)
    }

    /// Sends a line to the holder's standard input (qemu-io commands).
    func send(_ line: String) {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
    }

    deinit { if process.isRunning { stop() } }
}

struct HolderNotReady: Error, CustomStringConvertible { var description: String }

/// /proc/locks: which open-file-description lock bytes are held on a file.
enum LockTable {
    static func bytes(of path: String) throws -> Set<Int> {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard let inode = attributes[.systemFileNumber] as? UInt64 else { return [] }
        let table = try String(contentsOfFile: "/proc/locks", encoding: .utf8)
        var held: Set<Int> = []
        for line in table.split(separator: "\n") where line.contains("OFDLCK") {
            let fields = line.split(separator: " ")
            guard fields.count >= 8, fields[5].hasSuffix(":\(inode)"),
                  let start = Int(fields[6]), let end = Int(fields[7]) else { continue }
            for byte in start...end { held.insert(byte) }
        }
        return held
    }
}
