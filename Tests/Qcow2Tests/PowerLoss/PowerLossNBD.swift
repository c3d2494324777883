// The power-loss workload of writes through an NBD export: the image, opened
// through a recorded file, served by the library's NBD server (in-process, on
// a unix socket, trims passed to the image as qemu-nbd --discard=unmap does),
// and a client issuing WRITE (a quarter of them with FUA), WRITE_ZEROES (with
// and without NO_HOLE, some with FUA), TRIM and FLUSH, one at a time, each
// reply awaited before the next request. What the NBD protocol promises and
// so every crash state must show: a write acknowledged before a FLUSH that
// was then acknowledged is durable, and a write acknowledged with FUA is
// durable once acknowledged; any other acknowledged write may read old or
// new, never a third value (GuestHistory's check, with FUA writes pinning
// their own sectors).
import Foundation
import NBD
import TestSupport
@testable import Qcow2

extension PowerLossWorkload {
    static let nbd: [PowerLossWorkload] = [
        PowerLossWorkload(name: "NBD export: writes, FUA writes, zero writes, trims, flushes (512 B clusters)",
                          kind: .nbd(requests: 40), qemuEvery: 8),
        PowerLossWorkload(name: "NBD export over a backing (4 KiB clusters, copy-on-write)", kind: .nbd(requests: 40),
                          clusterSize: 4096, backing: true, qemuEvery: 8),
    ]

    func nbd(_ run: RecordedRun, requests: Int, rng: inout SeededRandom) throws {
        let socket = URL(fileURLWithPath: run.path).deletingLastPathComponent().appendingPathComponent("nbd.sock").path
        let server = NBDServer()
        defer { server.stop() }
        try server.addExport(NBDExport(name: "powerloss",
                                       backend: ImageExportBackend(image: run.image, readOnly: false, discardUnmap: true)))
        try server.listen(on: .unix(path: socket))
        let client = try PowerLossNBDClient(socket: socket, export: "powerloss")
        defer { client.disconnect() }
        var sinceFlush = 0
        for i in 0..<requests {
            let (offset, count) = randomRange(&rng, maxSectors: Int(clusterSize / 512) * 3)
            let sectors = Int(offset / 512)..<(Int(offset / 512) + count / 512)
            let fua = Int.random(in: 0..<4, using: &rng) == 0
            var flags: NBDProtocol.CommandFlags = fua ? [.fua] : []
            let roll = Int.random(in: 0..<100, using: &rng)
            if roll < 60 {
                let bytes = WriteFixture.pattern(UInt8(truncatingIfNeeded: i + 1), count: count)
                try run.request("NBD write \(offset)+\(count)\(fua ? " FUA" : "")", pinned: fua ? sectors : nil) {
                    try client.command(.write, flags: flags, offset: offset, length: UInt32(count), payload: bytes)
                }
            } else if roll < 80 {
                if Bool.random(using: &rng) { flags.insert(.noHole) }
                try run.request("NBD write zeroes \(offset)+\(count)\(flags.contains(.noHole) ? " no-hole" : "")"
                                + (fua ? " FUA" : ""), pinned: fua ? sectors : nil) {
                    try client.command(.writeZeroes, flags: flags, offset: offset, length: UInt32(count))
                }
            } else {
                try run.request("NBD trim \(offset)+\(count)") {
                    try client.command(.trim, offset: offset, length: UInt32(count))
                }
            }
            sinceFlush += 1
            if sinceFlush >= Int.random(in: 2...6, using: &rng) {
                try run.request("NBD flush", durable: true) { try client.command(.flush, offset: 0, length: 0) }
                sinceFlush = 0
            }
        }
    }
}

/// The least NBD client the workload needs: fixed newstyle handshake with
/// NBD_OPT_EXPORT_NAME, then requests with simple replies, one at a time.
final class PowerLossNBDClient {
    private let transport: SocketTransport
    private var cookie: UInt64 = 0

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(socket path: String, export name: String) throws {
        transport = SocketTransport(descriptor: try UnixSocketConnect.connect(path: path))
        let greeting = try receive(18)
        guard Self.uint64(greeting, 0) == NBDProtocol.initialMagic, Self.uint64(greeting, 8) == NBDProtocol.optionMagic else {
            throw Failure(description: "not a newstyle NBD server")
        }
        try send(Self.bytes(NBDProtocol.clientFlagFixedNewstyle | NBDProtocol.clientFlagNoZeroes))
        try send(Self.bytes(NBDProtocol.optionMagic) + Self.bytes(UInt32(NBDProtocol.Option.exportName.rawValue))
            + Self.bytes(UInt32(name.utf8.count)) + Array(name.utf8))
        _ = try receive(10)  // the export's size and transmission flags
    }

    /// Closes the socket once (a handshake that failed, or after `disconnect`).
    deinit { transport.close() }

    /// Sends one request and waits for its reply; throws unless it succeeded.
    func command(_ type: NBDProtocol.Command, flags: NBDProtocol.CommandFlags = [], offset: UInt64, length: UInt32,
                 payload: [UInt8] = []) throws {
        cookie += 1
        try send(Self.bytes(NBDProtocol.requestMagic) + Self.bytes(flags.rawValue) + Self.bytes(type.rawValue)
            + Self.bytes(cookie) + Self.bytes(offset) + Self.bytes(length) + payload)
        let reply = try receive(16)
        let magic = UInt32(truncatingIfNeeded: Self.uint64(reply, 0) >> 32)
        let error = UInt32(truncatingIfNeeded: Self.uint64(reply, 0))
        guard magic == NBDProtocol.simpleReplyMagic, error == 0, Self.uint64(reply, 8) == cookie else {
            throw Failure(description: "\(type) at \(offset)+\(length): reply magic \(magic), error \(error)")
        }
    }

    func disconnect() {
        try? send(Self.bytes(NBDProtocol.requestMagic) + Self.bytes(UInt16(0))
            + Self.bytes(NBDProtocol.Command.disconnect.rawValue) + Self.bytes(UInt64(0)) + Self.bytes(UInt64(0))
            + Self.bytes(UInt32(0)))
        transport.close()
    }

    private func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try transport.writeAll($0, more: false) }
    }

    private func receive(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try transport.readExactly(into: $0) }
        return bytes
    }

    private static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    private static func uint64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
