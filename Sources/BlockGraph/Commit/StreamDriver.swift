// A stream job (QEMU's block/stream.c): what the layers between the device
// and base hold, and the device itself does not, is copied into the device
// (copy-on-read, with the device's writes held off per step so that none is
// overwritten); then the device's header names base (or nothing, without a
// base) and the device reads from base directly. The layers in between are
// closed once nothing refers to them any more.

import Qcow2

final class StreamDriver: BlockJobDriver {
    let jobType = "stream"
    private let graph: BlockGraph
    private let device: BlockNode
    private let base: BlockNode?
    private let intermediates: [BlockNode]
    private let backingString: String?
    private let claim: JobClaim
    private let deviceWasReadOnly: Bool
    /// What the header named before `prepare` rewrote it.
    private var oldHeader: (name: String?, format: String?)?
    private var cleaned = false

    var busyNodes: [String] { claim.nodes.map(\.nodeName) }
    var initialLength: UInt64 { intermediates.isEmpty ? 0 : device.size }

    init(graph: BlockGraph, device: BlockNode, base: BlockNode?, intermediates: [BlockNode], backingFile: String?) throws {
        self.graph = graph
        self.device = device
        self.base = base
        self.intermediates = intermediates
        backingString = backingFile ?? base?.filename
        deviceWasReadOnly = device.isReadOnly
        claim = graph.claim([device] + intermediates, backends: [device], jobType: "stream")
        do {
            if !intermediates.isEmpty { try graph.reopen(device, readOnly: false) }
        } catch {
            graph.release(claim)
            throw error
        }
    }

    deinit { clean() }

    func run(_ context: JobRunContext) throws {
        // Nothing between the device and base: nothing to stream.
        guard !intermediates.isEmpty else { return }
        let length = device.size
        context.setProgress(current: 0, total: length)
        let copier = CommitCopier(top: device, layers: intermediates, base: device)
        defer { copier.deallocate() }
        var offset: UInt64 = 0
        while offset < length {
            try context.pausePoint()
            var copied = false
            var run: UInt64 = 0
            guard try context.attempt({
                try device.withWritesHeld {
                    let chunk = min(UInt64(CommitCopier.bufferSize), length - offset)
                    let own: BlockStatus
                    do {
                        own = try device.blockStatus(at: offset, length: chunk)
                    } catch {
                        throw BlockJobIOFailure(.read, error)
                    }
                    run = own.length
                    guard !own.isAllocated else { return }
                    let (allocated, found) = try copier.isAllocatedAboveBase(at: offset, length: run)
                    run = found
                    if allocated {
                        try copier.copyWithinHeldWrites(at: offset, length: run)
                        copied = true
                    }
                }
            }) else { continue }
            offset += run
            context.setProgress(current: offset, total: length)
            if copied { try context.rateLimit(afterCopying: run) }
        }
        while try !context.attempt({ try copier.flushBase() }) { try context.pausePoint() }
    }

    /// The device's header names base from now on.
    func prepare() throws {
        guard !intermediates.isEmpty, let qcow2 = device.qcow2 else { return }
        let old = (name: qcow2.backingFileName, format: qcow2.backingFormat)
        do {
            try qcow2.changeBackingFile(name: backingString, format: base?.driver)
            try qcow2.flush()
        } catch {
            throw BlockGraphError("Could not update backing file link: \(CommitDriver.reason(error))")
        }
        oldHeader = old
    }

    /// And so does its backing link.
    func commit() {
        guard !intermediates.isEmpty else { return }
        device.backing = base
        device.qcow2?.attachBacking(base?.image)
        device.backingOverridden = graph.backingIsOverridden(device)
        oldHeader = nil
    }

    func abort() {
        guard let oldHeader, let qcow2 = device.qcow2 else { return }
        try? qcow2.changeBackingFile(name: oldHeader.name, format: oldHeader.format)
        try? qcow2.flush()
        self.oldHeader = nil
    }

    func clean() {
        guard !cleaned else { return }
        cleaned = true
        if deviceWasReadOnly { try? graph.reopen(device, readOnly: true) }
        graph.release(claim)
    }
}
