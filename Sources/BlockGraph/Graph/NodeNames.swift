// Node names as QEMU checks and generates them (bdrv_assign_node_name,
// id_wellformed, id_generate).

extension BlockGraph {
    /// QEMU's node_name buffer is 32 bytes, NUL included.
    static let maxNodeNameLength = 31

    /// id_wellformed: a letter, then letters, digits, '-', '.', '_'.
    static func isWellFormedID(_ id: String) -> Bool {
        guard let first = id.unicodeScalars.first, first.isASCIILetter else { return false }
        return id.unicodeScalars.allSatisfy { $0.isASCIILetter || ("0"..."9").contains($0) || $0 == "-" || $0 == "." || $0 == "_" }
    }

    /// Checks a user-given node name against the graph, or generates one:
    /// QEMU's "#block" + a counter + two random digits (a '#' no user name
    /// can contain, so generated names never collide with given ones).
    func assignNodeName(_ given: String?) throws -> (name: String, generated: Bool) {
        guard let given else {
            while true {
                let name = "#block\(generatedNameCounter)" + String(format2: UInt8.random(in: 0..<100))
                generatedNameCounter += 1
                if node(named: name) == nil { return (name, true) }
            }
        }
        guard Self.isWellFormedID(given) else { throw BlockGraphError("Invalid node-name: '\(given)'") }
        if driveNames.contains(given) { throw BlockGraphError("node-name=\(given) is conflicting with a device id") }
        if node(named: given) != nil { throw BlockGraphError("Duplicate nodes with node-name='\(given)'") }
        if given.utf8.count > Self.maxNodeNameLength { throw BlockGraphError("Node name too long") }
        return (given, false)
    }

    /// monitor_add_blk's checks on a drive's id.
    func checkDriveID(_ id: String) throws {
        guard Self.isWellFormedID(id) else { throw BlockGraphError("Invalid device name") }
        if driveNames.contains(id) { throw BlockGraphError("Device with id '\(id)' already exists") }
        if node(named: id) != nil { throw BlockGraphError("Device name '\(id)' conflicts with an existing node name") }
    }
}

extension Unicode.Scalar {
    var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
}

extension String {
    /// Two decimal digits, zero-padded (printf's %02d for 0...99).
    init(format2 value: UInt8) {
        self = value < 10 ? "0\(value)" : "\(value)"
    }
}
