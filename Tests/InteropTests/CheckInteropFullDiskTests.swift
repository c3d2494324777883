// `check -r all` on a full file system: the repair's refcount changes and
// writes fail with ENOSPC, reported as qemu-img 7.2 reports them (strerror
// after its own words, the program's name where QEMU uses error_report), and
// the refcount block left unwritten is reported when the image is closed.
import Foundation
import Testing

@Suite("check against qemu-img check: a full file system")
struct CheckInteropFullDiskTests {
    @Test("a snapshot table repair that cannot write: the same messages, status and bytes")
    func snapshotTableRepairOnFullFileSystem() throws {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "a.qcow2", "1M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 64k", "a.qcow2"],
            ["qemu-img", "snapshot", "-c", "s1", "a.qcow2"],
        ])
        // Extra data shorter than version 3 requires: -r all completes the
        // entry and writes the table again, to clusters past the end of the
        // file (a sparse copy: the refcount block's unused part is a hole).
        let editor = try CheckImageEditor(twins.stage.appendingPathComponent("a.qcow2").path)
        try editor.setU32(editor.snapshotEntryOffsets()[0] + 36, 8)
        // On a throw, the file systems mounted so far unmount as they go.
        let filesystems = try [twins.qemu, twins.ours].map { try FullFileSystem(over: $0) }
        defer { for filesystem in filesystems { filesystem.unmount() } }
        try twins.syncCopies()
        for filesystem in filesystems { try filesystem.fill() }

        let theirs = try CheckProcess.qemuImg(["check", "-r", "all", "a.qcow2"], in: twins.qemu)
        let ours = try CheckProcess.qcowkit(["check", "-r", "all", "a.qcow2"], in: twins.ours)
        #expect(ours.status == theirs.status)
        #expect(ours.status == 1)
        #expect(ours.output == theirs.output)
        #expect(ours.errorOutput == CheckComparison.renamed(theirs.errorOutput))
        #expect(ours.errorOutput == """
            Repairing snapshot table entry 0 is incomplete
            ERROR failed to update snapshot table: No space left on device
            qcowkit: Check failed: No space left on device
            qcowkit: Failed to flush the refcount block cache: No space left on device

            """)
        #expect(try twins.bytes("a.qcow2", in: twins.ours) == twins.bytes("a.qcow2", in: twins.qemu))
        #expect(try CheckComparison.dataExtents(twins.ours.appendingPathComponent("a.qcow2").path)
                == CheckComparison.dataExtents(twins.qemu.appendingPathComponent("a.qcow2").path))
    }
}
