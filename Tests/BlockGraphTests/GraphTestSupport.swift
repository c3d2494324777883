// Fixtures for the graph and commit tests: scratch directories, qemu-img and
// qemu-io as fixture makers and oracle, and the acceptance scenario's images.
import Foundation
@testable import BlockGraph
import TestSupport

final class GraphScratch {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qcowkit-graph-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    deinit { try? FileManager.default.removeItem(at: url) }
}

struct ToolFailed: Error, CustomStringConvertible {
    var description: String
}

enum Tool {
    /// Runs a program from PATH; returns stdout, throws on a non-zero exit.
    @discardableResult
    static func run(_ arguments: [String], check: Bool = true) throws -> (status: Int32, output: String) {
        let process = Process()
        let (executable, resolved) = try TestTools.resolve(arguments)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = resolved
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errData = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        let output = String(decoding: outData, as: UTF8.self) + String(decoding: errData.data, as: UTF8.self)
        if check && process.terminationStatus != 0 {
            throw ToolFailed(description: "\(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(output)")
        }
        return (process.terminationStatus, output)
    }

    static func create(_ path: String, size: String = "64M", backing: String? = nil) throws {
        var arguments = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if let backing { arguments += ["-b", backing, "-F", "qcow2"] }
        try run(arguments + [path, size])
    }

    static func qemuIO(_ path: String, _ command: String) throws {
        let result = try run(["qemu-io", "-f", "qcow2", "-c", command, path])
        if result.output.contains("error") || result.output.contains("failed") {
            throw ToolFailed(description: "qemu-io \(command): \(result.output)")
        }
    }

    /// Reads through the whole chain with qemu-io's read -P pattern check.
    static func expectPattern(_ path: String, _ pattern: UInt8, offset: String, length: String) throws {
        let result = try run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P \(pattern) \(offset) \(length)", path])
        if result.output.contains("Pattern verification failed") || result.output.contains("error") {
            throw ToolFailed(description: "pattern \(pattern) at \(offset) in \(path): \(result.output)")
        }
    }

    /// `qemu-img check` exit status 0 and "No errors were found".
    static func checkClean(_ path: String) throws {
        let result = try run(["qemu-img", "check", path], check: false)
        guard result.status == 0, result.output.contains("No errors were found") else {
            throw ToolFailed(description: "qemu-img check \(path): \(result.output)")
        }
    }

    /// `qemu-img info`'s backing file and backing format lines.
    static func backing(of path: String) throws -> (file: String?, format: String?) {
        let output = try run(["qemu-img", "info", "-U", path]).output
        var file: String?
        var format: String?
        for line in output.split(separator: "\n") {
            if line.hasPrefix("backing file: ") { file = String(line.dropFirst("backing file: ".count)) }
            if line.hasPrefix("backing file format: ") { format = String(line.dropFirst("backing file format: ".count)) }
        }
        return (file, format)
    }
}

/// The acceptance scenario's images (spec/README.md): base, mid (backing
/// base, 64 KiB of 0x55 at 1 MiB), top and ovl2 (backing mid), with ovl3
/// (backing ovl2) for the -drive part.
struct ScenarioImages {
    let scratch: GraphScratch
    var top: String { scratch.file("t.qcow2") }
    var base: String { top + ".base" }
    var mid: String { top + ".mid" }
    var ovl2: String { top + ".ovl2" }
    var ovl3: String { top + ".ovl3" }

    init(withOvl3: Bool = false) throws {
        scratch = try GraphScratch()
        try Tool.create(base)
        try Tool.create(mid, backing: base)
        try Tool.create(top, backing: mid)
        try Tool.create(ovl2, backing: mid)
        if withOvl3 { try Tool.create(ovl3, backing: ovl2) }
        try Tool.qemuIO(mid, "write -P 0x55 1M 64k")
    }

    static func qcow2(_ path: String, _ name: String, backing: BackingChoice = .fromImage(nil)) -> BlockdevOptions {
        BlockdevOptions(driver: "qcow2", nodeName: name, file: .options(.file(path)), backing: backing)
    }

    /// Part 1: four -blockdev nodes.
    func blockdevGraph() throws -> BlockGraph {
        let graph = BlockGraph()
        try graph.addBlockdev(Self.qcow2(base, "base"))
        try graph.addBlockdev(Self.qcow2(mid, "mid", backing: .node("base")))
        try graph.addBlockdev(Self.qcow2(top, "top", backing: .node("mid")))
        try graph.addBlockdev(Self.qcow2(ovl2, "top2", backing: .node("mid")))
        return graph
    }

    /// Part 2: two -drive roots.
    func driveGraph() throws -> BlockGraph {
        let graph = BlockGraph()
        try graph.addDrive(BlockdevOptions(driver: "qcow2", nodeName: "top", file: .filename(top),
                                           backing: .fromImage(BlockdevOptions(nodeName: "mid"))), id: nil)
        try graph.addDrive(BlockdevOptions(driver: "qcow2", nodeName: "top2", file: .filename(ovl3),
                                           backing: .fromImage(BlockdevOptions(backing: .node("mid")))), id: nil)
        return graph
    }
}
