// Image locking as QEMU's file driver does it (block/file-posix.c), so that
// QcowKit and QEMU processes protect each other's images. Every open file
// description (one open(2)) records what its user does in read locks, one
// byte per permission: byte 100 + p for "I hold permission p", byte 200 + p
// for "I do not share p". Read locks never conflict with each other; a
// conflict is found by asking whether an exclusive lock could be taken on
// the other side's byte (held elsewhere = someone holds / refuses it). Open
// file description locks belong to the descriptor, not the process: two
// opens of one file in one process see each other as QEMU's do, and closing
// the descriptor drops its locks. Only BlockFile uses this.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSystemShims

/// Which lock bytes one descriptor holds, and the change from one access to
/// another in QEMU's three steps: prepare (lock the union of old and new,
/// then test the other side's bytes), commit (keep exactly the new), abort
/// (back to the old).
struct FileLockBytes: Sendable {
    static let permBase: Int64 = 100
    static let sharedBase: Int64 = 200

    /// Bytes 100 + p held.
    private(set) var lockedPerm: BlockPermissions = []
    /// Bytes 200 + p held.
    private(set) var lockedUnshared: BlockPermissions = []

    /// Whether the kernel has open file description locks (QEMU's
    /// qemu_has_ofd_lock, asked once of /dev/null).
    static let available: Bool = {
        let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return qk_ofd_held_elsewhere(fd, 0) >= 0
    }()

    /// Locks the bytes for `perm` and `unshared` not held yet; with
    /// `unlock`, drops the others (raw_apply_lock_bytes). Throws the first
    /// failure.
    mutating func apply(_ fd: Int32, perm: BlockPermissions, unshared: BlockPermissions,
                        unlock: Bool) throws {
        for (base, wanted, held) in [(Self.permBase, perm, \Self.lockedPerm),
                                     (Self.sharedBase, unshared, \Self.lockedUnshared)] {
            for bit in BlockPermissions.all.bits {
                let one = BlockPermissions(rawValue: 1 << bit)
                let byte = base + Int64(bit)
                if wanted.contains(one) && !self[keyPath: held].contains(one) {
                    let rc = qk_ofd_set(fd, byte, Int16(F_RDLCK))
                    if rc != 0 { throw LockFailure.lockByte(byte, errno: -rc) }
                    self[keyPath: held].insert(one)
                } else if unlock && self[keyPath: held].contains(one) && !wanted.contains(one) {
                    let rc = qk_ofd_set(fd, byte, Int16(F_UNLCK))
                    if rc != 0 { throw LockFailure.unlockByte(byte, errno: -rc) }
                    self[keyPath: held].remove(one)
                }
            }
        }
    }

    /// Whether anyone else stands in the way of `access`
    /// (raw_check_lock_bytes): for each permission needed, someone who does
    /// not share it; then for each not shared, someone who holds it.
    static func check(_ fd: Int32, _ access: BlockAccess) throws {
        for bit in access.perm.bits {
            let rc = qk_ofd_held_elsewhere(fd, sharedBase + Int64(bit))
            if rc != 0 { throw LockFailure.conflict(BlockPermissions(rawValue: 1 << bit), shared: false, errno: rc < 0 ? -rc : 0) }
        }
        for bit in BlockPermissions.all.subtracting(access.shared).bits {
            let rc = qk_ofd_held_elsewhere(fd, permBase + Int64(bit))
            if rc != 0 { throw LockFailure.conflict(BlockPermissions(rawValue: 1 << bit), shared: true, errno: rc < 0 ? -rc : 0) }
        }
    }

    /// Takes what `new` adds to `old` (the union of both stays locked) and
    /// tests `new` against every other descriptor (raw_handle_perm_lock's
    /// prepare). On a conflict the bytes go back to `old` and it throws.
    mutating func prepare(_ fd: Int32, from old: BlockAccess, to new: BlockAccess) throws {
        let gainsNothing = old.perm.union(new.perm) == old.perm
            && old.shared.intersection(new.shared) == old.shared
        if gainsNothing { return }
        do {
            try apply(fd, perm: old.perm.union(new.perm),
                      unshared: BlockPermissions.all.subtracting(old.shared.intersection(new.shared)), unlock: false)
            try Self.check(fd, new)
        } catch {
            try? apply(fd, perm: old.perm, unshared: BlockPermissions.all.subtracting(old.shared), unlock: true)
            throw error
        }
    }

    /// Keeps exactly `new`'s bytes (the commit: it only drops locks, which
    /// "cannot fail"; QEMU only warns if it does).
    mutating func commit(_ fd: Int32, _ new: BlockAccess) {
        try? apply(fd, perm: new.perm, unshared: BlockPermissions.all.subtracting(new.shared), unlock: true)
    }

    /// Prepare, then commit: from `old` to `new`, or unchanged and thrown.
    mutating func change(_ fd: Int32, from old: BlockAccess, to new: BlockAccess) throws {
        try prepare(fd, from: old, to: new)
        commit(fd, new)
    }
}

/// Why a lock change failed, before it is said about which file.
enum LockFailure: Error {
    /// Another descriptor holds (shared == true) or refuses (false) `perm`;
    /// errno 0 when the test itself succeeded.
    case conflict(BlockPermissions, shared: Bool, errno: Int32)
    case lockByte(Int64, errno: Int32)
    case unlockByte(Int64, errno: Int32)

    /// QEMU's words (raw_lock_error_setg_errno: the errno only when it is
    /// not the ordinary "someone holds it").
    var reason: String {
        func withErrno(_ text: String, _ code: Int32) -> String {
            code == 0 || code == EAGAIN || code == EACCES ? text : "\(text): \(errnoDescription(code))"
        }
        switch self {
        case let .conflict(perm, shared, code):
            return withErrno(shared ? "Failed to get shared \"\(perm)\" lock" : "Failed to get \"\(perm)\" lock", code)
        case let .lockByte(byte, code): return withErrno("Failed to lock byte \(byte)", code)
        case let .unlockByte(byte, code): return "Failed to unlock byte \(byte): \(errnoDescription(code))"
        }
    }
}
