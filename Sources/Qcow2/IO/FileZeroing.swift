// Zeroing and discarding a range of a host file the way QEMU's file-posix
// driver does (handle_aiocb_write_zeroes_unmap, handle_aiocb_write_zeroes,
// handle_aiocb_discard), so that the host allocation after a raw zero write,
// a raw discard or a qcow2 allocation matches QEMU's byte for byte and hole
// for hole. The order, first that works:
//  1. unmapping allowed: punch a hole (it reads as zeroes);
//  2. FALLOC_FL_ZERO_RANGE;
//  3. punch a hole, then allocate the range again (fallocate mode 0);
//  4. past the end of the file: allocate (new blocks read as zeroes).
// Otherwise the caller writes zero buffers, or refuses (BDRV_REQ_NO_FALLBACK).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The fallocate modes a file system turned out not to support, remembered
/// per open file (as QEMU does) to stop trying them.
struct FallocateSupport {
    var zeroRange = true
    var punchHole = true
}

extension BlockFile {
    private var zeroRangeUnsupported: Bool {
        get { fallocateSupport.withLock { !$0.zeroRange } }
        set { fallocateSupport.withLock { $0.zeroRange = !newValue } }
    }
    private var punchHoleUnsupported: Bool {
        get { fallocateSupport.withLock { !$0.punchHole } }
        set { fallocateSupport.withLock { $0.punchHole = !newValue } }
    }

    /// Makes a range read as zeroes without writing zero buffers (steps
    /// 1-4 above; 1 only with `mayUnmap`). False when the file system
    /// offers no way to; errors other than "not supported here" throw.
    func zeroWithoutWriting(offset: UInt64, length: UInt64, mayUnmap: Bool) throws -> Bool {
        if mayUnmap && !punchHoleUnsupported {
            switch fallocate(.deallocate, offset: offset, length: length) {
            case 0: return true
            case ENOTSUP, EOPNOTSUPP, EINVAL, EBUSY: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        if !zeroRangeUnsupported {
            switch fallocate(.zeroRange, offset: offset, length: length) {
            case 0: return true
            case ENOTSUP, EOPNOTSUPP: zeroRangeUnsupported = true
            case EINVAL: break   // some file systems refuse unaligned ranges
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        if !punchHoleUnsupported {
            switch fallocate(.deallocate, offset: offset, length: length) {
            case 0:
                // Re-allocate so the range stays backed by disk space.
                let code = fallocate(.allocate, offset: offset, length: length)
                if code == 0 { return true }
                if code != ENOTSUP && code != EOPNOTSUPP { throw Qcow2Error.io(step: "write zeroes", errno: code) }
            case ENOTSUP, EOPNOTSUPP: punchHoleUnsupported = true
            case EINVAL: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        if offset >= (try size()) {
            switch fallocate(.allocate, offset: offset, length: length) {
            case 0: return true
            case ENOTSUP, EOPNOTSUPP: break
            case let code: throw Qcow2Error.io(step: "write zeroes", errno: code)
            }
        }
        return false
    }

    /// Deallocates a range for a discard. Discard is a hint: a file system
    /// that cannot punch holes keeps the data, and that is success.
    func discard(offset: UInt64, length: UInt64) throws {
        guard length > 0, !punchHoleUnsupported else { return }
        switch fallocate(.deallocate, offset: offset, length: length) {
        case 0: return
        case ENOTSUP, EOPNOTSUPP: punchHoleUnsupported = true
        case let code: throw Qcow2Error.io(step: "discard", errno: code)
        }
    }
}
