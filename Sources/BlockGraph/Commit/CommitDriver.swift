// An intermediate commit (QEMU's block/commit.c): the data the layers from
// top down to base's overlay allocate is copied into base, then every
// parent of top (all of them, not only the device's chain) is pointed at
// base, in its image header first (prepare: QEMU's bdrv_drop_intermediate
// and update_filename) and then in memory (commit). The dropped layers are
// closed once nothing refers to them any more (clean).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

final class CommitDriver: BlockJobDriver {
    let jobType = "commit"
    private let graph: BlockGraph
    private let device: BlockNode
    private let top: BlockNode
    private let base: BlockNode
    private let layersAboveBase: [BlockNode]
    /// The name written into the parents' headers: base's file name as
    /// opened, unless block-commit's backing-file says otherwise.
    private let backingString: String
    private let claim: JobClaim
    private let baseWasReadOnly: Bool
    /// Headers rewritten by `prepare`, with what they named before.
    private var rewritten: [(node: BlockNode, name: String?, format: String?)] = []
    private var cleaned = false

    var busyNodes: [String] { claim.nodes.map(\.nodeName) }
    var initialLength: UInt64 { top.size }

    /// `layers`: top down to base, both included.
    init(graph: BlockGraph, device: BlockNode, top: BlockNode, base: BlockNode, overlay: BlockNode,
         layers: [BlockNode], backingFile: String?) throws {
        self.graph = graph
        self.device = device
        self.top = top
        self.base = base
        layersAboveBase = layers.filter { $0 !== base }
        backingString = backingFile ?? base.filename
        baseWasReadOnly = base.isReadOnly
        claim = try graph.claim([device, overlay] + layers, backends: [top, base], jobType: "commit",
                                uses: layersAboveBase.filter { $0 !== device }.map { ($0, BlockGraph.mergedLayer) })
        do {
            try graph.reopen(base, readOnly: false)
        } catch {
            graph.release(claim)
            throw error
        }
    }

    /// A driver dropped without `clean` (the job layer refused to start
    /// it) still lets go of its nodes. Job layers call `clean` on the
    /// graph's thread in every outcome, which makes this a no-op.
    deinit { clean() }

    func run(_ context: JobRunContext) throws {
        let length = top.size
        context.setProgress(current: 0, total: length)
        let copier = CommitCopier(top: top, layers: layersAboveBase, base: base)
        defer { copier.deallocate() }
        try context.retry { try copier.growBase(to: length) }
        try context.forEachStep(upTo: length) { offset in
            let (allocated, run) = try copier.isAllocatedAboveBase(
                at: offset, length: min(UInt64(CommitCopier.bufferSize), length - offset))
            if allocated { try copier.copy(at: offset, length: run) }
            return (run, allocated)
        }
        try context.retry { try copier.flushBase() }
    }

    /// Rewrites the header of every qcow2 parent of top to name base,
    /// reopening read-only parents read-write for it, as QEMU does.
    func prepare() throws {
        for parent in graph.parents(of: top) where parent.backing === top {
            guard let qcow2 = parent.qcow2 else { continue }
            let old = (node: parent, name: qcow2.backingFileName, format: qcow2.backingFormat)
            do {
                try changeBackingFile(of: parent, name: backingString, format: base.driver)
            } catch {
                throw BlockGraphError("Could not update backing file link: \(Self.reason(error))")
            }
            rewritten.append(old)
        }
    }

    /// Points the parents (and drives) of top at base in memory.
    func commit() {
        graph.replaceNode(top, with: base)
        rewritten = []
    }

    /// Puts back the headers `prepare` rewrote before it failed (QEMU
    /// leaves them; a header that cannot be put back is reported in the
    /// words QEMU uses for a link it could not update, and the rest go on).
    func abort() {
        for old in rewritten.reversed() {
            do {
                try changeBackingFile(of: old.node, name: old.name, format: old.format)
            } catch {
                old.node.qcow2?.report(Qcow2Diagnostic(
                    .errorReport, "Could not update backing file link: \(Self.reason(error))"))
            }
        }
        rewritten = []
    }

    func clean() {
        guard !cleaned else { return }
        cleaned = true
        // QEMU's commit_clean asks for no error here: a base left writable is harmless.
        if baseWasReadOnly { try? graph.reopen(base, readOnly: true) }
        graph.release(claim)
    }

    private func changeBackingFile(of node: BlockNode, name: String?, format: String?) throws {
        let wasReadOnly = node.isReadOnly
        if wasReadOnly { try graph.reopen(node, readOnly: false) }
        // As commit_clean: going back to read-only may fail unreported.
        defer { if wasReadOnly { try? graph.reopen(node, readOnly: true) } }
        guard let qcow2 = node.qcow2 else { return }
        try qcow2.changeBackingFile(name: name, format: format)
        try qcow2.flush()
    }

    /// The errno text QEMU's error_setg_errno appends, for codec errors
    /// that carry one.
    static func reason(_ error: Error) -> String {
        switch error as? Qcow2Error {
        case .writeFailed?, .io?, .openFailed?: return Qcow2Error.reason(of: error)
        default: return "\(error)"
        }
    }
}
