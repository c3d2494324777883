import Testing
@testable import QMP

/// Byte-for-byte comparison with transcripts QEMU 7.2 produced for the same
/// input (QEMUTranscripts.swift), compact and pretty.
@Suite struct TranscriptTests {
    private func replies(pretty: Bool, pieceSize: Int) throws -> String {
        let harness = try SessionHarness()
        let client = harness.connect(pretty: pretty)
        _ = harness.take(client)
        let bytes = Array(QEMUTranscripts.input.utf8)
        var start = 0
        while start < bytes.count {
            let end = min(start + pieceSize, bytes.count)
            harness.send(String(decoding: bytes[start..<end], as: UTF8.self), client: client)
            start = end
        }
        return harness.take(client)
    }

    @Test func compactRepliesAreQEMUs() throws {
        let ours = try replies(pretty: false, pieceSize: 1 << 20)
        #expect(ours == QEMUTranscripts.compactReplies)
        if ours != QEMUTranscripts.compactReplies { firstDifference(ours, QEMUTranscripts.compactReplies) }
    }

    @Test func prettyRepliesAreQEMUs() throws {
        let ours = try replies(pretty: true, pieceSize: 1 << 20)
        #expect(ours == QEMUTranscripts.prettyReplies)
        if ours != QEMUTranscripts.prettyReplies { firstDifference(ours, QEMUTranscripts.prettyReplies) }
    }

    /// The same input arriving a few bytes at a time (ASCII, so pieces never
    /// split a character).
    @Test(arguments: [1, 7, 64])
    func pieceSizeDoesNotMatter(pieceSize: Int) throws {
        #expect(try replies(pretty: false, pieceSize: pieceSize) == QEMUTranscripts.compactReplies)
    }

    private func firstDifference(_ ours: String, _ theirs: String) {
        let a = ours.split(separator: "\n", omittingEmptySubsequences: false)
        let b = theirs.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, (x, y)) in zip(a, b).enumerated() where x != y {
            Issue.record("line \(index + 1): ours \(x.debugDescription), QEMU's \(y.debugDescription)")
            return
        }
        Issue.record("line counts differ: ours \(a.count), QEMU's \(b.count)")
    }
}
