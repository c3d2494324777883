// An active commit (QEMU's commit_active_start, a mirror job from the
// active layer to base): everything the layers above base allocate is
// copied, then writes made through the active node keep being copied (its
// write observer marks them dirty) until the user completes the ready job;
// then the device's users (drives, parent nodes) switch to base. A job
// cancelled instead (soft-cancelled while ready, or forced) leaves the graph
// as it was; base keeps the data copied, which the layers above it hide.

import Qcow2

final class ActiveCommitDriver: BlockJobDriver {
    let jobType = "commit"
    private let graph: BlockGraph
    private let top: BlockNode
    private let base: BlockNode
    private let layersAboveBase: [BlockNode]
    private let claim: JobClaim
    private let baseWasReadOnly: Bool
    private let dirty: DirtyRanges
    private var observer: UInt64?
    /// The user completed the job (rather than cancelling it while ready).
    private var switchOver = false
    private var pivoted = false
    private var cleaned = false
    /// The copies of the running `run` (its thread alone touches this).
    private var copies: MirrorInFlight?
    /// How long the ready job sleeps between looks at the dirty ranges
    /// (QEMU's BLOCK_JOB_SLICE_TIME); complete and cancel wake it.
    private static let idleNanoseconds: UInt64 = 100_000_000

    var busyNodes: [String] { claim.nodes.map(\.nodeName) }

    /// `layers`: top (the device's active node) down to base, both included.
    init(graph: BlockGraph, device: BlockNode, base: BlockNode, layers: [BlockNode]) throws {
        self.graph = graph
        top = device
        self.base = base
        layersAboveBase = layers.filter { $0 !== base }
        baseWasReadOnly = base.isReadOnly
        // QEMU's default mirror granularity: the target's cluster size, 4 KiB to 64 KiB.
        let clusterSize = base.qcow2?.header.clusterSize ?? 65536
        dirty = DirtyRanges(size: device.size, granularity: min(max(clusterSize, 4096), 65536))
        claim = try graph.claim(layers, backends: [device, base], jobType: "commit",
                                uses: layersAboveBase.filter { $0 !== device }.map { ($0, BlockGraph.mergedLayer) })
        do {
            try graph.reopen(base, readOnly: false)
        } catch {
            graph.release(claim)
            throw error
        }
        let dirty = self.dirty
        observer = device.addWriteObserver { offset, length in dirty.mark(offset: offset, length: length) }
    }

    /// A driver dropped without `clean` (the job layer refused to start
    /// it) still lets go of its nodes. Job layers call `clean` on the
    /// graph's thread in every outcome, which makes this a no-op.
    deinit { clean() }

    func run(_ context: JobRunContext) throws {
        let length = top.size
        // Scans, grows and flushes only: the copies are MirrorInFlight's.
        let copier = CommitCopier(top: top, layers: layersAboveBase, base: base, bufferSize: 0)
        defer { copier.deallocate() }
        try context.retry { try copier.growBase(to: length) }

        // What the layers above base hold is dirty to begin with; progress
        // counts what is copied from it.
        try context.forEachStep(upTo: length, reportingProgress: false) { offset in
            let (allocated, run) = try copier.isAllocatedAboveBase(
                at: offset, length: min(UInt64(CommitCopier.bufferSize), length - offset))
            if allocated { dirty.mark(offset: offset, length: run) }
            return (run, false)
        }

        var copied: UInt64 = 0
        var ready = false
        context.setProgress(current: 0, total: dirty.dirtyBytes)
        let copies = MirrorInFlight(top: top, layers: layersAboveBase, base: base)
        self.copies = copies
        defer {
            copies.stop()
            self.copies = nil
        }
        while true {
            try context.pausePoint()
            while copies.inFlightCount < MirrorInFlight.maxInFlight,
                  let chunk = dirty.takeNext(maxBytes: UInt64(CommitCopier.mirrorChunkSize)) {
                if copies.overlapsInFlight(chunk) {
                    dirty.mark(offset: chunk.offset, length: chunk.length)
                    break
                }
                copies.submit(chunk)
            }
            let completions = copies.takeCompletions()
            if !completions.isEmpty || copies.inFlightCount > 0 {
                for done in completions {
                    // A failed copy is dirty again; the policy reports it (the
                    // job fails) or lets it be retried after a pause point.
                    if let error = done.error {
                        dirty.mark(offset: done.chunk.offset, length: done.chunk.length)
                        _ = try context.attempt { throw error }
                        continue
                    }
                    copied += done.chunk.length
                    context.setProgress(current: copied, total: copied + dirty.dirtyBytes + copies.inFlightBytes)
                    try context.rateLimit(afterCopying: done.chunk.length)
                }
                continue
            }
            if !ready {
                guard try context.attempt({ try copier.flushBase() }) else { continue }
                ready = true
                context.becameReady()
            } else if context.isCompletionRequested || context.isCancelRequested {
                // Completed: switch over. Cancelled while ready (QEMU's soft
                // cancel): stop in sync, without switching.
                switchOver = context.isCompletionRequested
                return
            } else {
                try context.sleep(nanoseconds: Self.idleNanoseconds)
            }
        }
    }

    /// Copies what was written since the last pass (nothing writes while
    /// the graph's thread is here), and gives base top's read-only flag.
    func prepare() throws {
        guard switchOver else { return }
        let copier = CommitCopier(top: top, layers: layersAboveBase, base: base)
        defer { copier.deallocate() }
        while let chunk = dirty.takeNext(maxBytes: UInt64(CommitCopier.bufferSize)) {
            try copier.mirror(at: chunk.offset, length: chunk.length)
        }
        try copier.flushBase()
        if top.isReadOnly { try graph.reopen(base, readOnly: true) }
    }

    /// The pivot: whatever used the active node uses base.
    func commit() {
        guard switchOver else { return }
        graph.replaceNode(top, with: base)
        pivoted = true
    }

    /// A paused job writes nothing to base: the copies in flight land
    /// first (QEMU's mirror_pause); their completions are handled on resume.
    func pause() { copies?.waitForAll() }

    func abort() {}

    func clean() {
        guard !cleaned else { return }
        cleaned = true
        if let observer { top.removeWriteObserver(observer) }
        observer = nil
        // QEMU's commit_clean (mirror's, for an active commit) asks for no error.
        if !pivoted && baseWasReadOnly { try? graph.reopen(base, readOnly: true) }
        graph.release(claim)
    }
}
