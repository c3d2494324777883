// Comparing `qcowkit snapshot` with `qemu-img snapshot`: the only bytes of
// an image QEMU does not decide alone are the dates of the snapshot table
// entries (taken from the clock); they are masked, and so is the DATE
// column of the listing. Everything else must be byte for byte the same.
import Foundation
import Testing
import TestSupport

enum SnapshotInterop {
    /// The image's bytes with date_sec and date_nsec of every snapshot table
    /// entry zeroed (the table is walked as the header describes it).
    static func maskedBytes(_ path: String) throws -> [UInt8] {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func be(_ at: Int, _ count: Int) -> Int {
            guard at >= 0, at + count <= bytes.count else { return 0 }
            return bytes[at..<at + count].reduce(0) { $0 << 8 | Int($1) }
        }
        let count = be(60, 4)
        var offset = be(64, 8)
        for _ in 0..<count {
            offset = (offset + 7) & ~7
            guard offset + 40 <= bytes.count else { break }
            for i in 16..<24 { bytes[offset + i] = 0 }
            offset += 40 + be(offset + 36, 4) + be(offset + 12, 2) + be(offset + 14, 2)
        }
        return bytes
    }

    /// Where two images first differ, masked; nil when they are the same.
    static func firstDifference(_ a: String, _ b: String) throws -> String? {
        let (x, y) = (try maskedBytes(a), try maskedBytes(b))
        if x == y { return nil }
        let index = (0..<min(x.count, y.count)).first { x[$0] != y[$0] } ?? min(x.count, y.count)
        return "sizes \(x.count) and \(y.count), first difference at \(String(index, radix: 16, uppercase: false))"
    }

    /// Output with the program's name and listing dates normalised.
    static func normalised(_ text: String) -> String {
        var text = text.replacingOccurrences(of: "qemu-img", with: "PROGRAM")
            .replacingOccurrences(of: "qcowkit", with: "PROGRAM")
        let date = try! NSRegularExpression(pattern: "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
        text = date.stringByReplacingMatches(
            in: text, range: NSRange(text.startIndex..., in: text), withTemplate: "YYYY-MM-DD hh:mm:ss")
        return text
    }
}

extension IOTwinDirectories {
    /// `qemu-img snapshot ARGS` on QEMU's side, `qcowkit snapshot ARGS` on ours.
    func snapshot(_ arguments: [String]) throws -> (qemu: IOProcessResult, ours: IOProcessResult) {
        (try IOProcess.run(["qemu-img", "snapshot"] + arguments, in: qemu),
         try IOProcess.run([try TestTools.qcowkit(), "snapshot"] + arguments, in: ours))
    }

    /// Where the two sides' copies of `name` differ (dates masked); nil if nowhere.
    func difference(_ name: String) throws -> String? {
        try SnapshotInterop.firstDifference(qemu.appendingPathComponent(name).path, ours.appendingPathComponent(name).path)
    }
}

extension SnapshotInterop {
    /// The same exit status, output and messages (normalised).
    static func expectSame(_ runs: (qemu: IOProcessResult, ours: IOProcessResult), _ context: Comment? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(runs.ours.status == runs.qemu.status, context, sourceLocation: sourceLocation)
        #expect(normalised(runs.ours.output) == normalised(runs.qemu.output), context, sourceLocation: sourceLocation)
        #expect(normalised(runs.ours.error) == normalised(runs.qemu.error), context, sourceLocation: sourceLocation)
    }
}
