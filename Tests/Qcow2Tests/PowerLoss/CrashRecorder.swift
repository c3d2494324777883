// The recording half of the power-loss tests: a `BlockFileObserver` that
// keeps every change of the observed files and every sync, in one global
// order, with its data and which file it was. A run is recorded from copies
// of the files taken before they are opened (the bases), so bases + log
// rebuild every file at any point. Files are told apart by name (the last
// path component: a run's files share a scratch directory), so the same
// file opened twice (a reopen, a backing opened by path) is one file.
import Synchronization
@testable import Qcow2

/// One recorded change (or sync) of the file named `file`.
struct RecordedOperation {
    let file: String
    let operation: BlockFileOperation

    var isFlush: Bool { operation.isFlush }

    /// The name a path is recorded under.
    static func name(_ path: String) -> String {
        String(path.split(separator: "/").last ?? Substring(path))
    }
}

final class CrashRecorder: BlockFileObserver {
    private let log = Mutex<[RecordedOperation]>([])

    func blockFile(_ path: String, did operation: BlockFileOperation) {
        let entry = RecordedOperation(file: RecordedOperation.name(path), operation: operation)
        log.withLock { $0.append(entry) }
    }

    /// Everything recorded so far, in the order it completed.
    var operations: [RecordedOperation] { log.withLock { $0 } }

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
