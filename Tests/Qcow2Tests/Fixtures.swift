// Shared fixtures for the header tests: one valid image header (the one
// `qemu-img create -f qcow2 x 64M` writes), byte patching, and qemu-img as an
// oracle run in a fresh temporary directory.
import Foundation
import Testing
@testable import Qcow2
import TestSupport

enum Fixtures {
    /// File size of the 64 MiB image qemu-img creates: header cluster,
    /// refcount table, one refcount block, then the 8-byte L1 table.
    static let fileSize: UInt64 = 0x30008

    /// The fixed header of `qemu-img create -f qcow2 x 64M` (QEMU 7.2).
    static func validHeader() -> Qcow2Header {
        var h = Qcow2Header(version: 3, clusterBits: 16, size: 64 << 20)
        h.l1Size = 1
        h.l1TableOffset = 0x30000
        h.refcountTableOffset = 0x10000
        h.refcountTableClusters = 1
        return h
    }

    /// The first cluster of a valid image: header, extensions (QEMU's feature
    /// table unless told otherwise), optional backing file name after them.
    static func firstCluster(
        header: Qcow2Header = validHeader(),
        extensions: [HeaderExtension] = [.featureNameTable(FeatureName.qemuTable)],
        backingFile: String? = nil
    ) -> [UInt8] {
        var h = header
        var bytes = h.encode() + HeaderExtension.encodeAll(extensions)
        if let backingFile {
            h.backingFileOffset = UInt64(bytes.count)
            h.backingFileSize = UInt32(backingFile.utf8.count)
            bytes = h.encode() + HeaderExtension.encodeAll(extensions) + Array(backingFile.utf8)
        }
        return bytes + [UInt8](repeating: 0, count: Int(h.clusterSize) - bytes.count)
    }

    /// Decodes and validates like `Qcow2Image.init`, from bytes in memory.
    @discardableResult
    static func open(_ bytes: [UInt8], fileSize: UInt64 = fileSize, writable: Bool = false) throws -> ValidatedLayout {
        let header = try Qcow2Header.decode(bytes)
        return try HeaderValidation.validate(header: header, firstCluster: bytes, fileSize: fileSize, writable: writable)
    }
}

extension Array where Element == UInt8 {
    /// A copy with a big-endian integer written at `offset`.
    func patched<T: FixedWidthInteger>(_ value: T, at offset: Int) -> [UInt8] {
        var copy = self
        BigEndian.store(value, into: &copy, at: offset)
        return copy
    }

    func patched(bytes: [UInt8], at offset: Int) -> [UInt8] {
        var copy = self
        copy.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        return copy
    }
}

/// Byte offsets of the header fields (docs/interop/qcow2.txt).
enum Field {
    static let magic = 0, version = 4, backingFileOffset = 8, backingFileSize = 16, clusterBits = 20
    static let size = 24, cryptMethod = 32, l1Size = 36, l1TableOffset = 40
    static let refcountTableOffset = 48, refcountTableClusters = 56, snapshotCount = 60, snapshotsOffset = 64
    static let incompatibleFeatures = 72, compatibleFeatures = 80, autoclearFeatures = 88
    static let refcountOrder = 96, headerLength = 100, compressionType = 104
}

/// A scratch directory under /tmp, removed when the test is done with it.
final class ScratchDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "qcowkit-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Runs a program and returns its exit status, stdout and stderr.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

enum QemuImg {
    static var path: String { get throws { try TestTools.qemuImg() } }

    /// qemu-img's reason for refusing to open `file` as qcow2, or nil if it opens it.
    static func openError(_ file: String) throws -> String? {
        let result = try run(path, ["info", "-f", "qcow2", file])
        if result.status == 0 { return nil }
        let prefix = "qemu-img: Could not open '\(file)': "
        let line = result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        return line.hasPrefix(prefix) ? String(line.dropFirst(prefix.count)) : line
    }
}
