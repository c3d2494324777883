// write, writev, aio_write, discard, flush and aio_flush. Writes fill their
// buffer with a pattern byte (0xcd unless -P) or a file's bytes (-s), or
// write zeroes (-z, optionally unmapping with -u), or compressed clusters
// (-c). In qemu-io's default writethrough mode each request is flushed
// before it counts as done, and the flush is part of its timing.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Qcow2

enum IOWriteCommands {
    static let all: [IOCommand] = [
        IOCommand(name: "write", altname: "w", minArguments: 2, maxArguments: nil,
                  arguments: "[-bcCfnquz] [-P pattern | -s source_file] off len",
                  oneline: "writes a number of bytes at a specified offset", help: IOHelpTexts.write,
                  writes: true, polls: true, run: write),
        IOCommand(name: "writev", minArguments: 2, maxArguments: nil,
                  arguments: "[-Cfq] [-P pattern] off len [len..]",
                  oneline: "writes a number of bytes at a specified offset", help: IOHelpTexts.writev,
                  writes: true, polls: true, run: { writeVectored($0, $1, asynchronous: false) }),
        IOCommand(name: "aio_write", minArguments: 2, maxArguments: nil,
                  arguments: "[-Cfiquz] [-P pattern] off len [len..]",
                  oneline: "asynchronously writes a number of bytes", help: IOHelpTexts.aioWrite,
                  writes: true, run: { writeVectored($0, $1, asynchronous: true) }),
        IOCommand(name: "discard", altname: "d", minArguments: 2, maxArguments: nil,
                  arguments: "[-Cq] off len",
                  oneline: "discards a number of bytes at a specified offset", help: IOHelpTexts.discard,
                  writes: true, polls: true, run: discard),
        IOCommand(name: "truncate", altname: "t", minArguments: 1, maxArguments: 3,
                  arguments: "[-m prealloc_mode] off",
                  oneline: "truncates the current file at the given offset", writes: true, polls: true, run: truncate),
        IOCommand(name: "flush", altname: "f", minArguments: 0, maxArguments: 0,
                  oneline: "flush all in-core file state to disk", polls: true, run: flush),
        IOCommand(name: "aio_flush", minArguments: 0, maxArguments: 0,
                  oneline: "completes all outstanding aio requests", polls: true, run: { _, _ in true }),
    ]

    private static func write(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var machine = false, quiet = false, vmState = false, zeroes = false, compressed = false
        var forceUnitAccess = false, noFallback = false, mayUnmap = false
        var pattern: UInt8?
        var sourceFile: String?
        let parsed = command.parseOptions(words, in: session, [
            .set("b") { vmState = true },
            .set("c") { compressed = true },
            .set("C") { machine = true },
            .set("f") { forceUnitAccess = true },
            .set("n") { noFallback = true },
            .set("p") {},   // accepted for compatibility
            .parsed("P", session.pattern) { pattern = $0 },
            .set("q") { quiet = true },
            .value("s") { sourceFile = $0 },
            .set("u") { mayUnmap = true },
            .set("z") { zeroes = true },
        ])
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.count == 2 else { return command.usage(session) }
        let console = session.console
        if vmState && zeroes {
            console.out("-b and -z cannot be specified at the same time\n")
            return false
        }
        if forceUnitAccess && (vmState || compressed) {
            console.out("-f and -b or -c cannot be specified at the same time\n")
            return false
        }
        if noFallback && !zeroes {
            console.out("-n requires -z to be specified\n")
            return false
        }
        if mayUnmap && !zeroes {
            console.out("-u requires -z to be specified\n")
            return false
        }
        if [zeroes, pattern != nil, sourceFile != nil].filter({ $0 }).count > 1 {
            console.out("Only one of -z, -P, and -s can be specified at the same time\n")
            return false
        }
        guard let offset = session.number(operands[0]), let count = session.number(operands[1]) else { return false }
        if count > ioRequestMaxBytes && !noFallback {
            console.out("length cannot exceed \(ioRequestMaxBytes) without -n, given \(operands[1])\n")
            return false
        }
        if (vmState || compressed) && !session.sectorAligned(offset: offset, count: count) { return false }
        guard let device = session.device else { return false }
        var buffer: [UInt8] = []
        if !zeroes {
            // No bytes are read or allocated for a request that cannot fit.
            if (try? device.checkRequest(offset: offset, count: count)) != nil || sourceFile != nil {
                if let sourceFile {
                    guard let filled = IOPatternBuffer.fromFile(sourceFile, count: Int(count), console: console) else {
                        return false
                    }
                    buffer = filled
                } else {
                    buffer = IOPatternBuffer.filled(with: pattern ?? IOPatternBuffer.defaultWriteByte, count: Int(count))
                }
            }
        }

        let (result, elapsed) = IOReport.Elapsed.measure { () -> Result<Void, Error> in
            Result {
                if vmState { return try device.writeVMState(offset: offset, count: count) }
                try device.checkRequest(offset: offset, count: count)
                let writer = try device.writer()
                if zeroes {
                    // discard=ignore leaves the unmap hint of zero writes alone (as qemu-io 7.2).
                    if let raw = writer as? RawImage {
                        try raw.writeZeroes(at: UInt64(offset), length: UInt64(count), mayUnmap: mayUnmap,
                                            allowFallback: !noFallback)
                    } else {
                        try writer.writeZeroes(at: UInt64(offset), length: UInt64(count), mayUnmap: mayUnmap)
                    }
                } else if count > 0 {
                    try buffer.withUnsafeBytes { bytes in
                        if compressed {
                            try writer.writeCompressed(bytes, at: UInt64(offset))
                        } else {
                            try writer.write(bytes, at: UInt64(offset))
                        }
                    }
                }
                try device.completeWrite(forceUnitAccess: forceUnitAccess)
            }
        }
        if case let .failure(error) = result {
            console.out("write failed: \(IOSession.reason(for: error))\n")
            return false
        }
        if !quiet { session.report("wrote", elapsed: elapsed, offset: offset, count: count, machine: machine) }
        return true
    }

