// The copying both commit jobs do: which ranges the layers above base
// allocate (QEMU's bdrv_is_allocated_above with include_base), and copying
// a range from the top of the chain into base through a reusable buffer
// (an active commit, like QEMU's mirror, writes zeroes where top's chain
// reads as zeroes).

import Qcow2

struct CommitCopier {
    /// QEMU's COMMIT_BUFFER_SIZE: the most one step reads and writes.
    static let bufferSize = 512 * 1024
    /// The most one mirror operation copies (QEMU's mirror: its 16 MiB
    /// buffer shared by at most 16 operations in flight).
    static let mirrorChunkSize = 1024 * 1024

    let top: BlockNode
    /// The layers whose data is committed: top down to base's overlay.
    let layers: [BlockNode]
    let base: BlockNode
    private let buffer: UnsafeMutableRawBufferPointer

    /// `bufferSize`: the most one copy may move (none: no copying).
    init(top: BlockNode, layers: [BlockNode], base: BlockNode, bufferSize: Int = Self.bufferSize) {
        self.top = top
        self.layers = layers
        self.base = base
        buffer = .allocate(byteCount: bufferSize, alignment: 4096)
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
            let status = try BlockJobIOFailure.catching(.read) { try layer.blockStatus(at: offset, length: length) }
            if status.isAllocated { return (true, min(length, status.length)) }
            // Where this layer ends, the next one's answer may differ.
            if run > status.length && (layer === top || offset + status.length < size) { run = status.length }
        }
        return (false, run)
    }

    /// Reads `length` (at most the buffer) at `offset` through top's chain
    /// and writes it to base.
    func copy(at offset: UInt64, length: UInt64) throws {
        try copy(at: offset, length: length) { try base.write($0, at: offset) }
    }

    /// What a mirror (an active commit) does with a dirty range (QEMU's
    /// mirror_iteration): a run that reads as zeroes through top's chain,
    /// with no data behind it, becomes a zero write that may unmap, when it
    /// covers whole clusters of base; everything else is copied.
    func mirror(at offset: UInt64, length: UInt64) throws {
        let cluster = base.qcow2?.header.clusterSize ?? 512
        let end = offset + length
        var position = offset
        while position < end {
            let status = try BlockJobIOFailure.catching(.read) {
                try top.image.chainBlockStatus(at: position, length: end - position).status
            }
            let run = min(status.length, end - position)
            let whole = position % cluster == 0 && (run % cluster == 0 || position + run == top.size)
            if status.isZero && !status.isData && whole {
                try BlockJobIOFailure.catching(.write) { try base.writeZeroes(at: position, length: run, mayUnmap: true) }
            } else {
                try copy(at: position, length: run)
            }
            position += run
        }
    }

    /// `copy` for a stream, whose target is top itself: the caller holds
    /// top's writes (`BlockNode.withWritesHeld`), so the write goes to the
    /// image directly.
    func copyWithinHeldWrites(at offset: UInt64, length: UInt64) throws {
        try copy(at: offset, length: length) { try base.writableImage().write($0, at: offset) }
    }

    private func copy(at offset: UInt64, length: UInt64, write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(length)])
        try BlockJobIOFailure.catching(.read) { try top.read(into: part, at: offset) }
        try BlockJobIOFailure.catching(.write) { try write(UnsafeRawBufferPointer(part)) }
    }

    func flushBase() throws {
        try BlockJobIOFailure.catching(.write) { try base.flush() }
    }

    /// Grows base to `size` when it is smaller (commit_run's and mirror's
    /// truncate); where base's own backing would show through the new part,
    /// the codec zeroes it, as QEMU's block layer does.
    func growBase(to size: UInt64) throws {
        guard base.size < size else { return }
        try BlockJobIOFailure.catching(.write) {
            switch base.image {
            case let qcow2 as Qcow2Image: try qcow2.truncate(to: size, preallocation: .off)
            case let raw as RawImage: try raw.truncate(to: size, preallocation: .off)
            default: throw BlockGraphError("Cannot grow the \(base.driver) node '\(base.nodeName)'")
            }
        }
    }
}
