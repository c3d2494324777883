// convert -c in guest order on every core. qemu-img (without -W) compresses
// inside its in-order write, one cluster at a time; its output is the
// reference, so allocation must stay in guest order while compression runs
// on every worker. Each worker takes a slot (a cluster buffer and room for
// its compressed bytes), reads and compresses its request into it and
// deposits it; whichever worker deposits the request next in guest order
// writes it and every deposited request after it. No worker waits for
// another's turn (a wake-up per cluster costs a time slice on a busy
// machine); memory is bounded by the slots (see `slotMemory`).

import Dispatch

extension ConvertCopy {
    /// A request read (and compressed) into its slot, waiting for its turn.
    struct Deposit: Sendable {
        enum Content: Sendable { case nothing, zeroes, uncompressed, compressed(length: Int) }
        var sector: Int64
        var count: Int64
        var status: RangeStatus
        var slot: Int
        var content: Content
    }

    /// The slots' memory: one block, allocated by `run` before the workers
    /// start and freed after they have all ended.
    struct SlotMemory: @unchecked Sendable {
        // Unchecked: raw memory. A slot's bytes are written only by the
        // worker that took the slot from the free list (under `shared`'s
        // lock) until it deposits it, then read only by the one worker
        // draining deposits until it puts the slot back on the free list.
        let base: UnsafeMutableRawPointer
        let dataBytes: Int
        let compressedBytes: Int
        var slotBytes: Int { dataBytes + compressedBytes }

        func data(_ slot: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: base + slot * slotBytes, count: dataBytes)
        }

        func compressed(_ slot: Int) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: base + slot * slotBytes + dataBytes, count: compressedBytes)
        }
    }

    /// Slots per compressing thread at most.
    static let slotsPerWorker = 4
    /// Bytes of slots (data and compressed room) allowed for more than one
    /// per worker and core (with 64 KiB clusters, 4 MiB suffice for four per
    /// worker; with 2 MiB clusters it allows none beyond those).
    static let slotMemory = 32 << 20

    /// Works the requests in `first` (handed out already, each with a slot),
    /// then further ones until the disk is done or a worker failed.
    func compressingWorker(first: [(Request, Int)], memory: SlotMemory) {
        var compression: ClusterCompression?
        if let qcow2 = target as? Qcow2Image {
            do { compression = try qcow2.makeClusterCompression() } catch {
                fail(.export(.write(offset: 0, reason: Qcow2Error.reason(of: error))))
            }
        }
        var pending = first[...]
        while true {
            var item = pending.popFirst()
            if item == nil {
                // The slot before the request, so that the request next in
                // guest order never waits for a slot.
                freeSlotSignal.wait()
                let slot = shared.withLock { $0.freeSlots.removeLast() }
                guard let request = nextRequest() else {
                    shared.withLock { $0.freeSlots.append(slot) }
                    freeSlotSignal.signal()
                    break
                }
                item = (request, slot)
            }
            guard let ((sector, count, status), slot) = item, let compression else { break }
            deposit(fill(slot, memory: memory, sector: sector, count: count, status: status, with: compression), memory: memory)
        }
    }

    /// Reads request into `slot` and compresses it there.
    private func fill(_ slot: Int, memory: SlotMemory, sector: Int64, count: Int64, status: RangeStatus,
                      with compression: ClusterCompression) -> Deposit {
        var deposit = Deposit(sector: sector, count: count, status: status, slot: slot, content: .nothing)
        guard status == .data || (settings.minSparse == 0 && status == .zero) else { return deposit }
        let bytes = Int(count * Self.sector)
        let data = UnsafeMutableRawBufferPointer(rebasing: memory.data(slot)[..<bytes])
        if status == .data {
            do {
                try sources.read(into: data, sector: sector, count: count, salvage: settings.salvage, warn: reporter.warning)
            } catch {
                fail(.export(.read(offset: UInt64(sector) * UInt64(Self.sector), reason: Qcow2Error.reason(of: error))))
                return deposit
            }
        } else {
            deposit.status = .data
            data.initializeMemory(as: UInt8.self, repeating: 0)
        }
        guard !hasFailed else { return deposit }
        deposit.content = .zeroes
        guard let cluster = compress(UnsafeRawBufferPointer(data), with: compression,
                                     at: UInt64(sector) * UInt64(Self.sector)) else { return deposit }
        if let compressed = cluster.compressed {
            memory.compressed(slot).copyMemory(from: compressed)
            deposit.content = .compressed(length: compressed.count)
        } else {
            deposit.content = .uncompressed
        }
        return deposit
    }

    /// Files `deposit`; if it is next in guest order and no one is writing,
    /// writes it and every deposit that follows it.
    private func deposit(_ deposit: Deposit, memory: SlotMemory) {
        var next: Deposit? = shared.withLock { s in
            s.deposits[deposit.sector] = deposit
            guard !s.draining, s.failure == nil, let next = s.deposits.removeValue(forKey: s.writtenUpTo) else { return nil }
            s.draining = true
            return next
        }
        while let current = next {
            if !hasFailed {
                do { try write(current, memory: memory) } catch {
                    fail(.export(.write(offset: UInt64(current.sector) * UInt64(Self.sector),
                                        reason: Qcow2Error.reason(of: error))))
                }
            }
            next = shared.withLock { s in
                s.writtenUpTo = current.sector + current.count
                s.freeSlots.append(current.slot)
                if s.failure == nil, let next = s.deposits.removeValue(forKey: s.writtenUpTo) { return next }
                s.draining = false
                return nil
            }
            freeSlotSignal.signal()
        }
    }

    private func write(_ deposit: Deposit, memory: SlotMemory) throws {
        let bytes = Int(deposit.count * Self.sector)
        let data = UnsafeRawBufferPointer(rebasing: memory.data(deposit.slot)[..<min(bytes, memory.dataBytes)])
        let cluster: CompressedCluster?
        switch deposit.content {
        case .nothing, .zeroes:
            cluster = nil
        case .uncompressed:
            cluster = CompressedCluster(data: data, compressed: nil)
        case let .compressed(length):
            cluster = CompressedCluster(data: data, compressed: UnsafeRawBufferPointer(rebasing: memory.compressed(deposit.slot)[..<length]))
        }
        try write(data, sector: deposit.sector, count: deposit.count, status: deposit.status, cluster: cluster)
    }
}
