// The writer process of the SIGKILL crash test: `qcowkit io` in its
// interactive mode, fed one command at a time on standard input. It prints
// "qemu-io> " before reading each line, so the n-th prompt (0-based) means
// that n commands have returned: a prompt after `flush` acknowledges that
// the flush completed. Standard error goes into the same pipe, after what
// standard output holds (IOConsole flushes it first), so a command's error
// message lies between its two prompts. Lock-step driving keeps at most one
// command running, so that after the kill it is known exactly which
// commands had returned and which one was interrupted.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
import TestSupport
#endif

// @unchecked: the reader thread shares only what `condition` guards.
final class CrashKillWriter: @unchecked Sendable {
    static let prompt = Array("qemu-io> ".utf8)

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var received: [UInt8] = []
    private var prompts = 0
    private var scanned = 0
    private var ended = false
    private var stopping = false

    init(executable: String, arguments: [String]) throws {
        // A write to the pipe of a killed writer must fail, not kill the tests.
        signal(SIGPIPE, SIG_IGN)
        // Other tests' processes must not inherit these pipes.
        for handle in [input.fileHandleForReading, input.fileHandleForWriting,
                       output.fileHandleForReading, output.fileHandleForWriting] {
            _ = fcntl(handle.fileDescriptor, F_SETFD, FD_CLOEXEC)
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Only the child may hold the write end, or EOF never comes.
        try? output.fileHandleForWriting.close()
        try? input.fileHandleForReading.close()
        let descriptor = output.fileHandleForReading.fileDescriptor
        let thread = Thread { [self] in readUntilEnd(descriptor) }
        thread.start()
    }

    /// Reads until end of file, or until the writer is dead (`stopping`) and
    /// the pipe is empty: processes started meanwhile by other tests may
    /// hold the pipe's write end, so end of file may come late.
    private func readUntilEnd(_ descriptor: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 20)
            if ready < 0 && errno == EINTR { continue }
            var n = 0
            if ready > 0 {
                n = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
            }
            condition.lock()
            if n > 0 {
                received += chunk[0..<n]
                countPromptsLocked()
            } else if ready != 0 || stopping {
                ended = true
            }
            let done = ended
            condition.broadcast()
            condition.unlock()
            if done { return }
        }
    }

    private func countPromptsLocked() {
        let p = Self.prompt
        while scanned + p.count <= received.count {
            if received[scanned] == p[0] && Array(received[scanned..<(scanned + p.count)]) == p {
                prompts += 1
                scanned += p.count
            } else {
                scanned += 1
            }
        }
    }

    var processIdentifier: Int32 { process.processIdentifier }

    /// Waits until at least `count` prompts were printed; false if the
    /// writer ended first or the time ran out.
    func waitForPrompts(_ count: Int, timeout: TimeInterval = 60) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while prompts < count && !ended {
            if !condition.wait(until: deadline) { return false }
        }
        return prompts >= count
    }

    /// Sends one command line (a failed write means the writer is gone).
    func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        let descriptor = input.fileHandleForWriting.fileDescriptor
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
    }

    /// SIGKILL, then everything the writer printed before it died.
    func kill() -> [UInt8] {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
        condition.lock()
        defer { condition.unlock() }
        // All it wrote is in the pipe now: read on until it is empty.
        stopping = true
        let deadline = Date(timeIntervalSinceNow: 30)
        while !ended {
            if !condition.wait(until: deadline) { break }
        }
        return received
    }

    /// The output split at the prompts: element 0 is what opening printed,
    /// element i + 1 what command i printed; the last element is what came
    /// after the last prompt (the interrupted command's partial output).
    static func segments(_ output: [UInt8]) -> [String] {
        var parts: [String] = []
        var start = 0, i = 0
        while i + prompt.count <= output.count {
            if Array(output[i..<(i + prompt.count)]) == prompt {
                parts.append(String(decoding: output[start..<i], as: UTF8.self))
                i += prompt.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(String(decoding: output[start...], as: UTF8.self))
        return parts
    }
}

@Suite("qcowkit io driven through a pipe")
struct CrashKillWriterTests {
    /// qemu-io flushes its prompt before it reads a line: a driver waiting
    /// for it must not wait for the end of the program.
    @Test("the prompt arrives before the next line is sent, as from qemu-io", arguments: ["qemu-io", "qcowkit"])
    func promptIsFlushed(_ tool: String) throws {
        let dir = try WriteScratch()
        let image = dir.file("image.qcow2")
        try WriteProcess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "1M"])
        let writer = tool == "qemu-io"
            ? try CrashKillWriter(executable: try TestTools.qemuIO(), arguments: ["-f", "qcow2", image])
            : try CrashKillWriter(executable: try TestTools.qcowkit(), arguments: ["io", "-f", "qcow2", image])
        #expect(writer.waitForPrompts(1, timeout: 20))
        writer.send("length")
        #expect(writer.waitForPrompts(2, timeout: 20))
        let segments = CrashKillWriter.segments(writer.kill())
        #expect(segments.count == 3 && segments[1] == "1 MiB\n", "\(segments)")
    }
}
