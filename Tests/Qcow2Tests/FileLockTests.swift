// The lock bytes within one process: open file description locks belong to
// each open, so two opens of one image see each other as two processes do.
// The permission rules give the bytes qemu-img and qemu-io 7.2 were traced
// taking (strace of their F_OFD_SETLK calls).
import Foundation
import Testing
@testable import Qcow2

@Suite("Image locking: lock bytes and permission rules")
struct FileLockTests {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "qcowkit-locks-\(UUID().uuidString).qcow2"
        try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 1 << 20))
    }

    @Test("the rules give the traced bytes of each verb")
    func rules() {
        let writer = BlockAccess.backend(writable: true).forFile(of: .qcow2, writable: true)
        #expect(writer == BlockAccess(perm: [.consistentRead, .write, .resize], shared: [.consistentRead, .writeUnchanged]))
        let reader = BlockAccess.backend(writable: false).forFile(of: .qcow2, writable: false)
        #expect(reader == BlockAccess(perm: .consistentRead, shared: [.consistentRead, .writeUnchanged]))
        // qemu-img info: no I/O; qcow2 still refuses writers, raw takes nothing.
        #expect(BlockAccess.none.forFile(of: .qcow2, writable: false, withoutIO: true)
                == BlockAccess(perm: [], shared: [.consistentRead, .writeUnchanged]))
        #expect(BlockAccess.none.forFile(of: .raw, writable: false, withoutIO: true) == .none)
        // qemu-io on raw: reads and writes, shares everything.
        #expect(BlockAccess.backend(writable: true).forFile(of: .raw, writable: true)
                == BlockAccess(perm: [.consistentRead, .write], shared: .all))
        // -U: everything shared; a backing is read, writers refused.
        #expect(reader.shared != .all && BlockAccess.backend(writable: false)
                    .forFile(of: .qcow2, writable: false, forceShare: true).shared == .all)
        #expect(BlockAccess.backend(writable: true).forBacking.forFile(of: .qcow2, writable: false) == reader)
    }

    @Test("a writer refuses a second open in the same process; locking=off and force-share pass")
    func twoOpens() throws {
        let image = try ImageOpener.open(path: path, writable: true)
        defer { try? image.close() }
        #expect(throws: Qcow2Error.lockConflict(reason: "Failed to get shared \"write\" lock", path: path)) {
            try ImageOpener.open(path: path).close()
        }
        #expect(throws: Qcow2Error.lockConflict(reason: "Failed to get \"write\" lock", path: path)) {
            try Qcow2Image.open(path: path, writable: true).close()
        }
        try ImageOpener.open(path: path, locking: .forceShared).close()
        try ImageOpener.open(path: path, writable: true, locking: .off).close()
        #expect(throws: Qcow2Error.forceShareReadWrite) {
            try ImageOpener.open(path: path, writable: true, locking: .forceShared).close()
        }
    }

    @Test("a reopen takes the locks over to the new descriptor; the old access comes back on failure")
    func reopen() throws {
        let file = try BlockFile(path: path, writable: false)
        let reader = BlockAccess.backend(writable: false).forFile(of: .qcow2, writable: false)
        let writer = BlockAccess.backend(writable: true).forFile(of: .qcow2, writable: true)
        try file.setAccess(reader)
        // Read-write while it is the only user: no conflict with itself.
        let writable = try file.reopened(writable: true, access: writer)
        try file.close()
        #expect(throws: Qcow2Error.lockConflict(reason: "Failed to get shared \"write\" lock", path: path)) {
            try ImageOpener.open(path: path).close()
        }
        try writable.close()
        // Another reader refuses the reopen for writing; the reader keeps its locks.
        let other = try ImageOpener.open(path: path)
        defer { try? other.close() }
        let again = try BlockFile(path: path, writable: false)
        defer { try? again.close() }
        try again.setAccess(reader)
        #expect(throws: Qcow2Error.lockConflict(reason: "Failed to get \"write\" lock", path: path)) {
            try again.reopened(writable: true, access: writer).close()
        }
        #expect(again.access == reader)
    }

    @Test("create does not empty a file another open uses for writing")
    func createRefused() throws {
        let image = try ImageOpener.open(path: path, writable: true)
        defer { try? image.close() }
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64
        #expect(throws: Qcow2Error.lockConflict(reason: "Failed to get \"write\" lock", path: path)) {
            try Qcow2Creator.create(path: path, options: Qcow2CreateOptions(size: 1 << 20), replacing: true)
        }
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64 == size)
    }
}
