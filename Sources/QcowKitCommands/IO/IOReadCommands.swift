// read, readv and aio_read: read a range, optionally check it against a
// pattern byte and dump it, then report. `read` checks a sub-range
// (-s/-l) and can read the VM state area (-b); the vectored forms take
// several lengths read as one request.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

enum IOReadCommands {
    static let all: [IOCommand] = [
        IOCommand(name: "read", altname: "r", minArguments: 2, maxArguments: nil,
                  arguments: "[-abCqv] [-P pattern [-s off] [-l len]] off len",
                  oneline: "reads a number of bytes at a specified offset", help: IOHelpTexts.read,
                  polls: true, run: read),
        IOCommand(name: "readv", minArguments: 2, maxArguments: nil,
                  arguments: "[-Cqv] [-P pattern] off len [len..]",
                  oneline: "reads a number of bytes at a specified offset", help: IOHelpTexts.readv,
                  polls: true, run: { readVectored($0, $1, asynchronous: false) }),
        IOCommand(name: "aio_read", minArguments: 2, maxArguments: nil,
                  arguments: "[-Ciqv] [-P pattern] off len [len..]",
                  oneline: "asynchronously reads a number of bytes", help: IOHelpTexts.aioRead,
                  run: { readVectored($0, $1, asynchronous: true) }),
    ]

    private static func read(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var machine = false, quiet = false, dump = false, vmState = false
        var pattern: UInt8?
        var patternOffset: Int64?
        var patternLength: Int64?
        let parsed = command.parseOptions(words, in: session, [
            .set("b") { vmState = true },
            .set("C") { machine = true },
            .parsed("l", session.number) { patternLength = $0 },
            .set("p") {},   // accepted for compatibility
            .parsed("P", session.pattern) { pattern = $0 },
            .set("q") { quiet = true },
            .parsed("s", session.number) { patternOffset = $0 },
            .set("v") { dump = true },
        ])
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.count == 2 else { return command.usage(session) }
        guard let offset = session.number(operands[0]), let count = session.number(operands[1]) else { return false }
        guard count <= ioRequestMaxBytes else {
            session.console.out("length cannot exceed \(ioRequestMaxBytes), given \(operands[1])\n")
            return false
        }
        if pattern == nil && (patternLength != nil || patternOffset != nil) { return command.usage(session) }
        let checkOffset = patternOffset ?? 0
        let checkLength = patternLength ?? count - checkOffset
        let checkEnd = checkLength.addingReportingOverflow(checkOffset)
        guard checkLength >= 0, !checkEnd.overflow, checkEnd.partialValue <= count else {
            session.console.out("pattern verification range exceeds end of read data\n")
            return false
        }
        if vmState && !session.sectorAligned(offset: offset, count: count) { return false }
        guard let device = session.device else { return false }

        let (result, elapsed) = IOReport.Elapsed.measure { () -> Result<[UInt8], Error> in
            // QcowKit keeps no VM state: the area is not part of the guest disk it reads.
            Result {
                vmState ? try device.readVMState(offset: offset, count: Int(count))
                        : try device.read(offset: offset, count: Int(count))
            }
        }
        let bytes: [UInt8]
        switch result {
        case let .success(b): bytes = b
        case let .failure(error):
            session.console.out("read failed: \(IOSession.reason(for: error))\n")
            return false
        }
        var ok = true
        if let pattern {
            let start = Int(checkOffset), end = Int(checkOffset + checkLength)
            if bytes[start..<end].contains(where: { $0 != pattern }) {
                session.console.out("Pattern verification failed at offset \(offset + checkOffset), \(checkLength) bytes\n")
                ok = false
            }
        }
        if quiet { return ok }
        if dump { bytes.withUnsafeBytes { IOHexDump.dump($0, offset: offset, into: session.console) } }
        session.report("read", elapsed: elapsed, offset: offset, count: count, machine: machine)
        return ok
    }

    /// readv and aio_read: one request over the sum of the lengths. An
    /// asynchronous read always "succeeds" (its errors show in its report).
    private static func readVectored(_ session: IOSession, _ words: [String], asynchronous: Bool) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var machine = false, quiet = false, dump = false
        var pattern: UInt8?
        var table: [IOOption] = [
            .set("C") { machine = true },
            .parsed("P", session.pattern) { pattern = $0 },
            .set("q") { quiet = true },
            .set("v") { dump = true },
        ]
        if asynchronous {
            table.append(.check("i") {
                // Only counted in QEMU's statistics, which QcowKit does not keep.
                session.console.out("injecting invalid read request\n")
                return .finish(true)
            })
        }
        let parsed = command.parseOptions(words, in: session, table)
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.count >= 2 else { return command.usage(session) }
        guard let offset = session.number(operands[0]), let lengths = session.lengths(Array(operands.dropFirst())),
              let device = session.device
        else { return false }
        let count = lengths.reduce(0, +)

        let (result, elapsed) = IOReport.Elapsed.measure { Result { try device.read(offset: offset, count: count) } }
        let finish = { () -> Bool in
            let bytes: [UInt8]
            switch result {
            case let .success(b): bytes = b
            case let .failure(error):
                session.console.out("readv failed: \(IOSession.reason(for: error))\n")
                return false
            }
            var ok = true
            if let pattern, bytes.contains(where: { $0 != pattern }) {
                session.console.out("Pattern verification failed at offset \(offset), \(count) bytes\n")
                ok = false
            }
            if quiet { return ok }
            if dump { bytes.withUnsafeBytes { IOHexDump.dump($0, offset: offset, into: session.console) } }
            session.report("read", elapsed: elapsed, offset: offset, count: Int64(count), machine: machine)
            return ok
        }
        if asynchronous {
            session.deferReport { _ = finish() }
            return true
        }
        return finish()
    }
}
