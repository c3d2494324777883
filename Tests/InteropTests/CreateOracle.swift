// Runs qemu-img and the built qcowkit side by side for the creation interop
// tests: each in a directory of its own holding the same fixtures, so that
// relative file names (and hence messages) are the same.

import Foundation
import TestSupport

struct CreateRunResult: Equatable {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum CreateOracle {
    static var qemuImg: String { get throws { try TestTools.qemuImg() } }

    static func run(_ executable: String, _ arguments: [String], in directory: String) throws -> CreateRunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting, so that a full pipe cannot block the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CreateRunResult(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// qemu-img's messages with qcowkit's program name.
    static func renamed(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var l = String(line)
            if l.hasPrefix("qemu-img: ") { l = "qcowkit: " + l.dropFirst("qemu-img: ".count) }
            return l.replacingOccurrences(of: "Try 'qemu-img --help'", with: "Try 'qcowkit --help'")
                .replacingOccurrences(of: "You can use 'qemu-img rebase'", with: "You can use 'qcowkit rebase'")
        }.joined(separator: "\n")
    }

    /// Every regular file under `directory`, by relative path.
    static func files(in directory: String) -> [String: Data] {
        var result: [String: Data] = [:]
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: directory) else { return result }
        for case let name as String in walker {
            var isDirectory: ObjCBool = false
            let path = directory + "/" + name
            if fm.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                result[name] = fm.contents(atPath: path) ?? Data()
            }
        }
        return result
    }
}

/// Two scratch directories with the same fixtures: base.qcow2 (5 MiB),
/// base.raw (1000 bytes), sub/b2.qcow2 (7 MiB), broken.qcow2 (backed by a
/// missing gone.qcow2).
final class CreateOracleWorkspace {
    let root: String
    var qemuDirectory: String { root + "/qemu" }
    var ourDirectory: String { root + "/ours" }

    init() throws {
        root = NSTemporaryDirectory() + "qcowkit-create-interop-\(UUID().uuidString)"
        let fm = FileManager.default
        for dir in [qemuDirectory, ourDirectory] {
            try fm.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
            let raw = Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
            try raw.write(to: URL(fileURLWithPath: dir + "/base.raw"))
            for arguments in [["base.qcow2", "5M"], ["sub/b2.qcow2", "7M"],
                              ["-u", "-b", "gone.qcow2", "-F", "qcow2", "broken.qcow2", "1M"]] {
                let r = try CreateOracle.run(CreateOracle.qemuImg, ["create", "-q", "-f", "qcow2"] + arguments, in: dir)
                guard r.status == 0 else { throw CocoaError(.fileWriteUnknown) }
            }
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }
}
