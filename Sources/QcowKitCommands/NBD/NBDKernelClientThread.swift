// qemu-nbd -c's client thread (qemu-nbd.c nbd_client_thread): it connects to
// the server qemu-nbd itself runs, negotiates the export named "" (as
// qemu-nbd's does, whatever -x says), opens the device, hands the
// connection to the kernel (KernelNBDClient) and waits while the kernel
// serves it. Then, or on any failure, it ends the server with SIGTERM; its
// outcome is the program's exit status. Without -v the process forked
// first, and the parent exits once the device is connected (or with the
// error that stopped it).
import BlockGraph
import Qcow2
import NBD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class KernelClientThread: Sendable {
    private let result = JobLock<Bool?>(nil)

    /// Starts the thread for `device`, which connects to the unix socket
    /// `socket`. `verbose`: report the connection on standard error (-v
    /// without --fork); otherwise `detach` (the -c fork) lets the parent go.
    static func start(device: String, socket: String, image: String, verbose: Bool,
                      detach: NBDDaemon?) throws -> KernelClientThread {
        let thread = KernelClientThread()
        guard spawnWorkerThread({
            let connected = thread.connectAndServe(device: device, socket: socket, image: image, verbose: verbose,
                                                   detach: detach)
            thread.result.withLock { result, waiter in
                result = connected
                waiter.broadcast()
            }
            kill(getpid(), SIGTERM)  // ends the server, as qemu-nbd's thread does
        }) else {
            throw CommandFailure("Failed to create client thread: \(String(cString: strerror(EAGAIN)))")
        }
        return thread
    }

    /// Whether the device was connected and served to its end.
    func waitForResult() -> Bool {
        result.withLock(when: { $0 != nil }) { result, _ in result ?? false }
    }

    private func connectAndServe(device: String, socket path: String, image: String, verbose: Bool,
                                 detach: NBDDaemon?) -> Bool {
        func report(_ message: String) -> Bool {
            Terminal.printError(ProgramName.prefixed(message))
            return false
        }
        let socket: Int32
        do { socket = try KernelNBDClient.connect(unixPath: path) } catch { return report("\(error)") }
        defer { close(socket) }
        let info: KernelNBDClient.ExportInfo
        do { info = try KernelNBDClient.negotiate(fd: socket, exportName: "") } catch { return report("\(error)") }
        let fd = open(device, O_RDWR)
        guard fd >= 0 else { return report("Failed to open \(device): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        do { try KernelNBDClient.handOff(device: fd, socket: socket, info: info) } catch { return report("\(error)") }
        // An open of the device makes the kernel read its partition table (show_parts).
        _ = spawnWorkerThread {
            let partitions = open(device, O_RDWR)
            if partitions >= 0 { close(partitions) }
        }
        if verbose {
            Terminal.printError("NBD device \(device) is now connected to \(image)")
        } else {
            detach?.detach()
        }
        return KernelNBDClient.serve(device: fd)
    }
}
