// `qcowkit check` against `qemu-img check` 7.2 on images with persistent
// bitmaps whose directory entries are at the edge of what QEMU accepts.
import Foundation
import Testing

@Suite("check against qemu-img check: bitmap directories")
struct CheckInteropBitmapTests {
    /// The first bitmap directory entry of an image with a bitmaps extension.
    static func firstDirectoryEntry(_ editor: CheckImageEditor) throws -> UInt64 {
        var offset: UInt64 = 112
        while true {
            let type = UInt32(try editor.u64(offset) >> 32)
            let length = UInt64(UInt32(truncatingIfNeeded: try editor.u64(offset)))
            if type == 0x2385_2875 { return try editor.u64(offset + 8 + 16) }
            guard type != 0 else { throw CocoaError(.fileReadCorruptFile) }
            offset += 8 + (length + 7) & ~7
        }
    }

    /// A bitmap marked in use may have a table too small for the disk (it
    /// predates a resize): QEMU's check counts it like any other. Ours
    /// refused the whole directory ("Check failed: Invalid argument").
    @Test("an in-use bitmap whose table no longer covers the disk", arguments: [UInt32(1), 0])
    func inUseBitmapWithShortTable(flagsKept: UInt32) throws {
        let dir = try CheckScratch()
        try dir.img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "base.qcow2", "64M")
        try dir.io("base.qcow2", ["write -P 1 0 64k"])
        try dir.img("bitmap", "--add", "-g", "512", "base.qcow2", "b0")
        let editor = try CheckImageEditor(dir.path("base.qcow2"))
        let entry = try Self.firstDirectoryEntry(editor)
        // One table entry (covering 16 MiB at 512 bytes a bit); in use, or not.
        try editor.setU32(entry + 8, 1)
        try editor.setU32(entry + 12, 2 | flagsKept)
        for arguments in [[], ["-r", "all"]] {
            let comparison = try CheckComparison.run("base.qcow2", in: dir, arguments: arguments)
            comparison.expectIdentical("in use: \(flagsKept) \(arguments)")
            #expect(comparison.ours.status == (flagsKept == 1 ? 0 : 1))
        }
    }
}
