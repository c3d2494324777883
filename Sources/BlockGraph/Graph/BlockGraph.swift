// The block graph: every open node, in the order QEMU's graph_bdrv_states
// holds them, and what refers to each (NodeReferences.swift). Opening
// (NodeOpening.swift), reporting (DeviceInfo.swift), reopening
// (NodeReopen.swift) and jobs (Commit/) build on it.
//
// Threads: confined to the thread that owns it (the QMP service's main
// loop); jobs reach nodes' data from their own threads (BlockNode.swift).

import Qcow2

public final class BlockGraph {
    /// Every node, oldest first.
    var nodes: [BlockNode] = []
    /// Nodes the monitor holds (blockdev-add roots, until blockdev-del).
    var monitorOwned: [BlockNode] = []
    /// -drive's block backends: an id (if any) and the root node.
    var drives: [(id: String?, node: BlockNode)] = []
    /// What live jobs hold (JobClaims.swift).
    var claims: [JobClaim] = []
    /// What block exports hold (NodeExports.swift).
    var exportUses: [NodeExportUse] = []
    var generatedNameCounter: UInt64 = 0
    var nextSerial: UInt64 = 0
    /// Told of every change to the files this graph opens from now on
    /// (power-loss tests, BlockFileObserver.swift); nil otherwise.
    package var fileObserver: (any BlockFileObserver)?

    public init() {}

    var driveNames: Set<String> { Set(drives.compactMap(\.id)) }

    public func node(named name: String) -> BlockNode? {
        nodes.first { $0.nodeName == name }
    }

    /// A drive id or a node name, as block jobs name their device; QEMU's
    /// DeviceNotFound error otherwise.
    public func lookup(device: String) throws -> BlockNode {
        if let drive = drives.first(where: { $0.id == device }) { return drive.node }
        if let node = node(named: device) { return node }
        throw BlockGraphError.deviceNotFound(device)
    }

    /// QEMU's bdrv_lookup_bs: a drive id (if `device` is given) or a node
    /// name (if `nodeName` is), with its message when neither is found.
    public func lookup(device: String?, nodeName: String?) throws -> BlockNode {
        if let device, let drive = drives.first(where: { $0.id == device }) { return drive.node }
        if let nodeName, let node = node(named: nodeName) { return node }
        throw BlockGraphError("Cannot find device='\(device ?? "")' nor node-name='\(nodeName ?? "")'")
    }

    /// query-named-block-nodes' order: newest first, so each format node
    /// comes before the file node it was opened over.
    public var namedNodes: [BlockNode] { nodes.reversed() }

    /// The drive ids and their root nodes, in the order they were added.
    public var driveList: [(id: String?, node: BlockNode)] { drives }
}
