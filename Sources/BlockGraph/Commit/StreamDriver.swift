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
        // The stream copies data into its device without changing what it reads.
        claim = try graph.claim([device] + intermediates, backends: [device], jobType: "stream",
                                uses: [(device, BlockAccess(perm: .writeUnchanged, shared: .all))])
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
        try context.forEachStep(upTo: length) { offset in
            // Copy-on-read: the device's own data stays, and no guest write
            // lands between looking at a range and filling it.
            try device.withWritesHeld {
                let chunk = min(UInt64(CommitCopier.bufferSize), length - offset)
                let own = try BlockJobIOFailure.catching(.read) { try device.blockStatus(at: offset, length: chunk) }
                guard !own.isAllocated else { return (own.length, false) }
                let (allocated, run) = try copier.isAllocatedAboveBase(at: offset, length: own.length)
                if allocated { try copier.copyWithinHeldWrites(at: offset, length: run) }
                return (run, allocated)
            }
        }
        try context.retry { try copier.flushBase() }
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
        // Put back what prepare wrote (QEMU leaves it); reported as
        // CommitDriver.abort reports it.
        do {
            try qcow2.changeBackingFile(name: oldHeader.name, format: oldHeader.format)
            try qcow2.flush()
        } catch {
            qcow2.report(Qcow2Diagnostic(.errorReport, "Could not update backing file link: \(CommitDriver.reason(error))"))
        }
        self.oldHeader = nil
    }

    func clean() {
        guard !cleaned else { return }
        cleaned = true
        // QEMU's stream_clean asks for no error here, as commit_clean.
        if deviceWasReadOnly { try? graph.reopen(device, readOnly: true) }
        graph.release(claim)
    }
}
