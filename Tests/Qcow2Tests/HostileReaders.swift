// The three readers the CLI's info, map and convert are built on, run
// in-process on a damaged image, each reduced to an outcome: an error (whose
// message must say something), or what it read. Walks are bounded so that a
// runaway loop fails the test instead of hanging it.
import Foundation
import Testing
@testable import Qcow2

struct HostileOutcome {
    /// The info error, or the virtual size and format info reported.
    var info: Result<(size: UInt64, format: String), Error>
    /// The map error, or the runs block status gave (offset, length, zero).
    var map: Result<[(offset: UInt64, length: UInt64, zero: Bool)], Error>
    /// The convert error, or the guest bytes the raw output holds.
    var convert: Result<[UInt8], Error>
}

enum HostileReaders {
    /// More block-status answers than any image here can need.
    static let maxMapSteps = 100_000
    /// Images larger than this are not converted (none valid here is).
    static let maxConvertSize: UInt64 = 64 << 20

    struct RunawayWalk: Error, CustomStringConvertible {
        var description: String { "block status walk did not finish" }
    }
    struct TooLarge: Error, CustomStringConvertible {
        var size: UInt64
        var description: String { "image of \(size) bytes opened; not converted" }
    }

    /// Runs info, map and convert on `path` (format probed, as the CLI does).
    static func run(_ path: String, scratch: HostileScratch) -> HostileOutcome {
        let info = Result { () throws -> (size: UInt64, format: String) in
            let report = try ImageInfoReader.read(path: path, format: nil, backingChain: true)
            return (report.images[0].virtualSize, report.images[0].format)
        }
        let map = Result { () throws -> [(offset: UInt64, length: UInt64, zero: Bool)] in
            let image = try ImageOpener.open(path: path)
            defer { try? image.close() }
            var runs: [(offset: UInt64, length: UInt64, zero: Bool)] = []
            var offset: UInt64 = 0
            while offset < image.size {
                guard runs.count < maxMapSteps else { throw RunawayWalk() }
                let status = try image.chainBlockStatus(at: offset, length: image.size - offset).status
                runs.append((offset, status.length, status.isZero))
                offset += status.length
            }
            return runs
        }
        let convert = Result { () throws -> [UInt8] in
            let image = try ImageOpener.open(path: path)
            defer { try? image.close() }
            guard image.size <= maxConvertSize else { throw TooLarge(size: image.size) }
            let output = scratch.file("converted-\(UUID().uuidString).raw")
            defer { try? FileManager.default.removeItem(atPath: output) }
            try RawExport.write(image, to: output)
            return try [UInt8](Data(contentsOf: URL(fileURLWithPath: output)))
        }
        return HostileOutcome(info: info, map: map, convert: convert)
    }

    /// Checks an outcome: every failure is an error with a message; whatever
    /// succeeded agrees with `expected` (the guest disk the damaged image
    /// still describes; nil when any content is acceptable) and with itself
    /// (sizes, and ranges block status calls zero read as zeroes).
    /// Bytes in `unknown` may read as anything (but must read alike everywhere).
    static func check(_ outcome: HostileOutcome, expected: [UInt8]?, unknown: Range<Int>? = nil, _ what: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        var expected = expected
        if let unknown, var e = expected, case let .success(content) = outcome.convert, content.count == e.count {
            e.replaceSubrange(unknown, with: content[unknown])
            expected = e
        }
        for case let .failure(error) in [outcome.info.map { _ in () }, outcome.map.map { _ in () }, outcome.convert.map { _ in () }] {
            #expect(!"\(error)".isEmpty, "\(what): error without a message", sourceLocation: sourceLocation)
            #expect(!(error is RunawayWalk), "\(what): \(error)", sourceLocation: sourceLocation)
        }
        if case let .success(content) = outcome.convert, let expected {
            #expect(content.count == expected.count, "\(what): converted \(content.count) bytes, expected \(expected.count)",
                    sourceLocation: sourceLocation)
            if content.count == expected.count, let first = content.indices.first(where: { content[$0] != expected[$0] }) {
                Issue.record("\(what): converted data differs first at byte \(first)", sourceLocation: sourceLocation)
            }
        }
        if case let .success(info) = outcome.info, let expected {
            #expect(info.size == UInt64(expected.count), "\(what): info size \(info.size)", sourceLocation: sourceLocation)
        }
        if case let .success(runs) = outcome.map {
            let covered = runs.reduce(UInt64(0)) { $0 + $1.length }
            if let expected {
                #expect(covered == UInt64(expected.count), "\(what): map covers \(covered) bytes", sourceLocation: sourceLocation)
            }
            // Zero claims against what convert read (or what must be there).
            let content: [UInt8]? = (try? outcome.convert.get()) ?? expected
            if let content {
                for run in runs where run.zero && run.offset + run.length <= UInt64(content.count) {
                    let slice = content[Int(run.offset)..<Int(run.offset + run.length)]
                    #expect(slice.allSatisfy { $0 == 0 }, "\(what): map says zero at \(run.offset) but data is there",
                            sourceLocation: sourceLocation)
                }
            }
        }
    }
}