    /// writev and aio_write: one request over the sum of the lengths. An
    /// asynchronous write always "succeeds" (its errors show in its report).
    private static func writeVectored(_ session: IOSession, _ words: [String], asynchronous: Bool) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var machine = false, quiet = false, forceUnitAccess = false, zeroes = false, mayUnmap = false
        var pattern = IOPatternBuffer.defaultWriteByte
        var table: [IOOption] = [
            .set("C") { machine = true },
            .set("f") { forceUnitAccess = true },
            .set("q") { quiet = true },
            .parsed("P", session.pattern) { pattern = $0 },
        ]
        if asynchronous {
            table += [
                .check("i") {
                    // Only counted in QEMU's statistics, which QcowKit does not keep.
                    session.console.out("injecting invalid write request\n")
                    return .finish(true)
                },
                .set("u") { mayUnmap = true },
                .set("z") { zeroes = true },
            ]
        }
        let parsed = command.parseOptions(words, in: session, table)
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.count >= 2 else { return command.usage(session) }
        if zeroes && operands.count != 2 {
            session.console.out("-z supports only a single length parameter\n")
            return false
        }
        if mayUnmap && !zeroes {
            session.console.out("-u requires -z to be specified\n")
            return false
        }
        guard let offset = session.number(operands[0]), let device = session.device else { return false }
        let count: Int64
        if zeroes {
            // aio_write -z takes any length; the block layer judges it.
            guard let length = session.number(operands[1]) else { return false }
            count = length
        } else {
            guard let lengths = session.lengths(Array(operands.dropFirst())) else { return false }
            count = Int64(lengths.reduce(0, +))
        }

        let (result, elapsed) = IOReport.Elapsed.measure { () -> Result<Void, Error> in
            Result {
                try device.checkRequest(offset: offset, count: count)
                let writer = try device.writer()
                if zeroes {
                    try writer.writeZeroes(at: UInt64(offset), length: UInt64(count), mayUnmap: mayUnmap)
                } else if count > 0 {
                    try IOPatternBuffer.filled(with: pattern, count: Int(count)).withUnsafeBytes {
                        try writer.write($0, at: UInt64(offset))
                    }
                }
                try device.completeWrite(forceUnitAccess: forceUnitAccess)
            }
        }
        let failure = asynchronous ? "aio_write failed" : "writev failed"
        let finish = { () -> Bool in
            if case let .failure(error) = result {
                session.console.out("\(failure): \(IOSession.reason(for: error))\n")
                return false
            }
            if !quiet { session.report("wrote", elapsed: elapsed, offset: offset, count: count, machine: machine) }
            return true
        }
        if asynchronous {
            session.deferReport { _ = finish() }
            return true
        }
        return finish()
    }

    private static func discard(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var machine = false, quiet = false
        let parsed = command.parseOptions(words, in: session, [
            .set("C") { machine = true },
            .set("q") { quiet = true },
        ])
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard operands.count == 2 else { return command.usage(session) }
        guard let offset = session.number(operands[0]), let count = session.number(operands[1]) else { return false }
        guard count <= ioRequestMaxBytes else {
            session.console.out("length cannot exceed \(ioRequestMaxBytes), given \(operands[1])\n")
            return false
        }
        guard let device = session.device else { return false }
        let (result, elapsed) = IOReport.Elapsed.measure { () -> Result<Void, Error> in
            Result {
                try device.checkRequest(offset: offset, count: count)
                // With discard=ignore the request succeeds without effect.
                guard device.options.unmap, count > 0 else { return }
                try device.writer().discard(at: UInt64(offset), length: UInt64(count))
                try device.completeWrite(forceUnitAccess: false)
            }
        }
        if case let .failure(error) = result {
            session.console.out("discard failed: \(IOSession.reason(for: error))\n")
            return false
        }
        if !quiet { session.report("discard", elapsed: elapsed, offset: offset, count: count, machine: machine) }
        return true
    }

    /// blk_truncate to the first operand (exact=false, as qemu-io 7.2 asks):
    /// grows or shrinks the image, with -m's preallocation when growing.
    private static func truncate(_ session: IOSession, _ words: [String]) -> Bool {
        guard let command = IOCommands.find(words[0]) else { return false }
        var preallocation = Preallocation.off
        var badMode: String?
        let parsed = command.parseOptions(words, in: session, [
            .value("m") { mode in
                if let known = Preallocation(rawValue: mode) { preallocation = known } else { badMode = mode }
            },
        ])
        if let badMode {
            session.console.err("\(IOSession.program): Invalid preallocation mode '\(badMode)'")
            return false
        }
        guard case let .operands(operands) = parsed else { return parsed.result }
        guard let first = operands.first else { return command.usage(session) }
        guard let size = session.number(first), let device = session.device else { return false }
        do {
            switch device.image {
            case let qcow2 as Qcow2Image: try qcow2.truncate(to: UInt64(size), preallocation: preallocation)
            case let raw as RawImage: try raw.truncate(to: UInt64(size), preallocation: preallocation)
            default: throw Qcow2Error.readOnly
            }
        } catch {
            session.console.err("\(IOSession.program): \(error)")
            return false
        }
        return true
    }

    /// Errors are not printed, only reflected in the exit status (as qemu-io).
    private static func flush(_ session: IOSession, _ words: [String]) -> Bool {
        guard let device = session.device else { return false }
        return (try? device.flush()) != nil
    }
}
