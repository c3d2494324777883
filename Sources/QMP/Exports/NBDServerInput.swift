// The QAPI arguments of the NBD server and block export commands
// (qapi/block-export.json, qapi/sockets.json), members visited in the
// schema's order:
//   nbd-server-start: addr (SocketAddressLegacy: type, data), tls-creds,
//                     tls-authz, max-connections (uint32)
//   --nbd-server:     the same with addr a flat SocketAddress (type and members)
//   block-export-add / --export: type, id, fixed-iothread, iothread,
//                     node-name, writable, writethrough; for nbd: name,
//                     description, bitmaps, allocation-depth
import NBD
import QemuJSON

enum NBDServerInput {
    static let addressTypes = ["inet", "unix", "vsock", "fd"]
    static let exportTypes = ["nbd", "vhost-user-blk", "fuse"]

    static func start(_ input: inout QAPIInput, flatAddress: Bool) throws -> NBDServerStartOptions {
        guard var addr = try input.optionalObject("addr", typeName: flatAddress ? "SocketAddress" : "SocketAddressLegacy") else {
            throw input.missing("addr")
        }
        let address = try socketAddress(&addr, flat: flatAddress)
        var options = NBDServerStartOptions(address: address)
        options.tlsCreds = try input.optionalString("tls-creds")
        options.tlsAuthz = try input.optionalString("tls-authz")
        if let limit = try input.optionalInt64("max-connections") {
            guard limit >= 0, limit <= Int64(UInt32.max) else { throw input.invalidValue("max-connections", expects: "uint32_t") }
            options.maxConnections = Int(limit)
        }
        try input.finish()
        return options
    }

    /// A socket address: legacy (`data` holds the members) or flat.
    private static func socketAddress(_ input: inout QAPIInput, flat: Bool) throws -> NBDListenAddress {
        guard let type = try input.optionalEnum("type", addressTypes) else { throw input.missing("type") }
        var members: QAPIInput
        if flat {
            members = input
        } else {
            let typeName = ["inet": "InetSocketAddressWrapper", "unix": "UnixSocketAddressWrapper"][type] ?? "SocketAddressWrapper"
            guard let data = try input.optionalObject("data", typeName: typeName) else { throw input.missing("data") }
            try input.finish()
            members = data
        }
        let address: NBDListenAddress
        switch type {
        case "unix":
            let path = try members.string("path")
            if try members.optionalBool("abstract") == true {
                throw QMPError.generic("abstract unix sockets are not supported by qcowkit")
            }
            _ = try members.optionalBool("tight")
            address = .unix(path: path)
        case "inet":
            let host = try members.string("host")
            let port = try members.string("port")
            _ = try members.optionalBool("numeric")
            if try members.optionalInt64("to") != nil { throw QMPError.generic("port ranges ('to') are not supported by qcowkit") }
            _ = try members.optionalBool("ipv4")
            _ = try members.optionalBool("ipv6")
            _ = try members.optionalBool("keep-alive")
            guard let number = UInt16(port) else {
                throw QMPError.generic("address resolution failed for \(host):\(port): Servname not supported for ai_socktype")
            }
            address = .inet(host: host, port: number)
        default:
            throw QMPError.generic("socket address type '\(type)' is not supported by qcowkit")
        }
        try members.finish()
        return address
    }

    static func export(_ input: inout QAPIInput) throws -> BlockExportOptions {
        guard let type = try input.optionalEnum("type", exportTypes) else { throw input.missing("type") }
        let id = try input.string("id")
        let fixed = try input.optionalBool("fixed-iothread")
        if let iothread = try input.optionalString("iothread") {
            throw QMPError.generic("iothread \"\(iothread)\" not found")
        }
        _ = fixed
        let nodeName = try input.string("node-name")
        var options = BlockExportOptions(id: id, nodeName: nodeName)
        options.writable = try input.optionalBool("writable") ?? false
        options.writethrough = try input.optionalBool("writethrough") ?? false
        guard type == "nbd" else {
            throw QMPError.generic("export type '\(type)' is not supported by qcowkit")
        }
        options.name = try input.optionalString("name")
        options.description = try input.optionalString("description")
        if let value = input.take("bitmaps") {
            guard case let .array(items) = value else { throw input.wrongType("bitmaps", expected: "array") }
            options.bitmaps = try items.enumerated().map { index, item in
                guard case let .string(name) = item else { throw input.wrongType("bitmaps[\(index)]", expected: "string") }
                return name
            }
        }
        options.allocationDepth = try input.optionalBool("allocation-depth") ?? false
        try input.finish()
        return options
    }
}
