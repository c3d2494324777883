// `qcowkit serve` as a process under abuse: memory stays bounded (a 100 MB
// string that never ends, 100k requests whose replies are not read), a
// vanished stdout does not kill it with SIGPIPE, and its socket file is
// created 0600 whatever the umask, replaced when stale, removed on quit
// and on SIGTERM, and refused with QEMU's words when the path is too long.
import Foundation
import Testing
import QemuJSON
import TestSupport

@Suite("qcowkit serve hardening, as a process")
struct ServeHardeningTests {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// `qcowkit serve` started through /bin/sh with umask 000, so that the
    /// socket's mode cannot come from the umask.
    final class Served: @unchecked Sendable {
        let process = Process()
        let directory: String
        let socket: String
        private let errors = Pipe()
        let stdin = Pipe(), stdout = Pipe()

        init(extra: [String] = [], socketName: String = "qmp.sock") throws {
            let binary = try TestTools.qcowkit()
            directory = NSTemporaryDirectory() + "qcowkit-harden-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            socket = directory + "/" + socketName
            let arguments = [binary, "serve", "--chardev", "socket,id=m,path=\(socket),server=on,wait=off", "--monitor", "m"] + extra
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "umask 000; exec \"$@\"", "sh"] + arguments
            process.standardInput = stdin
            process.standardOutput = stdout
            process.standardError = errors
            try process.run()
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: directory)
        }

        /// Peak and current resident memory, in MiB (/proc/PID/status).
        func memory() throws -> (peak: Int, current: Int) {
            let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
            func field(_ name: String) -> Int {
                let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
                return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
            }
            return (field("VmHWM"), field("VmRSS"))
        }

        /// A negotiated client, once the socket accepts.
        func connect() throws -> Client {
            let deadline = Date().addingTimeInterval(10)
            while true {
                if let client = try? Client(path: socket) {
                    _ = try client.read(through: "\r\n")
                    try client.send(#"{"execute":"qmp_capabilities"}"#)
                    _ = try client.read(through: #"{"return": {}}"# + "\r\n")
                    return client
                }
                guard Date() < deadline, process.isRunning else { throw Failure(description: "no listener at \(socket)") }
                usleep(10_000)
            }
        }

        func finish() -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async { self.process.waitUntilExit(); done.signal() }
            if done.wait(timeout: .now() + 30) == .timedOut { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (process.terminationStatus, process.terminationReason, text)
        }
    }

    /// A unix-socket client that reads raw bytes.
    final class Client {
        let fd: Int32
        private var buffer: [UInt8] = []

        init(path: String) throws {
            do { fd = try UnixSocketConnect.connect(path: path) } catch { throw Failure(description: error.description) }
        }

        deinit { close(fd) }

        func send(_ bytes: [UInt8]) throws { try Self.send(bytes, to: fd) }

        /// Sends on `fd` from any thread (the client's own state stays with its thread).
        static func send(_ bytes: [UInt8], to fd: Int32) throws {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, min($0.count, 1 << 20), Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw Failure(description: "send: errno \(errno)") }
                offset += n
            }
        }

        func send(_ text: String) throws { try send(Array(text.utf8)) }

        /// Everything received up to and including `marker`; the rest stays.
        func read(through marker: String, seconds: Double = 30) throws -> String {
            let needle = Array(marker.utf8)
            let deadline = Date().addingTimeInterval(seconds)
            var searched = 0
            while true {
                if let range = firstRange(of: needle, from: searched) {
                    let text = String(decoding: buffer[..<range.upperBound], as: UTF8.self)
                    buffer.removeSubrange(..<range.upperBound)
                    return text
                }
                let left = deadline.timeIntervalSinceNow
                guard left > 0 else { throw Failure(description: "no \(marker.debugDescription) within \(seconds) s") }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, Int32(min(left, 1) * 1000)) > 0 else { continue }
                var chunk = [UInt8](repeating: 0, count: 1 << 16)
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { throw Failure(description: "connection closed before \(marker.debugDescription)") }
                searched = max(0, buffer.count - needle.count + 1)
                buffer += chunk[0..<n]
            }
        }

        private func firstRange(of needle: [UInt8], from start: Int) -> Range<Int>? {
            buffer.withUnsafeBufferPointer { bytes in
                guard bytes.count >= needle.count else { return nil }
                var index = start
                while index + needle.count <= bytes.count {
                    if bytes[index] == needle[0] && bytes[index..<index + needle.count].elementsEqual(needle) {
                        return index..<index + needle.count
                    }
                    index += 1
                }
                return nil
            }
        }
    }

    private static func expectAnswers(_ served: Served, _ note: Comment) throws {
        let client = try served.connect()
        try client.send(#"{"execute":"query-jobs","id":"alive"}"#)
        #expect(try client.read(through: "\r\n") == #"{"return": [], "id": "alive"}"# + "\r\n", note)
    }

    @Test func aHundredMegabyteStringThatNeverEndsKeepsMemoryBounded() throws {
        let served = try Served()
        let client = try served.connect()
        let before = try served.memory()
        try client.send(#"{"execute":"query-jobs","id":""#)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
        for _ in 0..<100 { try client.send(chunk) }
        // QEMU's answer once the string passes 64 MiB; what follows it is
        // read as the start of a keyword, still bounded by the same limit.
        #expect(try client.read(through: "\r\n", seconds: 60)
            == #"{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}"# + "\r\n")
        try Self.expectAnswers(served, "while a client holds an unfinished token")
        let after = try served.memory()
        // One token of at most 64 MiB, once: not the 100 MB sent.
        #expect(after.peak - before.current < 100, "peak \(after.peak) MiB, \(before.current) MiB before")
        #expect(after.current - before.current < 80, "now \(after.current) MiB, \(before.current) MiB before")
        // The rest of the 100 MB ends as an invalid keyword, answered with its
        // first thousand letters only (QEMU's parse errors keep 1023 bytes),
        // then the quote opens a string the newline breaks; then it is over.
        try client.send(#""}"# + "\n" + #"{"execute":"query-jobs","id":"after"}"#)
        let keyword = "JSON parse error, invalid keyword '" + String(repeating: "a", count: 1023 - 17)
        #expect(try client.read(through: "\r\n") == #"{"error": {"class": "GenericError", "desc": "\#(keyword)"}}"# + "\r\n")
        #expect(try client.read(through: "\r\n") == #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"}\n'"}}"# + "\r\n")
        #expect(try client.read(through: "\r\n") == #"{"return": [], "id": "after"}"# + "\r\n")
        #expect(try served.memory().peak - before.current < 100)
        // Another one that goes away with its token unfinished: nothing is kept.
        let leaver = try served.connect()
        try leaver.send(#"{"execute":"query-jobs","id":""# + String(repeating: "b", count: 1 << 20))
        _ = shutdown(leaver.fd, Int32(SHUT_RDWR))
        try Self.expectAnswers(served, "after the client left")
        kill(served.process.processIdentifier, SIGTERM)
        #expect(served.finish().status == 0)
    }

    @Test func aHundredThousandUnreadRequestsKeepMemoryBounded() throws {
        let served = try Served()
        let flooder = try served.connect()
        let before = try served.memory()
        let count = 100_000
        let flood = Array((0..<count).map { #"{"execute":"query-jobs","id":\#($0)}"# }.joined().utf8)
        let sent = DispatchSemaphore(value: 0)
        let flooderFD = flooder.fd
        Thread {
            try? Client.send(flood, to: flooderFD)
            sent.signal()
        }.start()
        // The service stops reading once 1 MiB of replies waits for this
        // client; the socket buffers fill and the sender blocks.
        usleep(500_000)
        try Self.expectAnswers(served, "during the flood")
        let during = try served.memory()
        #expect(during.peak - before.current < 32, "peak \(during.peak) MiB, \(before.current) MiB before")
        let replies = try flooder.read(through: #""id": \#(count - 1)}"# + "\r\n", seconds: 60)
        #expect(replies.components(separatedBy: "\r\n").count == count + 1)
        #expect(sent.wait(timeout: .now() + 10) == .success)
        let after = try served.memory()
        #expect(after.peak - before.current < 32, "peak \(after.peak) MiB, \(before.current) MiB before")
        kill(served.process.processIdentifier, SIGTERM)
        #expect(served.finish().status == 0)
    }

    @Test func aVanishedStdoutDoesNotKillTheServiceWithSIGPIPE() throws {
        let served = try Served(extra: ["-qmp", "stdio"])
        // The stdio monitor's reader goes away; requests keep coming on stdin.
        let greeting = served.stdout.fileHandleForReading.availableData
        #expect(String(decoding: greeting, as: UTF8.self).hasPrefix(#"{"QMP": "#))
        try served.stdout.fileHandleForReading.close()
        for _ in 0..<50 {
            served.stdin.fileHandleForWriting.write(Data(#"{"execute":"qmp_capabilities"}{"execute":"query-commands"}"#.utf8))
        }
        usleep(300_000)
        #expect(served.process.isRunning)
        try Self.expectAnswers(served, "after stdout vanished")
        kill(served.process.processIdentifier, SIGTERM)
        let (status, reason, stderr) = served.finish()
        #expect(reason == .exit && status == 0, "\(reason) \(status): \(stderr)")
        #expect(!FileManager.default.fileExists(atPath: served.socket))
    }

    @Test func socketFileIs0600AndRemovedOnQuit() throws {
        let served = try Served()
        let client = try served.connect()
        var attributes = stat()
        #expect(stat(served.socket, &attributes) == 0)
        #expect(attributes.st_mode & S_IFMT == S_IFSOCK)
        #expect(attributes.st_mode & 0o777 == 0o600, "mode \(String(attributes.st_mode & 0o777, radix: 8)) under umask 000")
        try client.send(#"{"execute":"quit"}"#)
        _ = try client.read(through: #""host-qmp-quit"}}"# + "\r\n")
        #expect(served.finish().status == 0)
        #expect(!FileManager.default.fileExists(atPath: served.socket))
    }

    @Test func socketFileIsRemovedOnSIGTERM() throws {
        let served = try Served()
        let client = try served.connect()
        kill(served.process.processIdentifier, SIGTERM)
        _ = try client.read(through: #""host-signal"}}"# + "\r\n")
        let (status, _, stderr) = served.finish()
        #expect(status == 0)
        #expect(stderr.contains("terminating on signal 15"))
        #expect(!FileManager.default.fileExists(atPath: served.socket))
    }

    @Test func staleSocketFileIsReplaced() throws {
        // A socket file left by a process that died: bound, never unlinked.
        let directory = NSTemporaryDirectory() + "qcowkit-stale-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/qmp.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(fd)
        #expect(bound == 0)
        #expect((try? Client(path: path)) == nil, "the stale socket refuses connections")

        let binary = try TestTools.qcowkit()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "-qmp", "unix:\(path),server=on,wait=off"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var client: Client?
        for _ in 0..<500 where client == nil {
            client = try? Client(path: path)
            if client == nil { usleep(10_000) }
        }
        let connected = try #require(client, "the service replaced the stale socket and listens")
        #expect(try connected.read(through: "\r\n").hasPrefix(#"{"QMP": "#))
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func socketPathLengthIsQEMUs() throws {
        let binary = try TestTools.qcowkit()
        let base = NSTemporaryDirectory() + "qcowkit-len-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        func serve(_ path: String) throws -> (Process, Pipe) {
            let process = Process(), errors = Pipe()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["serve", "--chardev", "socket,id=m,path=\(path),server=on,wait=off", "--monitor", "m"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            return (process, errors)
        }
        // sun_path holds 108 bytes: a path filling it (no NUL) is accepted,
        // as by QEMU; one byte more is refused with QEMU's text and hint.
        let fits = base + "/" + String(repeating: "s", count: 107 - base.utf8.count)
        #expect(fits.utf8.count == 108)
        let (accepted, _) = try serve(fits)
        var waited = 0
        while !FileManager.default.fileExists(atPath: fits) && accepted.isRunning && waited < 1000 { usleep(10_000); waited += 1 }
        #expect(FileManager.default.fileExists(atPath: fits))
        kill(accepted.processIdentifier, SIGTERM)
        accepted.waitUntilExit()
        #expect(accepted.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: fits))

        let long = fits + "s"
        let (refused, errors) = try serve(long)
        refused.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(refused.terminationStatus == 1)
        // As qemu-storage-daemon 7.2, which makes the socket when it reads --chardev.
        #expect(message == "qcowkit: --chardev socket,id=m,path=\(long),server=on,wait=off: "
            + "UNIX socket path '\(long)' is too long\nPath must be less than 108 bytes\n")
        #expect(!FileManager.default.fileExists(atPath: long))
    }
}
