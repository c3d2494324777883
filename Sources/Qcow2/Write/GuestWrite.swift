// Writing guest data (QEMU's qcow2_co_pwritev_part and
// qcow2_co_pwritev_task): the request is cut into host-contiguous parts. Each
// part is mapped under the lock (allocating clusters; its allocations go in
// flight so that no one else allocates the same clusters), its host range
// checked against the metadata, then its data written with the lock released,
// and finally its allocations are entered into the L2 tables under the lock.
//
// As in QEMU, where each part's I/O runs as a task while the request goes on
// allocating, all parts of a request are mapped before any is linked (old
// clusters freed by linking are not reused within the request). A part that
// would have to wait for another request's allocation first completes the
// parts mapped so far, so that two requests never wait for each other.

extension Qcow2Image {
    /// One mapped part of a request.
    private struct MappedPart {
        var guestOffset: UInt64
        var hostOffset: UInt64
        /// Where the part's data starts in the request's buffer.
        var bufferOffset: Int
        var length: Int
        var allocations: [ClusterAllocation]
    }

    /// The parts mapped so far: the first held inline, so that a request of
    /// one part (a rewrite, most writes) allocates nothing for the list.
    private struct MappedParts: Sequence {
        private var first: MappedPart?
        private var more: [MappedPart] = []

        var isEmpty: Bool { first == nil }

        mutating func append(_ part: MappedPart) {
            if first == nil { first = part } else { more.append(part) }
        }

        func makeIterator() -> Iterator { Iterator(parts: self) }

        struct Iterator: IteratorProtocol {
            let parts: MappedParts
            var index = -1

            mutating func next() -> MappedPart? {
                defer { index += 1 }
                if index < 0 { return parts.first }
                return index < parts.more.count ? parts.more[index] : nil
            }
        }
    }

    /// Writes guest data (the range checked by the caller).
    func writeGuestData(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        var parts = MappedParts()
        do {
            while done < buffer.count {
                let position = offset + UInt64(done)
                // One mapping covers at most INT_MAX bytes, as in QEMU.
                let wanted = UInt64(min(buffer.count - done, Int(Int32.max)))
                let mayWait = parts.isEmpty
                let mapping: HostMapping = try withWriter { writer, lock in
                    try writer.guarded {
                        let mapping = try writer.mapForWrite(offset: position, bytes: wanted, mayWait: mayWait, lock: lock)
                        if case let .mapped(host, bytes, allocations) = mapping {
                            do {
                                try writer.checkOverlap(offset: host, length: bytes)
                            } catch {
                                for allocation in allocations { writer.abort(allocation, lock: lock) }
                                throw error
                            }
                        }
                        return mapping
                    }
                }
                switch mapping {
                case .mustWait:
                    try complete(parts, buffer: buffer)
                    parts = MappedParts()
                case let .mapped(host, bytes, allocations):
                    guard bytes > 0 else { throw Qcow2Error.corruptMetadata("no progress mapping guest offset \(hex(position))") }
                    parts.append(MappedPart(guestOffset: position, hostOffset: host, bufferOffset: done,
                                            length: Int(bytes), allocations: allocations))
                    done += Int(bytes)
                }
            }
            try complete(parts, buffer: buffer)
        } catch {
            // Whatever was mapped and is still in flight is given up.
            _ = try? withWriter { writer, lock in
                for part in parts {
                    for allocation in part.allocations where writer.inFlight.contains(where: { $0 === allocation }) {
                        writer.abort(allocation, lock: lock)
                    }
                }
            }
            throw error
        }
    }

    /// Writes each part's data, then links its allocations.
    private func complete(_ parts: MappedParts, buffer: UnsafeRawBufferPointer) throws {
        for part in parts {
            let data = UnsafeRawBufferPointer(rebasing: buffer[part.bufferOffset..<(part.bufferOffset + part.length)])
            try zeroUnallocatedCopyRegions(part.allocations)
            if !mergeDataWithCopies(guestOffset: part.guestOffset, data: data, allocations: part.allocations) {
                try file.write(data, at: part.hostOffset)
            }
            try withWriter { writer, lock in
                // QEMU keeps its allocations newest first, and links them so.
                var remaining = Array(part.allocations.reversed())
                defer { for allocation in remaining { writer.abort(allocation, lock: lock) } }
                while let allocation = remaining.first {
                    try writer.guarded { try writer.link(allocation, lock: lock) }
                    remaining.removeFirst()
                    allocation.data = nil
                    writer.finish(allocation, lock: lock)
                }
            }
        }
    }
}
