// The recording half of the power-loss tests: a `BlockFileObserver` that
// keeps every change of the image file and every sync, in order, with its
// data. A run is recorded from a copy of the file taken before the image is
// opened (the base), so base + log rebuilds the file at any point.
import Synchronization
@testable import Qcow2

final class CrashRecorder: BlockFileObserver {
    private let log = Mutex<[BlockFileOperation]>([])

    func blockFile(_ path: String, did operation: BlockFileOperation) {
        log.withLock { $0.append(operation) }
    }

    /// Everything recorded so far, in the order it completed.
    var operations: [BlockFileOperation] { log.withLock { $0 } }

    /// How many operations were recorded so far: a point in the log.
    var position: Int { log.withLock { $0.count } }
}

extension BlockFileOperation {
    var isFlush: Bool {
        if case .flush = self { return true }
        return false
    }

    /// What the operation does to a file held as bytes (the kernel's
    /// semantics of pwrite, fallocate and ftruncate on a regular file).
    func apply(to file: inout [UInt8]) {
        switch self {
        case let .write(offset, bytes):
            let end = Int(offset) + bytes.count
            if end > file.count { file.append(contentsOf: repeatElement(0, count: end - file.count)) }
            file.replaceSubrange(Int(offset)..<end, with: bytes)
        case let .fallocate(mode, offset, length):
            let end = Int(offset + length)
            if !mode.contains(.keepSize), end > file.count {
                file.append(contentsOf: repeatElement(0, count: end - file.count))
            }
            if mode.contains(.punchHole) || mode.contains(.zeroRange), Int(offset) < file.count {
                let stop = min(end, file.count)
                file.replaceSubrange(Int(offset)..<stop, with: repeatElement(0, count: stop - Int(offset)))
            }
        case let .truncate(length):
            if Int(length) < file.count {
                file.removeSubrange(Int(length)...)
            } else {
                file.append(contentsOf: repeatElement(0, count: Int(length) - file.count))
            }
        case .flush:
            break
        }
    }
}
