// The copying both commit jobs do: which ranges the layers above base
// allocate (QEMU's bdrv_is_allocated_above with include_base), and copying
// a range from the top of the chain into base through a reusable buffer.

import Qcow2

struct CommitCopier {
    /// QEMU's COMMIT_BUFFER_SIZE: the most one step reads and writes.
    static let bufferSize = 512 * 1024

    let top: BlockNode
    /// The layers whose data is committed: top down to base's overlay.
    let layers: [BlockNode]
    let base: BlockNode
    private let buffer: UnsafeMutableRawBufferPointer

    init(top: BlockNode, layers: [BlockNode], base: BlockNode) {
        self.top = top
        self.layers = layers
        self.base = base
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 4096)
    }

    func deallocate() { buffer.deallocate() }

    /// Whether any layer above base decides the run at `offset`, and how
    /// long that answer holds (at most `length`). Layers shorter than the
    /// offset have nothing there.
    func isAllocatedAboveBase(at offset: UInt64, length: UInt64) throws -> (allocated: Bool, length: UInt64) {
        var run = length
        for layer in layers {
            let size = layer.size
            guard offset < size else { continue }
            let status: BlockStatus
            do {
                status = try layer.blockStatus(at: offset, length: length)
            } catch {
                throw BlockJobIOFailure(.read, error)
            }
            if status.isAllocated { return (true, min(length, status.length)) }
            // Where this layer ends, the next one's answer may differ.
            if run > status.length && (layer === top || offset + status.length < size) { run = status.length }
        }
        return (false, run)
    }

    /// Reads `length` (at most the buffer) at `offset` through top's chain
    /// and writes it to base.
    func copy(at offset: UInt64, length: UInt64) throws {
        let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(length)])
        do {
            try top.read(into: part, at: offset)
        } catch {
            throw BlockJobIOFailure(.read, error)
        }
        do {
            try base.write(UnsafeRawBufferPointer(part), at: offset)
        } catch {
            throw BlockJobIOFailure(.write, error)
        }
    }

    /// `copy` for a stream, whose target is top itself: the caller holds
    /// top's writes (`BlockNode.withWritesHeld`), so the write goes to the
    /// image directly.
    func copyWithinHeldWrites(at offset: UInt64, length: UInt64) throws {
        let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(length)])
        do {
            try top.read(into: part, at: offset)
        } catch {
            throw BlockJobIOFailure(.read, error)
        }
        do {
            try base.writableImage().write(UnsafeRawBufferPointer(part), at: offset)
        } catch {
            throw BlockJobIOFailure(.write, error)
        }
    }

    func flushBase() throws {
        do {
            try base.flush()
        } catch {
            throw BlockJobIOFailure(.write, error)
        }
    }

    /// Grows base to `size` when it is smaller (commit_run's truncate);
    /// where base's own backing would show through the new part, that part
    /// is zeroed, as QEMU's block layer does.
    func growBase(to size: UInt64) throws {
        let oldSize = base.size
        guard oldSize < size else { return }
        guard let qcow2 = base.qcow2 else {
            throw BlockJobIOFailure(.write, BlockGraphError("Cannot grow the \(base.driver) node '\(base.nodeName)'"))
        }
        do {
            try qcow2.grow(to: size)
            if let below = base.backing, below.size > oldSize {
                try base.writeZeroes(at: oldSize, length: size - oldSize)
            }
        } catch {
            throw BlockJobIOFailure(.write, error)
        }
    }
}
