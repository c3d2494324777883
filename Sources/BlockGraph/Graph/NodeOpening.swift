// Opening nodes as QEMU's block layer does (bdrv_open_inherit and friends):
// a format node opens its `file` child first, then takes its name and place
// in the graph, then opens its backing: an existing node (backing=NODE),
// none (backing=null), or what the header names, read-only, with the format
// from the header's backing format extension or probed. An open either
// completes or leaves the graph as it was. Which links may be followed
// (pseudo-protocols, loops, depth) and how failures nest is `BackingChain`'s
// policy; the graph only supplies how a link becomes a node.

import Qcow2

extension BlockGraph {
    /// blockdev-add / -blockdev: the monitor holds the new node.
    @discardableResult
    public func addBlockdev(_ options: BlockdevOptions) throws -> BlockNode {
        guard options.nodeName != nil else { throw BlockGraphError("'node-name' must be specified for the root node") }
        // The monitor's reference is no user: the node's file is locked for
        // what its format needs alone, as qemu-storage-daemon's nodes are.
        let node = try transaction { try open(options, defaultReadOnly: false, at: .top, user: .none) }
        monitorOwned.append(node)
        return node
    }

    /// -drive: a block backend named `id` (if given) holds the new node.
    /// `file` is usually `.filename(PATH)`; the format is probed when
    /// `driver` is nil.
    @discardableResult
    public func addDrive(_ options: BlockdevOptions, id: String?) throws -> BlockNode {
        if let id { try checkDriveID(id) }
        // A drive's backend without a guest device reads and shares
        // everything: QEMU 7.2's -drive if=none takes consistent read alone
        // (traced: a raw drive locks byte 100 only, read-write or not).
        let user = BlockAccess.backend(writable: false)
        let node = try transaction { try open(options, defaultReadOnly: false, at: .top, user: user) }
        drives.append((id, node))
        return node
    }

    /// Runs an open; on failure closes and removes every node it created.
    private func transaction(_ body: () throws -> BlockNode) throws -> BlockNode {
        let before = nodes.count
        do {
            return try body()
        } catch {
            let created = nodes[before...].reversed()
            nodes.removeSubrange(before...)
            for node in created {
                node.qcow2?.attachBacking(nil)
                try? close(node)
                node.backing = nil
                node.file = nil
            }
            throw error
        }
    }

