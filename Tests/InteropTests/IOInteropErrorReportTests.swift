// Errors the write path goes on after, reported as qemu-io 7.2 reports them:
// a free that fails (refcount already 0), and metadata that cannot be written
// back at close or before a reopen (a full file system). Same commands, same
// failing condition on both sides: same output, same messages, same bytes.
import Foundation
import Qcow2
import Synchronization
import Testing

/// A 1 MiB tmpfs mounted over a directory, filled up to the last page: the
/// file system of the close tests. Needs root (mount); unmounted on release.
final class FullFileSystem {
    let directory: URL

    init(over directory: URL) throws {
        guard getuid() == 0 else {
            throw IOInteropError("mounting a tmpfs to make a full file system needs root; run the suite as root")
        }
        self.directory = directory
        let mount = try IOProcess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory.path], in: directory)
        guard mount.status == 0 else { throw IOInteropError("mount -t tmpfs failed: \(mount.error)") }
    }

    /// Takes what space is left (dd stops at ENOSPC).
    func fill() throws {
        _ = try IOProcess.run(["dd", "if=/dev/zero", "of=fill", "bs=4k"], in: directory)
        let free = try IOProcess.run(["df", "--output=avail", "."], in: directory)
        #expect(free.output.split(separator: "\n").last?.trimmingCharacters(in: .whitespaces) == "0")
    }

    /// Unmounts (once); the test's files on it go with it.
    func unmount() {
        guard !unmounted else { return }
        unmounted = true
        _ = try? IOProcess.run(["umount", directory.path], in: directory.deletingLastPathComponent())
    }
    private var unmounted = false

    deinit { unmount() }
}

@Suite struct IOInteropErrorReportTests {
    /// Patches the refcount of the image's first data cluster to 0.
    private static func dropRefcountOfFirstCluster(_ path: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func be64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        let mask: UInt64 = 0x00ff_ffff_ffff_fe00
        let l2 = be64(Int(be64(40) & mask))
        let data = be64(Int(l2 & mask)) & mask
        let entry = Int(be64(Int(be64(48))) & mask) + Int(data >> 16) * 2
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(entry))
        try handle.write(contentsOf: [0, 0])
        try handle.close()
    }

    @Test func aFailingFreeIsReportedAndTheRequestSucceeds() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "a.qcow2", "1M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 64k", "a.qcow2"],
        ])
        try Self.dropRefcountOfFirstCluster(twins.stage.appendingPathComponent("a.qcow2").path)
        for command in ["discard 0 64k", "write -z -u 0 64k"] {
            try twins.syncCopies()
            let (qemu, ours) = try twins.run(["-f", "qcow2", "-c", command, "a.qcow2"])
            #expect(ours == qemu, "\(command)")
            #expect(ours.status == 0)
            #expect(ours.error == "qcow2_free_clusters failed: Invalid argument\n")
            #expect(try twins.bytes("a.qcow2", in: twins.ours) == twins.bytes("a.qcow2", in: twins.qemu))
        }
    }

    /// Twin directories, each a full tmpfs, holding z.qcow2 with a second L2
    /// table that holds nothing but its first entry: a sparse copy leaves
    /// most of that table a hole, which the full file system cannot fill.
    /// The caller unmounts them when done.
    private static func imageOnFullFileSystems() throws -> (IOTwinDirectories, [FullFileSystem]) {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "z.qcow2", "2G"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 64k", "-c", "write -P 2 1G 64k", "-c", "discard 1G 64k",
             "z.qcow2"],
        ])
        // On a throw, the file systems mounted so far unmount as they go.
        let filesystems = try [twins.qemu, twins.ours].map { try FullFileSystem(over: $0) }
        try twins.syncCopies()
        for filesystem in filesystems { try filesystem.fill() }
        return (twins, filesystems)
    }

    @Test func metadataThatCannotBeWrittenBackIsReportedAtCloseAndFailsAReopen() throws {
        let (twins, filesystems) = try Self.imageOnFullFileSystems()
        defer { for filesystem in filesystems { filesystem.unmount() } }
        let lost = "PROGRAM: Failed to flush the L2 table cache: No space left on device\n"
        let cases: [(commands: [String], error: String)] = [
            (["-t", "writeback", "-c", "write -z 1040M 64k"], lost),
            // The write's own failure goes to standard output.
            (["-c", "write -z 1041M 64k"], lost),
            (["-t", "writeback", "-c", "write -z 1042M 64k", "-c", "reopen -r", "-c", "close"],
             "PROGRAM: Error flushing drive: No space left on device\n" + lost),
        ]
        for (commands, error) in cases {
            let (qemu, ours) = try twins.run(["-f", "qcow2"] + commands + ["z.qcow2"])
            #expect(ours == qemu, "\(commands)")
            #expect(ours.error == error, "\(commands)")
        }
        #expect(try twins.bytes("z.qcow2", in: twins.ours) == twins.bytes("z.qcow2", in: twins.qemu))
    }

    /// The library: close reports through the image's sink and throws; the
    /// image is left as QEMU leaves it.
    @Test func libraryCloseReportsAndThrows() throws {
        let (twins, filesystems) = try Self.imageOnFullFileSystems()
        defer { for filesystem in filesystems { filesystem.unmount() } }
        let theirs = try IOProcess.run(["qemu-io", "-t", "writeback", "-f", "qcow2", "-c", "write -z 1040M 64k", "z.qcow2"],
                                       in: twins.qemu)
        #expect(theirs.error == "qemu-io: Failed to flush the L2 table cache: No space left on device\n")

        let image = try Qcow2Image.open(path: twins.ours.appendingPathComponent("z.qcow2").path, writable: true)
        let received = ReceivedDiagnostics()
        image.diagnosticSink = received.sink
        try image.writeZeroes(at: 1040 << 20, length: 65536, mayUnmap: false)
        #expect(throws: Qcow2Error.self) { try image.close() }
        #expect(received.all == [Qcow2Diagnostic(.errorReport, "Failed to flush the L2 table cache: No space left on device")])
        #expect(try twins.bytes("z.qcow2", in: twins.ours) == twins.bytes("z.qcow2", in: twins.qemu))
    }
}

/// Collects what a sink receives (sinks may be called from any thread).
final class ReceivedDiagnostics: Sendable {
    private let received = Mutex<[Qcow2Diagnostic]>([])
    var all: [Qcow2Diagnostic] { received.withLock { $0 } }
    var sink: Qcow2Diagnostics.Sink { { [self] diagnostic in received.withLock { $0.append(diagnostic) } } }
}
