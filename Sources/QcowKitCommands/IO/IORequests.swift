// What the read and write commands share: parsing offsets, lengths and
// length lists with qemu-io's messages, bounds checks as QEMU's block layer
// makes them (a request must end within the image: EIO otherwise), and
// printing a finished request's report.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

/// QEMU's largest single request (BDRV_REQUEST_MAX_BYTES): INT_MAX rounded
/// down to a whole number of 512-byte sectors.
let ioRequestMaxBytes: Int64 = 2_147_483_136

extension IOSession {
    /// A size argument, or nil after printing qemu-io's parsing error.
    func number(_ text: String) -> Int64? {
        switch IONumbers.size(text, warn: warn) {
        case let .success(value): return value
        case let .failure(error):
            console.out(IONumbers.message(for: error, in: text) + "\n")
            return nil
        }
    }

    /// A pattern byte argument, or nil after printing qemu-io's message.
    func pattern(_ text: String) -> UInt8? {
        guard let byte = IONumbers.patternByte(text) else {
            console.out(IONumbers.invalidPattern(text) + "\n")
            return nil
        }
        return byte
    }

    /// The lengths of a vectored request (readv, writev, aio_*), checked
    /// against the request limit one by one and in total.
    func lengths(_ texts: [String]) -> [Int]? {
        var lengths: [Int] = []
        var total: Int64 = 0
        for text in texts {
            guard let length = number(text) else { return nil }
            guard length <= ioRequestMaxBytes else {
                console.out("Argument '\(text)' exceeds maximum size \(ioRequestMaxBytes)\n")
                return nil
            }
            guard total <= ioRequestMaxBytes - length else {
                console.out("The total number of bytes exceed the maximum size \(ioRequestMaxBytes)\n")
                return nil
            }
            lengths.append(Int(length))
            total += length
        }
        return lengths
    }

    /// Prints a request's report unless quiet.
    func report(_ operation: String, elapsed: IOReport.Elapsed, offset: Int64, count: Int64,
                machine: Bool) {
        console.out(IOReport.report(operation, elapsed: elapsed, offset: offset, count: count,
                                    total: count, ops: 1, machine: machine))
    }

    /// Whether a -b or -c request is sector aligned; prints qemu-io's
    /// complaint otherwise.
    func sectorAligned(offset: Int64, count: Int64) -> Bool {
        if offset % 512 != 0 {
            console.out("\(offset) is not a sector-aligned value for 'offset'\n")
            return false
        }
        if count % 512 != 0 {
            console.out("\(count) is not a sector-aligned value for 'count'\n")
            return false
        }
        return true
    }
}

extension IODevice {
    /// Throws EIO (as QEMU's request checks do) unless the range ends within
    /// the image.
    func checkRequest(offset: Int64, count: Int64) throws {
        let size = image.size
        guard offset >= 0, count >= 0, UInt64(offset) <= size, UInt64(count) <= size - UInt64(offset) else {
            throw Qcow2Error.requestOutOfRange(offset: UInt64(max(offset, 0)), length: UInt64(max(count, 0)), size: size)
        }
    }

    /// Reads `count` bytes at `offset`.
    func read(offset: Int64, count: Int) throws -> [UInt8] {
        try checkRequest(offset: offset, count: Int64(count))
        var buffer = [UInt8](repeating: 0, count: count)
        if count > 0 {
            try buffer.withUnsafeMutableBytes { try image.read(into: $0, at: UInt64(offset)) }
        }
        return buffer
    }

    /// Reads the VM state area (qemu-io's -b): in qcow2, the guest address
    /// space past the disk. QcowKit reads it only where it is provably
    /// empty, which is the usual case: the active L1 table ends before it
    /// and no backing file reaches that far. Anything else is ENOTSUP, as
    /// is raw, which has no VM state.
    func readVMState(offset: Int64, count: Int) throws -> [UInt8] {
        try checkVMStateRequest(offset: offset, count: Int64(count))
        guard let qcow2 = image as? Qcow2Image else { throw Qcow2Error.io(step: "VM state", errno: ENOTSUP) }
        let header = qcow2.header
        let start = IOFormatSpecificInfo.vmStateOffset(header)
        let mapped = UInt64(header.l1Size) > header.requiredL1Entries
        let backingReaches = qcow2.chain.dropFirst().contains { start < 0 || $0.size > UInt64(start) }
        guard !mapped && !backingReaches else { throw Qcow2Error.io(step: "VM state", errno: ENOTSUP) }
        return [UInt8](repeating: 0, count: count)
    }

    /// Writing the VM state area (qemu-io's write -b) is not supported:
    /// raw has none, and QcowKit's qcow2 writer does not save VM state.
    func writeVMState(offset: Int64, count: Int64) throws {
        try checkVMStateRequest(offset: offset, count: count)
        throw Qcow2Error.io(step: "VM state", errno: ENOTSUP)
    }

    /// QEMU's bound on any request position (BDRV_MAX_LENGTH): EIO past it.
    private func checkVMStateRequest(offset: Int64, count: Int64) throws {
        let maxLength: Int64 = Int64.max & ~((1 << 30) - 1)
        guard offset <= maxLength, count <= maxLength - offset else {
            throw Qcow2Error.requestOutOfRange(offset: UInt64(offset), length: UInt64(count), size: image.size)
        }
    }

    /// The image's writer, or ENOTSUP for a format QcowKit cannot write yet.
    func writer() throws -> WritableBlockImage {
        guard let writable else { throw Qcow2Error.io(step: "write", errno: ENOTSUP) }
        return writable
    }
}
