// Backing chains that must not be followed (loops, too deep, pseudo-protocols,
// missing or unusable files) and one that must be followed correctly.
import Foundation
import Testing
@testable import Qcow2

@Suite("Hostile images: backing chains")
struct HostileChainTests {
    /// Builds `name` naming `backing`; returns its path.
    @discardableResult
    static func image(_ scratch: HostileScratch, _ name: String, backing: String) throws -> String {
        try scratch.write(name, HostileImage(backingName: backing).bytes)
    }

    /// Every reader refuses the chain from `path`, with a message containing `text`.
    static func expectRefused(_ path: String, _ scratch: HostileScratch, _ text: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        let outcome = HostileReaders.run(path, scratch: scratch)
        HostileReaders.check(outcome, expected: nil, text, sourceLocation: sourceLocation)
        for (verb, result) in [("info", outcome.info.map { _ in () }), ("map", outcome.map.map { _ in () }),
                               ("convert", outcome.convert.map { _ in () })] {
            switch result {
            case .success: Issue.record("\(verb) followed a chain it must refuse (\(text))", sourceLocation: sourceLocation)
            case let .failure(error):
                #expect("\(error)".contains(text), "\(verb): \(error)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("an image naming itself", .tags(.hostile), arguments: ["self.qcow2", "./self.qcow2", "../x/self.qcow2"])
    func selfLoop(_ name: String) throws {
        let scratch = try HostileScratch()
        try FileManager.default.createDirectory(atPath: scratch.file("x"), withIntermediateDirectories: true)
        let path = try Self.image(scratch, "x/self.qcow2", backing: name)
        let outcome = HostileReaders.run(path, scratch: scratch)
        HostileReaders.check(outcome, expected: nil, "self loop via \(name)")
        #expect(throws: (any Error).self) { try outcome.map.get() }
        #expect(throws: (any Error).self) { try outcome.convert.get() }
        #expect(throws: (any Error).self) { try outcome.info.get() }
    }

    @Test("two images naming each other", .tags(.hostile))
    func twoImageLoop() throws {
        let scratch = try HostileScratch()
        let a = try Self.image(scratch, "a.qcow2", backing: "b.qcow2")
        try Self.image(scratch, "b.qcow2", backing: "a.qcow2")
        let outcome = HostileReaders.run(a, scratch: scratch)
        HostileReaders.check(outcome, expected: nil, "a -> b -> a")
        #expect("\(outcome.map)".contains("loops back"))
        #expect("\(outcome.info)".contains("infinite loop"))
    }

    @Test("a chain deeper than the limit", .tags(.hostile))
    func tooDeep() throws {
        let scratch = try HostileScratch()
        let depth = Qcow2Limits.maxBackingChainDepth + 2
        for i in 0..<depth { try Self.image(scratch, "l\(i).qcow2", backing: "l\(i + 1).qcow2") }
        try scratch.write("l\(depth).qcow2", HostileImage().bytes)
        let start = ContinuousClock.now
        let outcome = HostileReaders.run(scratch.file("l0.qcow2"), scratch: scratch)
        #expect(ContinuousClock.now - start < .seconds(20))
        HostileReaders.check(outcome, expected: nil, "deep chain")
        #expect("\(outcome.map)".contains("deeper than \(Qcow2Limits.maxBackingChainDepth)"))
        #expect("\(outcome.info)".contains("deeper than \(Qcow2Limits.maxBackingChainDepth)"))
        #expect(throws: (any Error).self) { try outcome.convert.get() }
    }

    @Test("backing names that are refused or cannot be opened", .tags(.hostile), arguments: [
        ("json:{\"driver\":\"file\",\"filename\":\"/etc/passwd\"}", "pseudo-protocol"),
        ("nbd://127.0.0.1:1/x", "pseudo-protocol"),
        ("missing.qcow2", "No such file or directory"),
        ("dir", "regular file"),
        ("", ""),
    ])
    func unusableBacking(_ name: String, _ text: String) throws {
        let scratch = try HostileScratch()
        try FileManager.default.createDirectory(atPath: scratch.file("dir"), withIntermediateDirectories: true)
        let path = try Self.image(scratch, "top.qcow2", backing: name)
        if name.isEmpty {
            // An empty name is no backing at all: the image reads alone.
            let outcome = HostileReaders.run(path, scratch: scratch)
            HostileReaders.check(outcome, expected: HostileImage.guest, "empty backing name")
            #expect(try outcome.convert.get() == HostileImage.guest)
        } else if name == "dir" {
            let outcome = HostileReaders.run(path, scratch: scratch)
            HostileReaders.check(outcome, expected: nil, "backing is a directory")
            #expect(throws: (any Error).self) { try outcome.map.get() }
            #expect(throws: (any Error).self) { try outcome.info.get() }
        } else {
            Self.expectRefused(path, scratch, text)
        }
    }

    @Test("a two-image chain reads through to the backing", .tags(.hostile))
    func validChain() throws {
        let scratch = try HostileScratch()
        let base: [UInt8] = (0..<HostileImage.virtualSize).map { UInt8(truncatingIfNeeded: $0 / 512 &+ 0x30) }
        try scratch.write("base.raw", base)
        let top = try Self.image(scratch, "top.qcow2", backing: "base.raw")
        // Clusters 0, 2, 4 (data) and 6 (zero) are the top's; the rest the base's.
        var expected = HostileImage.guest
        for cluster in [1, 3, 5] + Array(7..<16) {
            let range = (cluster * HostileImage.clusterSize)..<((cluster + 1) * HostileImage.clusterSize)
            expected.replaceSubrange(range, with: base[range])
        }
        let outcome = HostileReaders.run(top, scratch: scratch)
        HostileReaders.check(outcome, expected: expected, "top over raw base")
        #expect(try outcome.convert.get() == expected)
    }
}
