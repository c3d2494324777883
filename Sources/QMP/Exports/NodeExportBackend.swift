// A block-graph node served over NBD (block-export-add type=nbd): data goes
// through the node, so a running job on it (an active commit's dirty
// tracking, a stream's write gate) sees export writes as it sees any other.
import BlockGraph
import NBD
import Qcow2

final class NodeExportBackend: NBDExportBackend {
    let use: NodeExportUse
    let isReadOnly: Bool
    /// Every write is flushed before it is acknowledged (writethrough=on).
    let writeThrough: Bool

    /// The node served now (a completed commit moves the export to the base).
    var node: BlockNode { use.node }

    init(use: NodeExportUse, writable: Bool, writeThrough: Bool) {
        self.use = use
        self.isReadOnly = !writable
        self.writeThrough = writeThrough
    }

    var size: UInt64 { node.size }
    var requestAlignment: UInt32 { 1 }
    var maxTransfer: UInt32 { NBDProtocol.maxBufferSize }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try mapErrors { try node.read(into: buffer, at: offset) }
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        try mapErrors { try node.write(buffer, at: offset) }
        if fua || writeThrough { try flush() }
    }

    func writeZeroes(at offset: UInt64, length: UInt64, mayTrim: Bool, fastZero: Bool, fua: Bool) throws {
        if fastZero && !node.hasFastZeroWrites { throw NBDExportError(.notSupported, "Operation not supported") }
        // An export's block backend does not allow unmapping (QEMU's default discard=ignore).
        try mapErrors { try node.writeZeroes(at: offset, length: length, mayUnmap: false) }
        if fua || writeThrough { try flush() }
    }

    /// discard=ignore (the export's backend default): trims are accepted and dropped.
    func trim(at offset: UInt64, length: UInt64, fua: Bool) throws {
        if fua { try flush() }
    }

    func flush() throws {
        try mapErrors { try node.flush() }
    }

    /// A copy-on-read prefetch into the node, whether or not the export is
    /// writable (qemu-storage-daemon 7.2 copies up through a read-only
    /// export of a writable node too).
    func cache(at offset: UInt64, length: UInt64) throws {
        try mapErrors { try node.copyOnRead(at: offset, length: length) }
    }

    func allocation(at offset: UInt64, length: UInt64) throws -> NBDAllocationExtent {
        NBDAllocationExtent(deciding: try mapErrors { try node.chainBlockStatus(at: offset, length: length) }.status)
    }

    func allocationDepth(at offset: UInt64, length: UInt64) throws -> NBDDepthExtent {
        let chain = try mapErrors { try node.chainBlockStatus(at: offset, length: length) }
        return NBDDepthExtent(deciding: chain.status, depth: chain.depth)
    }

    private func mapErrors<T>(_ body: () throws -> T) throws -> T { try NBDExportError.mapping(body) }
}
