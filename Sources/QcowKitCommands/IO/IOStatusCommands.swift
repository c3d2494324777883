// length, info, map and alloc: what the image is and which ranges the top
// image allocates. Allocation is QEMU's bdrv_is_allocated: this layer
// decides the range (data or zero clusters), whatever its backing holds.
import Qcow2

enum IOStatusCommands {
    static let all: [IOCommand] = [
        IOCommand(name: "length", altname: "l", minArguments: 0, maxArguments: 0,
                  oneline: "gets the length of the current file", run: length),
        IOCommand(name: "info", altname: "i", minArguments: 0, maxArguments: 0,
                  oneline: "prints information about the current file", run: info),
        IOCommand(name: "map", minArguments: 0, maxArguments: 0, arguments: "",
                  oneline: "prints the allocated areas of a file", polls: true, run: map),
        IOCommand(name: "alloc", altname: "a", minArguments: 1, maxArguments: 2, arguments: "offset [count]",
                  oneline: "checks if offset is allocated in the file", polls: true, run: alloc),
    ]

    /// An image this session marked corrupt has no driver left in QEMU:
    /// its length cannot be queried ("No medium found").
    private static func lostMedium(_ device: IODevice) -> Bool {
        (device.image as? Qcow2Image)?.corruptionSignaled == true
    }

    private static func length(_ session: IOSession, _ words: [String]) -> Bool {
        guard let device = session.device else { return false }
        if lostMedium(device) {
            session.console.out("getlength: No medium found\n")
            return false
        }
        session.console.out(IOReport.size(Double(device.image.size)) + "\n")
        return true
    }

    private static func info(_ session: IOSession, _ words: [String]) -> Bool {
        // Without a driver QEMU's bdrv_get_info fails, and info prints nothing.
        guard let device = session.device, !lostMedium(device) else { return false }
        let console = session.console
        console.out("format name: \(device.image.format.rawValue)\n")
        var clusterSize: UInt64 = 0
        var vmStateOffset: Int64 = 0
        if let qcow2 = device.image as? Qcow2Image {
            clusterSize = qcow2.header.clusterSize
            vmStateOffset = IOFormatSpecificInfo.vmStateOffset(qcow2.header)
        }
        console.out("cluster size: \(IOReport.size(Double(clusterSize)))\n")
        console.out("vm state offset: \(IOReport.size(Double(vmStateOffset)))\n")
        if let qcow2 = device.image as? Qcow2Image {
            do {
                console.out(try IOFormatSpecificInfo.text(qcow2, openedReadWrite: !device.readOnly))
            } catch {
                console.err("\(IOSession.program): \(error)")
                return false
            }
        }
        return true
    }

    /// Whether the top image allocates `offset` and for how many bytes that
    /// holds (0 at or past the end), as QEMU's bdrv_is_allocated.
    static func isAllocated(_ image: BlockImage, offset: Int64, bytes: Int64) throws -> (allocated: Bool, count: Int64) {
        let size = image.size
        guard offset >= 0, UInt64(offset) < size, bytes > 0 else { return (false, 0) }
        let status = try image.blockStatus(at: UInt64(offset), length: min(UInt64(bytes), size - UInt64(offset)))
        return (status.isAllocated, Int64(status.length))
    }

    private static func alloc(_ session: IOSession, _ words: [String]) -> Bool {
        guard let device = session.device, let start = session.number(words[1]) else { return false }
        var count: Int64 = 512
        if words.count == 3 {
            guard let value = session.number(words[2]) else { return false }
            count = value
        }
        var offset = start
        var remaining = count
        var allocated: Int64 = 0
        while remaining > 0 {
            let answer: (allocated: Bool, count: Int64)
            do {
                answer = try isAllocated(device.image, offset: offset, bytes: remaining)
            } catch {
                session.console.out("is_allocated failed: \(IOSession.reason(for: error))\n")
                return false
            }
            offset += answer.count
            remaining -= answer.count
            if answer.allocated { allocated += answer.count }
            if answer.count == 0 {
                // Past the end: only the part within the image counts.
                count -= remaining
                remaining = 0
            }
        }
        session.console.out("\(allocated)/\(count) bytes allocated at offset \(IOReport.size(Double(start)))\n")
        return true
    }

    private static func map(_ session: IOSession, _ words: [String]) -> Bool {
        guard let device = session.device else { return false }
        if lostMedium(device) {
            session.console.err("\(IOSession.program): Failed to query image length: No medium found")
            return false
        }
        var offset: Int64 = 0
        var bytes = Int64(device.image.size)
        while bytes > 0 {
            // One line per run of equal allocation, however many answers it takes.
            var run: Int64 = 0
            var allocated = false
            do {
                while run < bytes {
                    let answer = try isAllocated(device.image, offset: offset + run, bytes: bytes - run)
                    if answer.count == 0 || (run > 0 && answer.allocated != allocated) { break }
                    allocated = answer.allocated
                    run += answer.count
                }
            } catch {
                session.console.err("\(IOSession.program): Failed to get allocation status: \(IOSession.reason(for: error))")
                return false
            }
            guard run > 0 else {
                session.console.err("\(IOSession.program): Unexpected end of image")
                return false
            }
            let what = allocated ? "    allocated" : "not allocated"
            session.console.out("\(IOReport.size(Double(run))) (0x\(String(run, radix: 16))) bytes \(what) at offset "
                                + "\(IOReport.size(Double(offset))) (0x\(String(offset, radix: 16)))\n")
            offset += run
            bytes -= run
        }
        return true
    }
}
