// QMP's `transaction` with the bitmap actions, all or nothing as QEMU 7.2
// runs it (qmp_transaction in blockdev.c): every action is prepared in
// order, each leaving its undo; when one fails, the ones prepared so far
// are undone newest first; when all succeed, each commits. The steps on an
// image's bitmaps are in Sources/Qcow2/Bitmaps/BitmapTransactionSteps.swift.
// Main-loop thread only.
import Qcow2

/// One bitmap action of a transaction, its arguments decoded.
public enum DirtyBitmapAction: Sendable {
    case add(node: String, name: String, granularity: UInt64?, persistent: Bool, disabled: Bool)
    case remove(node: String, name: String)
    case clear(node: String, name: String)
    case enable(node: String, name: String)
    case disable(node: String, name: String)
    case merge(node: String, target: String, sources: [DirtyBitmapSource])
}

/// The undo and commit steps of the actions prepared so far.
public final class DirtyBitmapTransaction {
    private var aborts: [() -> Void] = []
    private var commits: [() -> Void] = []
    /// Images whose guest writes are logged until the end (by identity).
    private var logging: [ObjectIdentifier: Qcow2Image] = [:]

    public init() {}

    /// Every prepared action's commit step, in order.
    public func commit() {
        commits.forEach { $0() }
        finish()
    }

    /// Every prepared action undone, newest first.
    public func abort() {
        aborts.reversed().forEach { $0() }
        finish()
    }

    private func finish() {
        for image in logging.values { image.endBitmapWriteLog() }
        logging = [:]
        aborts = []
        commits = []
    }

    /// Logs `image`'s guest writes from now until the end.
    fileprivate func log(_ image: Qcow2Image) {
        guard logging[ObjectIdentifier(image)] == nil else { return }
        image.beginBitmapWriteLog()
        logging[ObjectIdentifier(image)] = image
    }

    fileprivate func onAbort(_ step: @escaping () -> Void) { aborts.append(step) }
    fileprivate func onCommit(_ step: @escaping () -> Void) { commits.append(step) }
}

extension BlockGraph {
    /// One action on its own: the block-dirty-bitmap-* commands.
    public func run(_ action: DirtyBitmapAction) throws {
        switch action {
        case let .add(node, name, granularity, persistent, disabled):
            try addDirtyBitmap(node: node, name: name, granularity: granularity, persistent: persistent,
                               disabled: disabled)
        case let .remove(node, name): try changeDirtyBitmap(node: node, name: name, .remove)
        case let .clear(node, name): try changeDirtyBitmap(node: node, name: name, .clear)
        case let .enable(node, name): try changeDirtyBitmap(node: node, name: name, .enable)
        case let .disable(node, name): try changeDirtyBitmap(node: node, name: name, .disable)
        case let .merge(node, target, sources): try mergeDirtyBitmaps(node: node, target: target, sources: sources)
        }
    }

    /// Prepares `action` in `transaction` (QEMU's *_prepare), leaving its
    /// undo; throws QEMU's error with nothing of this action left changed.
    public func prepare(_ action: DirtyBitmapAction, in transaction: DirtyBitmapTransaction) throws {
        switch action {
        case let .add(node, name, granularity, persistent, disabled):
            try addDirtyBitmap(node: node, name: name, granularity: granularity, persistent: persistent,
                               disabled: disabled)
            guard let image = try lookup(device: node, nodeName: node).qcow2 else { return }
            transaction.onAbort { image.releaseDirtyBitmap(name) }
        case let .remove(node, name):
            let image = try bitmapNode(node, name)
            let persistent = try bitmapCall { try image.detachDirtyBitmap(name) }
            transaction.onAbort { image.reattachDirtyBitmap(name, persistent: persistent) }
            transaction.onCommit { image.releaseDirtyBitmap(name) }
        case let .clear(node, name):
            let image = try bitmapNode(node, name)
            transaction.log(image)
            let backup = try bitmapCall { try image.clearDirtyBitmapKeepingBackup(name) }
            transaction.onAbort { image.restoreDirtyBitmap(backup) }
        case let .enable(node, name), let .disable(node, name):
            let enable = if case .enable = action { true } else { false }
            let image = try bitmapNode(node, name)
            transaction.log(image)
            let was = try bitmapCall { try image.setDirtyBitmapEnabledKeepingState(name, enable) }
            transaction.onAbort { image.restoreDirtyBitmapEnabled(name, was) }
        case let .merge(node, target, sources):
            if let image = try? bitmapNode(node, target) { transaction.log(image) }
            let (image, backup) = try mergeDirtyBitmapsKeepingBackup(node: node, target: target, sources: sources)
            transaction.onAbort { image.restoreDirtyBitmap(backup) }
        }
    }
}
