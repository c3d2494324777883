// What the codec reports and goes on after (Diagnostics.swift): delivered to
// the image's sink, in QEMU's words, while the operation itself succeeds.
import Foundation
import Synchronization
import Testing
@testable import Qcow2

/// Collects what a sink receives (sinks are called from any thread).
final class DiagnosticRecorder: Sendable {
    private let received = Mutex<[Qcow2Diagnostic]>([])
    var all: [Qcow2Diagnostic] { received.withLock { $0 } }
    var sink: Qcow2Diagnostics.Sink { { [self] diagnostic in received.withLock { $0.append(diagnostic) } } }
}

enum BrokenRefcountFixture {
    /// An image whose first guest cluster is allocated but has refcount 0
    /// in its refcount block: freeing it fails with EINVAL, as in QEMU.
    static func make(_ dir: TestDirectory, name: String) throws -> String {
        let path = try WriteFixture.create(dir, name, size: 1 << 20)
        let image = try WriteFixture.openWritable(path)
        try [UInt8](repeating: 0x11, count: 65536).withUnsafeBytes { try image.write($0, at: 0) }
        try image.close()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func be64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        let mask: UInt64 = 0x00ff_ffff_ffff_fe00
        let l2 = be64(Int(be64(40) & mask))               // L1[0], from the header's l1_table_offset
        let data = be64(Int(l2 & mask)) & mask            // L2[0]
        let refblock = be64(Int(be64(48))) & mask         // refcount table[0]
        let entry = Int(refblock) + Int(data >> 16) * 2   // 16-bit refcounts, 64 KiB clusters
        #expect(bytes[entry] == 0 && bytes[entry + 1] == 1)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(entry))
        try handle.write(contentsOf: [0, 0])
        try handle.close()
        return path
    }
}

@Suite struct DiagnosticsTests {
    @Test func freeingAClusterWithRefcountZeroIsReportedAndTheRequestSucceeds() throws {
        let dir = try TestDirectory()
        for discard in [true, false] {
            let path = try BrokenRefcountFixture.make(dir, name: discard ? "discard.qcow2" : "zero.qcow2")
            let image = try WriteFixture.openWritable(path)
            let recorder = DiagnosticRecorder()
            image.diagnosticSink = recorder.sink
            if discard {
                try image.discard(at: 0, length: 65536)
            } else {
                try image.writeZeroes(at: 0, length: 65536, mayUnmap: true)
            }
            try image.close()
            #expect(recorder.all == [Qcow2Diagnostic(.plain, "qcow2_free_clusters failed: Invalid argument")])
            #expect(recorder.all.map { $0.line(program: "qcowkit") } == ["qcow2_free_clusters failed: Invalid argument"])
        }
    }

    @Test func errorReportLinesStartWithTheProgramName() {
        let line = Qcow2Diagnostic(.errorReport, "Failed to flush the L2 table cache: No space left on device")
        #expect(line.line(program: "qcowkit") == "qcowkit: Failed to flush the L2 table cache: No space left on device")
        #expect(line.line(program: nil) == "Failed to flush the L2 table cache: No space left on device")
    }

    @Test func errnoOfCodecErrors() {
        #expect(Qcow2Error.reason(of: Qcow2Error.writeFailed(errno: ENOSPC, reason: "x")) == "No space left on device")
        #expect(Qcow2Error.reason(of: Qcow2Error.inBackingFile(.io(step: "read", errno: EACCES))) == "Permission denied")
        #expect(Qcow2Error.reason(of: Qcow2Error.invalidArgument("x")) == "Invalid argument")
        #expect(Qcow2Error.reason(of: Qcow2Error.notQcow2) == "Input/output error")
    }
}
