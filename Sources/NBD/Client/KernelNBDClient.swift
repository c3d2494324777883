// qemu-nbd -c and -d: the Linux kernel's NBD client (/dev/nbdN), driven as
// qemu-nbd.c and nbd/client.c drive it. `-c`: connect to our own server,
// negotiate the export as QEMU's client does for the kernel (NBD_OPT_GO,
// no structured replies, no block sizes asked), hand the socket, the block
// size, the size and the transmission flags to the device (nbd_init), then
// let the kernel serve until it disconnects (NBD_DO_IT, nbd_client). `-d`:
// NBD_CLEAR_QUE, NBD_DISCONNECT, NBD_CLEAR_SOCK, errors ignored
// (nbd_disconnect). The one file that calls ioctl for NBD.
import CSystemShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum KernelNBDClient {
    /// What a failed step reports, in QEMU's words.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// What the server said of the export (NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE).
    public struct ExportInfo: Sendable {
        public var size: UInt64 = 0
        public var flags: UInt16 = 0
        public var minimumBlock: UInt32 = 0
    }

    /// Connects to the unix socket at `path`; the connected descriptor.
    public static func connect(unixPath path: String) throws -> Int32 {
        do { return try UnixStreamSocket.connect(path: path) } catch { throw Failure(error.message) }
    }

    /// Fixed newstyle negotiation of `exportName` on `fd`, as QEMU's client
    /// runs it for the kernel: NBD_OPT_GO with no information requests.
    public static func negotiate(fd: Int32, exportName: String) throws -> ExportInfo {
        var greeting = WireReader(try receive(fd, 18))
        guard greeting.uint64() == NBDProtocol.initialMagic, greeting.uint64() == NBDProtocol.optionMagic,
              let serverFlags = greeting.uint16(), serverFlags & NBDProtocol.flagFixedNewstyle != 0 else {
            throw Failure("Server does not support fixed newstyle negotiation")
        }
        var clientFlags = NBDProtocol.clientFlagFixedNewstyle
        if serverFlags & NBDProtocol.flagNoZeroes != 0 { clientFlags |= NBDProtocol.clientFlagNoZeroes }
        var request = WireWriter()
        request.append(clientFlags)
        let name = Array(exportName.utf8)
        request.append(NBDProtocol.optionMagic)
        request.append(NBDProtocol.Option.go.rawValue)
        request.append(UInt32(4 + name.count + 2))
        request.append(UInt32(name.count))
        request.append(bytes: name)
        request.append(UInt16(0))
        try send(fd, request.bytes)
        var info = ExportInfo()
        var sawExport = false
        while true {
            var header = WireReader(try receive(fd, 20))
            guard header.uint64() == NBDProtocol.optionReplyMagic, header.uint32() == NBDProtocol.Option.go.rawValue,
                  let type = header.uint32(), let length = header.uint32(), length <= UInt32(NBDProtocol.maxStringSize) + 64 else {
                throw Failure("Unexpected reply to NBD_OPT_GO")
            }
            let payload = try receive(fd, Int(length))
            if type == NBDProtocol.OptionReply.ack.rawValue {
                guard sawExport else { throw Failure("server did not send NBD_INFO_EXPORT") }
                return info
            }
            if type & (1 << 31) != 0 {
                // nbd_handle_reply_err: QEMU's words, the server's message as a hint, then NBD_OPT_ABORT.
                var abort = WireWriter()
                abort.append(NBDProtocol.optionMagic)
                abort.append(NBDProtocol.Option.abort.rawValue)
                abort.append(UInt32(0))
                try? send(fd, abort.bytes)
                let message = payload.isEmpty ? "" : "\nserver reported: \(String(decoding: payload, as: UTF8.self))"
                throw Failure(replyError(type) + message)
            }
            guard type == NBDProtocol.OptionReply.info.rawValue else { continue }
            var reader = WireReader(payload)
            switch reader.uint16().flatMap(NBDProtocol.Info.init(rawValue:)) {
            case .export?:
                guard let size = reader.uint64(), let flags = reader.uint16() else { throw Failure("Invalid NBD_INFO_EXPORT") }
                info.size = size
                info.flags = flags
                sawExport = true
            case .blockSize?:
                guard let minimum = reader.uint32() else { throw Failure("Invalid NBD_INFO_BLOCK_SIZE") }
                info.minimumBlock = minimum
            default:
                break
            }
        }
    }

    /// An error reply to NBD_OPT_GO as QEMU's client words it.
    private static func replyError(_ type: UInt32) -> String {
        let option = "option 7 (go)"
        switch type & ~(1 << 31) {
        case 2: return "Denied by server for \(option)"
        case 3: return "Invalid parameters for \(option)"
        case 4: return "Server lacks support for \(option)"
        case 5: return "TLS negotiation required before \(option)"
        case 6: return "Requested export not available"
        case 7: return "Server shutting down before \(option)"
        case 8: return "Server requires INFO_BLOCK_SIZE for \(option)"
        default: return "Unknown error code when asking for \(option)"
        }
    }

    /// nbd_init: the socket and the export's geometry and flags handed to
    /// the device `device` (open read-write).
    public static func handOff(device: Int32, socket: Int32, info: ExportInfo) throws {
        let sectorSize = UInt(max(512, info.minimumBlock))
        let sectors = UInt(info.size) / sectorSize
        guard qk_ioctl(device, qk_nbd_set_sock, UInt(socket)) >= 0 else { throw Failure("Failed to set NBD socket") }
        guard qk_ioctl(device, qk_nbd_set_blksize, sectorSize) >= 0 else { throw Failure("Failed setting NBD block size") }
        guard qk_ioctl(device, qk_nbd_set_size_blocks, sectors) >= 0 else {
            throw Failure("Failed setting size (in blocks)")
        }
        if qk_ioctl(device, qk_nbd_set_flags, UInt(info.flags)) < 0 {
            guard errno == ENOTTY else { throw Failure("Failed setting flags") }
            // Older kernels: the read-only attribute alone.
            var readOnly: Int32 = info.flags & NBDProtocol.TransmissionFlags.readOnly.rawValue != 0 ? 1 : 0
            let set = withUnsafeMutablePointer(to: &readOnly) { qk_ioctl(device, qk_blkroset, UInt(bitPattern: $0)) }
            guard set >= 0 else { throw Failure("Failed setting read-only attribute") }
        }
    }

    /// nbd_client: the kernel serves the device until it is disconnected;
    /// true when it ended cleanly (NBD_DISCONNECT's EPIPE counts as clean).
    public static func serve(device: Int32) -> Bool {
        let result = qk_ioctl(device, qk_nbd_do_it, 0)
        let clean = result >= 0 || errno == EPIPE
        _ = qk_ioctl(device, qk_nbd_clear_que, 0)
        _ = qk_ioctl(device, qk_nbd_clear_sock, 0)
        return clean
    }

    /// nbd_disconnect: asks the kernel to drop the device's connection.
    public static func disconnect(device: Int32) {
        _ = qk_ioctl(device, qk_nbd_clear_que, 0)
        _ = qk_ioctl(device, qk_nbd_disconnect, 0)
        _ = qk_ioctl(device, qk_nbd_clear_sock, 0)
    }

    private static func receive(_ fd: Int32, _ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes[done...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw Failure("Failed to read from the server: \(got == 0 ? "end of file" : String(cString: strerror(errno)))") }
            done += got
        }
        return bytes
    }

    private static func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let sent = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 && errno == EINTR { continue }
            guard sent > 0 else { throw Failure("Failed to write to the server: \(String(cString: strerror(errno)))") }
            done += sent
        }
    }
}
