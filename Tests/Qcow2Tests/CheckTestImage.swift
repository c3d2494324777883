// Small qcow2 images built by hand for the check's unit tests, so each test
// controls every byte: cluster 0 the header, 1 the refcount table, 2 its one
// refcount block, 3 the L1 table (one entry), 4 the L2 table, data from 5.
import Foundation
import Testing
@testable import Qcow2

struct CheckTestImage {
    var clusterBits: UInt32 = 16
    var refcountOrder: UInt32 = 4
    var dataClusters = 3
    var bytes: [UInt8] = []

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    var width: RefcountWidth { RefcountWidth(bits: 1 << UInt64(refcountOrder))! }
    static let copied: UInt64 = 1 << 63

    init(clusterBits: UInt32 = 16, refcountOrder: UInt32 = 4, dataClusters: Int = 3) {
        self.clusterBits = clusterBits
        self.refcountOrder = refcountOrder
        self.dataClusters = dataClusters
        let cs = Int(clusterSize)
        bytes = [UInt8](repeating: 0, count: cs * (5 + dataClusters))
        // As large as one cluster of L1 entries maps, at most 64 MiB.
        let perL2 = UInt64(cs / 8) * UInt64(cs)
        let size = min(64 << 20, UInt64(cs / 8) * perL2)
        var header = Qcow2Header(version: 3, clusterBits: clusterBits, size: size, refcountOrder: refcountOrder)
        header.l1Size = UInt32(divideRoundingUp(size, perL2))
        header.l1TableOffset = 3 * clusterSize
        header.refcountTableOffset = clusterSize
        header.refcountTableClusters = 1
        let encoded = header.encode()
        bytes.replaceSubrange(0..<encoded.count, with: encoded)
        setU64(clusterSize, 2 * clusterSize)
        for cluster in 0..<(5 + dataClusters) { setRefcount(UInt64(cluster), 1) }
        setL1(0, Self.copied | 4 * clusterSize)
        for i in 0..<dataClusters {
            setL2(i, Self.copied | UInt64(5 + i) * clusterSize)
            // Recognisable data, to see what a repair discards.
            let start = (5 + i) * cs
            for j in 0..<cs { bytes[start + j] = UInt8(truncatingIfNeeded: i + 1) }
        }
    }

    mutating func setU64(_ offset: UInt64, _ value: UInt64) { bytes.setBE(value, at: Int(offset)) }
    func u64(_ offset: UInt64) -> UInt64 { bytes.be(UInt64.self, at: Int(offset)) }
    mutating func setL1(_ index: Int, _ value: UInt64) { setU64(3 * clusterSize + UInt64(index) * 8, value) }
    mutating func setL2(_ index: Int, _ value: UInt64) { setU64(4 * clusterSize + UInt64(index) * 8, value) }
    func l2(_ index: Int) -> UInt64 { u64(4 * clusterSize + UInt64(index) * 8) }

    mutating func setRefcount(_ cluster: UInt64, _ value: UInt64) {
        let block = Int(2 * clusterSize)
        let width = self.width
        let clusterSize = self.clusterSize
        bytes.withUnsafeMutableBytes { buffer in
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[block..<(block + Int(clusterSize))])
            RefcountCoding.set(slice, index: Int(cluster), value: value, width: width)
        }
    }

    static func refcount(in bytes: [UInt8], cluster: UInt64, clusterSize: UInt64, width: RefcountWidth) -> UInt64 {
        bytes.withUnsafeBytes { buffer in
            let block = Int(2 * clusterSize)
            return RefcountCoding.get(UnsafeRawBufferPointer(rebasing: buffer[block..<(block + Int(clusterSize))]),
                                      index: Int(cluster), width: width)
        }
    }
}

/// A hand-built image in a temporary file, checked in-process.
final class CheckTestFile {
    let directory: URL
    let path: String

    init(_ image: CheckTestImage) throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qcowkit-checkunit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent("image.qcow2").path
        try Data(image.bytes).write(to: URL(fileURLWithPath: path))
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    var bytes: [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? [] }

    /// Opens and checks; returns the result and every message.
    func check(_ repair: CheckRepair = []) throws -> (CheckResult, [String]) {
        let checker = try Qcow2Checker.open(path: path, writable: !repair.isEmpty)
        defer { try? checker.close() }
        var messages: [String] = []
        let result = try checker.check(repair: repair) { messages.append($0.text) }
        try checker.finishRepairs()
        return (result, messages)
    }

    /// Checks and expects the check to fail; returns the errno and messages.
    func failingCheck(_ repair: CheckRepair = []) throws -> (Int32?, [String]) {
        let checker = try Qcow2Checker.open(path: path, writable: !repair.isEmpty)
        defer { try? checker.close() }
        var messages: [String] = []
        do {
            _ = try checker.check(repair: repair) { messages.append($0.text) }
            return (nil, messages)
        } catch let Qcow2Error.checkFailed(code) {
            return (code, messages)
        }
    }
}