    /// Opens one node and what it needs below it, at `position` in the
    /// chain being opened (an image naming a file above it loops), for
    /// users that need `user` of it; force-share is inherited from the parent.
    private func open(_ options: BlockdevOptions, defaultReadOnly: Bool,
                      at position: BackingChainPosition, user: BlockAccess,
                      inheritedForceShare: Bool = false, inheritedDirect: Bool = false,
                      inheritedNoFlush: Bool = false) throws -> BlockNode {
        var options = options
        if options.cacheDirect == nil { options.cacheDirect = inheritedDirect }
        if options.cacheNoFlush == nil { options.cacheNoFlush = inheritedNoFlush }
        let readOnly = options.readOnly ?? defaultReadOnly
        let forceShare = options.forceShare ?? inheritedForceShare
        if forceShare && !readOnly { throw BlockGraphError("force-share=on can only be used with read-only images") }
        switch options.driver {
        case "file":
            return try openFileNode(options, readOnly: readOnly, at: position)
        case "raw" where options.backing != .fromImage(nil):
            throw BlockGraphError("Parameter 'backing' is unexpected")
        case nil, "qcow2", "raw":
            break
        case let other?:
            throw BlockGraphError("Unknown driver '\(other)'")
        }

        let fileNode: BlockNode
        switch options.file {
        case let .node(name)?:
            fileNode = try lookup(device: name, nodeName: name)
        case let .options(fileOptions)?:
            var protocolOptions = fileOptions
            if protocolOptions.driver == nil { protocolOptions.driver = "file" }
            guard protocolOptions.driver == "file" else {
                throw BlockGraphError("Driver '\(protocolOptions.driver ?? "")' is not supported as a protocol")
            }
            if protocolOptions.forceShare == nil { protocolOptions.forceShare = forceShare }
            if protocolOptions.cacheDirect == nil { protocolOptions.cacheDirect = options.cacheDirect }
            if protocolOptions.cacheNoFlush == nil { protocolOptions.cacheNoFlush = options.cacheNoFlush }
            fileNode = try openFileNode(protocolOptions, readOnly: protocolOptions.readOnly ?? readOnly, at: position)
        case let .filename(path)?:
            var protocolOptions = BlockdevOptions.file(path)
            protocolOptions.cacheDirect = options.cacheDirect
            protocolOptions.cacheNoFlush = options.cacheNoFlush
            fileNode = try openFileNode(protocolOptions, readOnly: readOnly, at: position)
        case nil:
            throw BlockGraphError("A block device must be specified for \"file\"")
        }
        guard !fileNode.isFormatNode, let blockFile = fileNode.blockFile else {
            throw BlockGraphError("Driver '\(options.driver ?? "qcow2")' over the format node '\(fileNode.nodeName)' is not supported")
        }
        if !readOnly && fileNode.isReadOnly { throw BlockGraphError("Block node is read-only") }
        try checkFilePermissions(fileNode, newParentName: options.nodeName, newParentReadOnly: readOnly)

        let identity = try blockFile.identity()
        try position.check(identity, path: fileNode.filename)
        let format: ImageFormat
        let probed = options.driver == nil
        if let driver = options.driver {
            format = try ImageFormat(name: driver)
        } else {
            format = try ImageFormat.probe(blockFile)
        }
        // QEMU's file locks: what this node needs of the file, with what
        // other format nodes over it need (the in-graph checks above came first).
        let access = user.forFile(of: format, writable: !readOnly, forceShare: forceShare)
        let sharedFile = parents(of: fileNode).contains { $0.file === fileNode }
        try blockFile.setAccess(sharedFile ? access.combined(with: blockFile.access) : access)
        let image: BlockImage
        switch format {
        case .qcow2:
            image = try Qcow2Image(file: blockFile)
        case .raw:
            let raw = try RawImage(file: blockFile)
            raw.isProbed = probed
            image = raw
        }

        let (name, generated) = try assignNodeName(options.nodeName)
        let node = BlockNode(nodeName: name, generated: generated, serial: takeSerial(), driver: format.rawValue,
                             filename: fileNode.filename, readOnly: readOnly,
                             cacheNoFlush: options.cacheNoFlush ?? false, blockFile: nil, image: image,
                             formatProbed: probed)
        node.file = fileNode
        node.user = user
        node.forceShare = forceShare
        nodes.append(node)

        if let qcow2 = node.qcow2 {
            try openBacking(of: node, qcow2, options.backing, at: position, identity: identity)
        } else if options.backing != .fromImage(nil) {
            throw BlockGraphError("Parameter 'backing' is unexpected")
        }
        return node
    }

    /// A `file` node; `position` as for `open` (a loop is reported as such
    /// before the lock conflict it also is).
    private func openFileNode(_ options: BlockdevOptions, readOnly: Bool,
                              at position: BackingChainPosition) throws -> BlockNode {
        guard let path = options.filename else { throw BlockGraphError("Parameter 'filename' is required") }
        if options.file != nil { throw BlockGraphError("Invalid parameter 'file'") }
        if options.forceShare == true && !readOnly {
            throw BlockGraphError("force-share=on can only be used with read-only images")
        }
        let blockFile = try ImageOpener.openFile(path: path, writable: !readOnly, locking: options.locking ?? .auto,
                                                  direct: options.cacheDirect ?? false, observer: fileObserver)
        blockFile.ignoresFlushes = options.cacheNoFlush ?? false
        var registered = false
        defer { if !registered { try? blockFile.close() } }
        try position.check(try blockFile.identity(), path: path)
        try checkFileLocks(blockFile, writable: !readOnly, except: nil)
        let image = try RawImage(file: blockFile)
        let (name, generated) = try assignNodeName(options.nodeName)
        let node = BlockNode(nodeName: name, generated: generated, serial: takeSerial(), driver: "file",
                             filename: path, readOnly: readOnly, cacheNoFlush: blockFile.ignoresFlushes,
                             blockFile: blockFile, image: image, formatProbed: false)
        nodes.append(node)
        registered = true
        return node
    }

