// Fuzz target `nbd`: what a client sends to the NBD server, from the first
// byte of the handshake on (client flags, options, then requests once an
// export is chosen). One server runs for the whole process, on a unix socket
// in the scratch directory, with two 1 MiB exports in memory: "" writable,
// "ro" read-only with qemu:allocation-depth. Each input is sent on a new
// connection, whose writing side is then closed; everything the server
// answers is read until it closes the connection. What must hold, beyond no
// crash, hang or huge allocation: the server greets first, closes every
// connection once its input ends, and keeps no client afterwards; the
// first option reply carries the reply magic.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FuzzSupport
import NBD
import Synchronization

/// A disk in memory.
private final class MemoryDisk: NBDExportBackend {
    let bytes = Mutex([UInt8](repeating: 0, count: 1 << 20))
    let isReadOnly: Bool
    init(readOnly: Bool) { isReadOnly = readOnly }
    var size: UInt64 { 1 << 20 }
    var requestAlignment: UInt32 { 1 }
    var maxTransfer: UInt32 { NBDProtocol.maxBufferSize }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        bytes.withLock { disk in disk.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) } }
    }
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        bytes.withLock { disk in disk.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[Int(offset)...]).copyMemory(from: buffer) } }
    }
    func writeZeroes(at offset: UInt64, length: UInt64, mayTrim: Bool, fastZero: Bool, fua: Bool) throws {
        if fastZero && offset % 4096 != 0 { throw NBDExportError(.notSupported, "not aligned") }
        bytes.withLock { disk in for index in Int(offset)..<Int(offset + length) { disk[index] = 0 } }
    }
    func trim(at offset: UInt64, length: UInt64, fua: Bool) throws {}
    func flush() throws {}
    func cache(at offset: UInt64, length: UInt64) throws {}
    func allocation(at offset: UInt64, length: UInt64) throws -> NBDAllocationExtent {
        // Alternating 64 KiB runs of data and holes, to split reads into chunks.
        let run = min(length, 65536 - offset % 65536)
        let hole = (offset / 65536) % 2 == 1
        return NBDAllocationExtent(length: run, isHole: hole, isZero: hole)
    }
    func allocationDepth(at offset: UInt64, length: UInt64) throws -> NBDDepthExtent {
        NBDDepthExtent(length: min(length, 4096 - offset % 4096), depth: UInt32((offset / 4096) % 3))
    }
}

private let scratch = ScratchFiles.shared
nonisolated(unsafe) private var server: NBDServer?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzNBDInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    StandardStreams.silenceOutput()
    signal(SIGPIPE, SIG_IGN)
    var configuration = NBDServerConfiguration()
    configuration.handshakeTimeout = 5
    let started = NBDServer(configuration: configuration)
    do {
        try started.addExport(NBDExport(name: "", backend: MemoryDisk(readOnly: false)))
        try started.addExport(NBDExport(name: "ro", description: "read-only", backend: MemoryDisk(readOnly: true),
                                        allocationDepth: true))
        try started.listen(on: .unix(path: scratch.path("nbd.sock")))
    } catch {
        fatalError("cannot start the server: \(error)")
    }
    server = started
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNBD(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let server else { return 0 }
    var fuzzInput = FuzzInput(data, size)
    let input = fuzzInput.rest()
    let fd = connectToServer()
    defer { close(fd) }
    var sent = 0
    while sent < input.count {
        let count = input[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard count > 0 else { break }  // the server may hang up early
        sent += count
    }
    shutdown(fd, Int32(SHUT_WR))
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        // Keep the handshake's part; transmission replies may be large.
        if output.count < 1 << 16 { output += buffer[..<count] }
    }
    checkGreeting(output, input: input)
    // The connection is gone on the server's side too (its threads end).
    while server.clientCount > 0 { usleep(100) }
    return 0
}

private func connectToServer() -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let path = Array(scratch.path("nbd.sock").utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    fuzzRequire(connected == 0, "cannot connect to the server")
    return fd
}

/// The greeting comes first; when the client's first option is a plain one
/// (not EXPORT_NAME, whose answer has no magic) and the client flags were
/// valid, the first reply after the greeting carries the option reply magic.
private func checkGreeting(_ output: [UInt8], input: [UInt8]) {
    fuzzRequire(output.count >= 18, "no greeting")
    fuzzRequire(Array(output[0..<8]) == Array("NBDMAGIC".utf8), "greeting without NBDMAGIC")
    guard input.count >= 20, bigEndian(input, 0, 4) & ~3 == 0, bigEndian(input, 0, 4) & 1 == 1,
          bigEndian(input, 4, 8) == NBDProtocol.optionMagic, bigEndian(input, 16, 4) <= 4096,
          bigEndian(input, 12, 4) != 1, output.count >= 18 + 8 else { return }
    fuzzRequire(bigEndian(output, 18, 8) == NBDProtocol.optionReplyMagic, "an option reply without the reply magic")
}

private func bigEndian(_ bytes: [UInt8], _ at: Int, _ count: Int) -> UInt64 {
    var value: UInt64 = 0
    for index in at..<min(at + count, bytes.count) { value = value << 8 | UInt64(bytes[index]) }
    return value
}
