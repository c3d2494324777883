// What the NBD unit tests share: an in-memory export backend, a server on a
// unix socket in a scratch directory, and a raw client that speaks the
// protocol byte by byte (so tests can send what no real client would).
import Foundation
@testable import NBD
import Synchronization
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A disk in memory.
final class MemoryBackend: NBDExportBackend {
    let bytes: Mutex<[UInt8]>
    let isReadOnly: Bool
    init(size: Int, readOnly: Bool = false) {
        bytes = Mutex([UInt8](repeating: 0, count: size))
        isReadOnly = readOnly
    }
    var size: UInt64 { UInt64(bytes.withLock { $0.count }) }
    var requestAlignment: UInt32 { 1 }
    var maxTransfer: UInt32 { NBDProtocol.maxBufferSize }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        bytes.withLock { disk in
            for i in 0..<buffer.count { buffer[i] = disk[Int(offset) + i] }
        }
    }
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        bytes.withLock { disk in
            for i in 0..<buffer.count { disk[Int(offset) + i] = buffer[i] }
        }
    }
    func writeZeroes(at offset: UInt64, length: UInt64, mayTrim: Bool, fastZero: Bool, fua: Bool) throws {
        if fastZero { throw NBDExportError(.notSupported, "no fast zero") }
        bytes.withLock { disk in
            for i in Int(offset)..<Int(offset + length) { disk[i] = 0 }
        }
    }
    func trim(at offset: UInt64, length: UInt64, fua: Bool) throws {}
    func flush() throws {}
    func cache(at offset: UInt64, length: UInt64) throws {}
    func allocation(at offset: UInt64, length: UInt64) throws -> NBDAllocationExtent {
        NBDAllocationExtent(length: length, isHole: false, isZero: false)
    }
    func allocationDepth(at offset: UInt64, length: UInt64) throws -> NBDDepthExtent {
        NBDDepthExtent(length: length, depth: 1)
    }
}

/// A server on a unix socket in a scratch directory, stopped on release.
final class TestServer {
    let directory: String
    let socket: String
    let server: NBDServer

    init(configuration: NBDServerConfiguration = NBDServerConfiguration(), exports: [NBDExport] = []) throws {
        directory = NSTemporaryDirectory() + "qcowkit-nbd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/s.sock"
        server = NBDServer(configuration: configuration)
        for export in exports { try server.addExport(export) }
        try server.listen(on: .unix(path: socket))
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A client speaking raw bytes.
final class RawClient {
    let fd: Int32

    init(_ path: String) throws {
        do { fd = try UnixSocketConnect.connect(path: path) } catch { throw NBDTransportError.io(errno: error.errno) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let sent = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return }
            done += sent
        }
    }

    /// `count` bytes, or nil once the server has closed the connection.
    func receive(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes[done...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }

    /// True once the server closed the connection (reads until end of stream).
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let got = recv(fd, &byte, 1, 0)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return true }
        }
    }

    /// Whether the server has closed the connection by now (never blocks).
    func hasEnded() -> Bool {
        var byte: UInt8 = 0
        let got = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    }

    // MARK: Protocol steps

    /// Reads the greeting and answers with `flags`.
    func greet(flags: UInt32 = 3) -> Bool {
        guard let greeting = receive(18), greeting[0..<8] == Array("NBDMAGIC".utf8)[...] else { return false }
        send(be(flags))
        return true
    }

    func option(_ option: UInt32, _ payload: [UInt8]) {
        send(be(NBDProtocol.optionMagic) + be(option) + be(UInt32(payload.count)) + payload)
    }

    /// One option reply: type and payload.
    func optionReply() -> (type: UInt32, payload: [UInt8])? {
        guard let header = receive(20) else { return nil }
        var reader = WireReader(header)
        _ = reader.uint64(); _ = reader.uint32()
        let type = reader.uint32()!, length = reader.uint32()!
        guard let payload = receive(Int(length)) else { return nil }
        return (type, payload)
    }

    /// NBD_OPT_GO on `name`; the replies up to the final one.
    func go(_ name: String) -> [UInt32] {
        option(NBDProtocol.Option.go.rawValue, be(UInt32(name.utf8.count)) + Array(name.utf8) + be(UInt16(0)))
        var types: [UInt32] = []
        while let reply = optionReply() {
            types.append(reply.type)
            if reply.type != NBDProtocol.OptionReply.info.rawValue { break }
        }
        return types
    }

    func request(_ type: NBDProtocol.Command, flags: UInt16 = 0, cookie: UInt64 = 1, offset: UInt64, length: UInt32,
                 payload: [UInt8] = []) {
        send(be(NBDProtocol.requestMagic) + be(flags) + be(type.rawValue) + be(cookie) + be(offset) + be(length) + payload)
    }

    /// A simple reply: error and cookie.
    func simpleReply() -> (error: UInt32, cookie: UInt64)? {
        guard let bytes = receive(16) else { return nil }
        var reader = WireReader(bytes)
        _ = reader.uint32()
        return (reader.uint32()!, reader.uint64()!)
    }
}

func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}
