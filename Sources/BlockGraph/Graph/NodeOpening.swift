// Opening nodes as QEMU's block layer does (bdrv_open_inherit and friends):
// a format node opens its `file` child first, then takes its name and place
// in the graph, then opens its backing: an existing node (backing=NODE),
// none (backing=null), or what the header names, read-only, with the format
// from the header's backing format extension or probed. An open either
// completes or leaves the graph as it was.

import Qcow2

extension BlockGraph {
    /// blockdev-add / -blockdev: the monitor holds the new node.
    @discardableResult
    public func addBlockdev(_ options: BlockdevOptions) throws -> BlockNode {
        guard options.nodeName != nil else { throw BlockGraphError("'node-name' must be specified for the root node") }
        let node = try transaction { try open(options, defaultReadOnly: false, chain: [], depth: 0) }
        monitorOwned.append(node)
        return node
    }

    /// -drive: a block backend named `id` (if given) holds the new node.
    /// `file` is usually `.filename(PATH)`; the format is probed when
    /// `driver` is nil.
    @discardableResult
    public func addDrive(_ options: BlockdevOptions, id: String?) throws -> BlockNode {
        if let id { try checkDriveID(id) }
        let node = try transaction { try open(options, defaultReadOnly: false, chain: [], depth: 0) }
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

    /// Opens one node and what it needs below it. `chain` holds the files of
    /// the overlays above (an image naming one of them as its backing loops).
    private func open(_ options: BlockdevOptions, defaultReadOnly: Bool, chain: Set<FileIdentity>,
                      depth: Int) throws -> BlockNode {
        let readOnly = options.readOnly ?? defaultReadOnly
        switch options.driver {
        case "file":
            return try openFileNode(options, readOnly: readOnly, chain: chain)
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
            fileNode = try openFileNode(protocolOptions, readOnly: protocolOptions.readOnly ?? readOnly, chain: chain)
        case let .filename(path)?:
            fileNode = try openFileNode(.file(path), readOnly: readOnly, chain: chain)
        case nil:
            throw BlockGraphError("A block device must be specified for \"file\"")
        }
        guard !fileNode.isFormatNode, let blockFile = fileNode.blockFile else {
            throw BlockGraphError("Driver '\(options.driver ?? "qcow2")' over the format node '\(fileNode.nodeName)' is not supported")
        }
        if !readOnly && fileNode.isReadOnly { throw BlockGraphError("Block node is read-only") }
        try checkFilePermissions(fileNode, newParentName: options.nodeName, newParentReadOnly: readOnly)

        let identity = try blockFile.identity()
        guard !chain.contains(identity) else { throw Qcow2Error.backingChainLoop(path: fileNode.filename) }
        let format: ImageFormat
        let probed = options.driver == nil
        if let driver = options.driver {
            format = try ImageFormat(name: driver)
        } else {
            format = try ImageFormat.probe(blockFile)
        }
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
                             filename: fileNode.filename, readOnly: readOnly, blockFile: nil, image: image,
                             formatProbed: probed)
        node.file = fileNode
        nodes.append(node)

        if let qcow2 = node.qcow2 {
            try openBacking(of: node, qcow2, options.backing, chain: chain.union([identity]), depth: depth)
        } else if options.backing != .fromImage(nil) {
            throw BlockGraphError("Parameter 'backing' is unexpected")
        }
        return node
    }

    /// A `file` node; `chain` as for `open` (a loop is reported as such
    /// before the lock conflict it also is).
    private func openFileNode(_ options: BlockdevOptions, readOnly: Bool, chain: Set<FileIdentity>) throws -> BlockNode {
        guard let path = options.filename else { throw BlockGraphError("Parameter 'filename' is required") }
        if options.file != nil { throw BlockGraphError("Invalid parameter 'file'") }
        let blockFile: BlockFile
        do {
            blockFile = try BlockFile(path: path, writable: !readOnly)
        } catch let Qcow2Error.io(_, code) {
            throw Qcow2Error.openFailed(path: path, errno: code)
        }
        var registered = false
        defer { if !registered { try? blockFile.close() } }
        guard !chain.contains(try blockFile.identity()) else { throw Qcow2Error.backingChainLoop(path: path) }
        try checkFileLocks(blockFile, writable: !readOnly, except: nil)
        let image = try RawImage(file: blockFile)
        let (name, generated) = try assignNodeName(options.nodeName)
        let node = BlockNode(nodeName: name, generated: generated, serial: takeSerial(), driver: "file",
                             filename: path, readOnly: readOnly, blockFile: blockFile, image: image, formatProbed: false)
        nodes.append(node)
        registered = true
        return node
    }

    private func openBacking(of node: BlockNode, _ qcow2: Qcow2Image, _ choice: BackingChoice,
                             chain: Set<FileIdentity>, depth: Int) throws {
        let stored = qcow2.backingFileName.map { String($0.unicodeScalars.prefix { $0 != "\0" }) } ?? ""
        switch choice {
        case .none:
            qcow2.attachBacking(nil)
        case let .node(name):
            let backing: BlockNode
            do {
                backing = try lookup(device: name, nodeName: name)
            } catch let error as BlockGraphError {
                throw BlockGraphError("Could not open backing file: \(error.message)")
            }
            try attach(backing, under: node, depth: depth)
        case let .fromImage(overrides):
            guard !stored.isEmpty || overrides?.file != nil else {
                if overrides != nil && overrides != BlockdevOptions() {
                    throw BlockGraphError("Could not open backing file: A block device must be specified for \"file\"")
                }
                qcow2.attachBacking(nil)
                break
            }
            var options = overrides ?? BlockdevOptions()
            if options.file == nil {
                guard !BackingReference.isPseudoProtocol(stored) else {
                    throw BlockGraphError("Could not open backing file: \(Qcow2Error.pseudoProtocolBackingRefused(stored))")
                }
                options.file = .filename(BackingReference.resolve(stored, relativeTo: node.filename))
            }
            if options.driver == nil, let format = qcow2.backingFormat, !format.isEmpty { options.driver = format }
            guard depth + 1 <= Qcow2Limits.maxBackingChainDepth else {
                throw Qcow2Error.backingChainTooDeep(limit: Qcow2Limits.maxBackingChainDepth)
            }
            let backing: BlockNode
            do {
                backing = try open(options, defaultReadOnly: true, chain: chain, depth: depth + 1)
            } catch let error as Qcow2Error {
                switch error {
                case .backingChainLoop, .backingChainTooDeep: throw error
                default: throw BlockGraphError("Could not open backing file: \(error)")
                }
            } catch let error as BlockGraphError {
                throw BlockGraphError("Could not open backing file: \(error.message)")
            }
            try attach(backing, under: node, depth: depth)
        }
        node.backingOverridden = backingIsOverridden(node)
    }

    /// Makes `backing` the backing child of `node`, in memory.
    private func attach(_ backing: BlockNode, under node: BlockNode, depth: Int) throws {
        guard depth + 1 + chainDepth(backing) <= Qcow2Limits.maxBackingChainDepth else {
            throw Qcow2Error.backingChainTooDeep(limit: Qcow2Limits.maxBackingChainDepth)
        }
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
        let stored = qcow2.backingFileName.map { String($0.unicodeScalars.prefix { $0 != "\0" }) } ?? ""
        guard let backing = node.backing else { return !stored.isEmpty }
        if stored.isEmpty { return true }
        if BackingReference.resolve(stored, relativeTo: node.filename) != backing.filename { return true }
        if let format = qcow2.backingFormat, !format.isEmpty, format != backing.driver { return true }
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