    /// The backing child of `node` (at `position`, over the file `identity`).
    private func openBacking(of node: BlockNode, _ qcow2: Qcow2Image, _ choice: BackingChoice,
                             at position: BackingChainPosition, identity: FileIdentity) throws {
        let nest = { (error: any Error) -> any Error in BlockGraphError(BackingChain.nestedMessage(error)) }
        let link = BackingLink(name: qcow2.backingFileName, format: qcow2.backingFormat, overlayPath: node.filename)
        switch choice {
        case .none:
            qcow2.attachBacking(nil)
        case let .node(name):
            let backing = try BackingChain.nesting({ try lookup(device: name, nodeName: name) }, wrap: nest)
            try attach(backing, under: node, at: position)
        case let .fromImage(overrides):
            guard link != nil || overrides?.file != nil else {
                if overrides != nil && overrides != BlockdevOptions() {
                    throw nest(BlockGraphError("A block device must be specified for \"file\""))
                }
                qcow2.attachBacking(nil)
                break
            }
            let backing = try BackingChain.nesting({
                var options = overrides ?? BlockdevOptions()
                if options.file == nil, let link { options.file = .filename(try link.target()) }
                if options.driver == nil, let format = qcow2.backingFormat, !format.isEmpty { options.driver = format }
                return try open(options, defaultReadOnly: true, at: try position.backing(of: identity),
                                user: node.user.forBacking, inheritedForceShare: node.forceShare,
                                inheritedDirect: node.file?.blockFile?.isDirect ?? false,
                                inheritedNoFlush: node.file?.blockFile?.ignoresFlushes ?? false)
            }, wrap: nest)
            try attach(backing, under: node, at: position)
        }
        node.backingOverridden = backingIsOverridden(node)
    }

    /// Makes `backing` the backing child of `node` (at `position`), in memory.
    private func attach(_ backing: BlockNode, under node: BlockNode, at position: BackingChainPosition) throws {
        try position.checkDepth(below: 1 + chainDepth(backing))
        node.backing = backing
        node.qcow2?.attachBacking(backing.image)
    }

    /// Backing links below `node` (QEMU's backing_file_depth).
    func chainDepth(_ node: BlockNode) -> Int {
        var depth = 0
        var current = node.backing
        while let next = current {
            depth += 1
            current = next.backing
        }
        return depth
    }

    /// QEMU's bdrv_backing_overridden: the backing child is not what the
    /// header names (another file or format, or none where it names one).
    func backingIsOverridden(_ node: BlockNode) -> Bool {
        guard let qcow2 = node.qcow2 else { return false }
        let link = BackingLink(name: qcow2.backingFileName, format: qcow2.backingFormat, overlayPath: node.filename)
        guard let backing = node.backing else { return link != nil }
        guard let link else { return true }
        if BackingReference.resolve(link.name, relativeTo: node.filename) != backing.filename { return true }
        if let format = link.format, format != backing.driver { return true }
        return false
    }

    /// QEMU's permission check on a shared file node: a writing format
    /// node needs writes to the file unshared, so a second format node over
    /// it is refused unless both only read.
    private func checkFilePermissions(_ fileNode: BlockNode, newParentName: String?, newParentReadOnly: Bool) throws {
        guard let existing = parents(of: fileNode).first(where: { $0.file === fileNode }) else { return }
        guard !(existing.isReadOnly && newParentReadOnly) else { return }
        // Before the new node has its name, QEMU words it as the name given
        // (a generated name is not known yet either way).
        let newName = newParentName ?? ""
        let (writer, other) = existing.isReadOnly ? (newName, existing.nodeName) : (existing.nodeName, newName)
        let file = fileNode.nodeName
        throw BlockGraphError("Permission conflict on node '\(file)': permissions 'write, resize' are both required by "
            + "node '\(writer)' (uses node '\(file)' as 'file' child) and unshared by node '\(other)' "
            + "(uses node '\(file)' as 'file' child).")
    }

    private func takeSerial() -> UInt64 {
        defer { nextSerial += 1 }
        return nextSerial
    }
}
