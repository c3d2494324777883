// Damaged images through the built binary: `qcowkit info`, `map` and
// `convert -O raw`, each under a timeout and an address-space limit. Every run
// must end by itself with a clear error (exit 1, "qcowkit: " on stderr) or an
// answer; an answer must be qemu-img 7.2's whenever qemu-img answers too.
// The in-process suites (Qcow2Tests/Hostile*) cover every field value and cut
// length; this one takes a sample of each kind through the CLI, plus the
// cases only a separate process can show (address-space limits on sparse
// files with the largest tables the limits allow).
import Foundation
import Testing
@testable import Qcow2

/// One damaged image (or chain): files to write, and the one to run on.
struct HostileCLICase: Sendable, CustomTestStringConvertible {
    var name: String
    /// Builds the files in the directory from the base image's bytes; returns the file to run on.
    var make: @Sendable (_ base: [UInt8], _ dir: String) throws -> String
    /// A backing chain: `info --backing-chain` is run too.
    var chain = false
    /// Every verb must answer (exit 0): tables at the limits are accepted.
    var mustAnswer = false
    /// `info` must fail with a message containing this.
    var infoError: String?
    var testDescription: String { name }

    init(name: String, chain: Bool = false, mustAnswer: Bool = false, infoError: String? = nil,
         make: @escaping @Sendable (_ base: [UInt8], _ dir: String) throws -> String) {
        self.name = name
        self.chain = chain
        self.mustAnswer = mustAnswer
        self.infoError = infoError
        self.make = make
    }
}

@Suite("Hostile images through the CLI")
struct HostileImagesCLITests {
    /// A small image made by qemu-img: 4 KiB clusters, 64 KiB disk, data,
    /// a compressed cluster, a zero cluster, an internal snapshot.
    static let base: Result<[UInt8], Error> = Result {
        let dir = NSTemporaryDirectory() + "qcowkit-hostile-base-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for command in [
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "base.qcow2", "64k"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0xa5 0 4k", "-c", "write -P 0x5a 8k 4k",
             "-c", "write -c -P 0x11 16k 4k", "-c", "write -z 24k 4k", "base.qcow2"],
            ["qemu-img", "snapshot", "-c", "snap", "base.qcow2"],
        ] {
            let run = try HostileProcess.run(command, in: dir)
            guard run.status == 0 else { throw HostileCLIError(message: "\(command): \(run.stderr)") }
        }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/base.qcow2")))
    }

    struct HostileCLIError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// Where the base image's tables are (qemu-img lays them out the same way every time).
    struct Layout {
        var l1: Int, l2: Int, refcountTable: Int, snapshots: Int
        init(_ b: [UInt8]) throws {
            let h = try Qcow2Header.decode(b)
            l1 = Int(h.l1TableOffset)
            refcountTable = Int(h.refcountTableOffset)
            snapshots = Int(h.snapshotsOffset)
            l2 = Int(b.be(UInt64.self, at: l1) & Qcow2EntryMask.offset)
        }
    }

    static func patched(_ b: [UInt8], _ value: UInt64, at offset: Int, width: Int = 8) -> [UInt8] {
        var copy = b
        for i in 0..<width { copy[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64((width - 1 - i) * 8)) }
        return copy
    }

    static func write(_ bytes: [UInt8], _ dir: String, _ name: String = "image.qcow2") throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
        return name
    }

    /// A case that patches one big-endian value of the base image.
    static func patch(_ name: String, width: Int = 8, _ value: UInt64, at offset: @escaping @Sendable (Layout) -> Int) -> HostileCLICase {
        HostileCLICase(name: name) { base, dir in
            try write(patched(base, value, at: offset(Layout(base)), width: width), dir)
        }
    }

    /// A qcow2 header naming `backing` (and nothing else of note), as a file of one cluster.
    static func overlay(naming backing: String, size: UInt64 = 64 << 10) -> [UInt8] {
        var h = Qcow2Header(version: 3, clusterBits: 12, size: size)
        h.l1Size = 1
        h.l1TableOffset = 0x3000
        h.refcountTableOffset = 0x1000
        h.refcountTableClusters = 1
        var first = h.encode()
        first.setBE(UInt64(first.count), at: 8)
        first.setBE(UInt32(backing.utf8.count), at: 16)
        first += Array(backing.utf8)
        return first + [UInt8](repeating: 0, count: 0x4000 - first.count)
    }

    static let headerFields: [(String, Int, Int)] = [
        ("magic", 0, 4), ("version", 4, 4), ("backing_file_offset", 8, 8), ("backing_file_size", 16, 4),
        ("cluster_bits", 20, 4), ("size", 24, 8), ("crypt_method", 32, 4), ("l1_size", 36, 4),
        ("l1_table_offset", 40, 8), ("refcount_table_offset", 48, 8), ("refcount_table_clusters", 56, 4),
        ("nb_snapshots", 60, 4), ("snapshots_offset", 64, 8), ("incompatible_features", 72, 8),
        ("compatible_features", 80, 8), ("autoclear_features", 88, 8), ("refcount_order", 96, 4),
        ("header_length", 100, 4), ("compression_type", 104, 1),
    ]

    static let cases: [HostileCLICase] = {
        var cases: [HostileCLICase] = []
        // Each header field at its largest value.
        for (name, offset, width) in headerFields {
            let max = width == 8 ? UInt64.max : (UInt64(1) << UInt64(width * 8)) - 1
            cases.append(patch("\(name) = max", width: width, max) { _ in offset })
        }
        // Table entries.
        let copied = Qcow2EntryMask.copied
        cases += [
            patch("L1 entry past the end of the file", copied | 0x10_0000) { $0.l1 },
            patch("L1 entry misaligned", copied | 0x4200) { $0.l1 },
            patch("L1 entry with reserved bits", UInt64.max) { $0.l1 },
            patch("L2 entry past the end of the file", copied | 0x10_0000) { $0.l2 },
            patch("L2 entry into the header, misaligned", copied | 0x200) { $0.l2 },
            patch("L2 entry at the refcount table", copied | 0x1000) { $0.l2 },
            patch("compressed entry past the end of the file", Qcow2EntryMask.compressed | 0x10_0000) { $0.l2 + 32 },
            patch("refcount table entry with bit 63", 0x8000_0000_0000_2000) { $0.refcountTable },
            patch("refcount table entry misaligned", 0x2008) { $0.refcountTable },
            patch("snapshot id and name sizes max", width: 4, UInt64(UInt32.max)) { $0.snapshots + 12 },
            patch("snapshot extra data size max", width: 4, UInt64(UInt32.max)) { $0.snapshots + 36 },
        ]
        // Truncated files.
        for length in [0, 3, 4, 7, 8, 20, 72, 103, 104, 112, 0x1000, 0x1008, 0x3004, 0x5800] {
            cases.append(HostileCLICase(name: "cut to \(length) bytes") { base, dir in
                try write(Array(base.prefix(length)), dir)
            })
        }
        // Backing chains.
        cases += [
            HostileCLICase(name: "image naming itself", chain: true) { _, dir in try write(overlay(naming: "image.qcow2"), dir) },
            HostileCLICase(name: "image naming itself as ./", chain: true) { _, dir in try write(overlay(naming: "./image.qcow2"), dir) },
            HostileCLICase(name: "two images naming each other", chain: true) { _, dir in
                _ = try write(overlay(naming: "b.qcow2"), dir, "a.qcow2")
                _ = try write(overlay(naming: "a.qcow2"), dir, "b.qcow2")
                return "a.qcow2"
            },
            HostileCLICase(name: "backing file missing", chain: true) { _, dir in try write(overlay(naming: "gone.qcow2"), dir) },
            HostileCLICase(name: "json: backing name", chain: true) { _, dir in
                try write(overlay(naming: "json:{\"driver\":\"file\",\"filename\":\"/etc/hostname\"}"), dir)
            },
            HostileCLICase(name: "chain deeper than the limit", chain: true) { base, dir in
                let depth = Qcow2Limits.maxBackingChainDepth + 2
                for i in 0..<depth { _ = try write(overlay(naming: "l\(i + 1).qcow2"), dir, "l\(i).qcow2") }
                _ = try write(base, dir, "l\(depth).qcow2")
                return "l0.qcow2"
            },
        ]
        // The largest tables the limits allow, in sparse files: they must be
        // read within the address-space limit (or refused), not crash it.
        let far = 1 << 32
        cases += [
            HostileCLICase(name: "L1 table of 32 MiB (the limit)", mustAnswer: true) { base, dir in
                let l = try Layout(base)
                let entry = Array(base[l.l1..<(l.l1 + 8)])
                let bytes = patched(patched(base, Qcow2Limits.maxL1TableBytes / 8, at: 36, width: 4), UInt64(far), at: 40)
                return try sparse(bytes, dir, length: far + Int(Qcow2Limits.maxL1TableBytes), writes: [(far, entry)])
            },
            HostileCLICase(name: "refcount table of 8 MiB (the limit)", mustAnswer: true) { base, dir in
                let l = try Layout(base)
                let entry = Array(base[l.refcountTable..<(l.refcountTable + 8)])
                let clusters = Qcow2Limits.maxRefcountTableBytes / 4096
                let bytes = patched(patched(base, clusters, at: 56, width: 4), UInt64(far), at: 48)
                return try sparse(bytes, dir, length: far + Int(Qcow2Limits.maxRefcountTableBytes), writes: [(far, entry)])
            },
            HostileCLICase(name: "65536 snapshots (the limit)", mustAnswer: true) { base, dir in
                let bytes = patched(patched(base, UInt64(Qcow2Limits.maxSnapshots), at: 60, width: 4), UInt64(far), at: 64)
                return try sparse(bytes, dir, length: far + Int(Qcow2Limits.maxSnapshots) * 40, writes: [])
            },
            HostileCLICase(name: "bitmap directory of 64 MiB (the limit)",
                           infoError: "Bitmap '' doesn't satisfy the constraints") { base, dir in
                // A bitmaps extension added to qemu-img's extensions, vouched
                // for by the autoclear bit; the directory (zeroes) is invalid.
                let h = try Qcow2Header.decode(base)
                var extensions = try HeaderExtension.decodeAll(base, from: Int(h.headerLength), to: 4096)
                let size = Qcow2Limits.maxBitmapDirectorySize
                extensions.append(.bitmaps(BitmapsExtension(bitmapCount: 65535, directorySize: size,
                                                            directoryOffset: UInt64(far)).encode()))
                let area = HeaderExtension.encodeAll(extensions)
                var bytes = patched(base, 1, at: 88)
                bytes.replaceSubrange(Int(h.headerLength)..<(Int(h.headerLength) + area.count), with: area)
                return try sparse(bytes, dir, length: far + Int(size), writes: [])
            },
        ]
        return cases
    }()

    /// Writes `bytes` into a sparse file of `length` bytes, with `writes` at their offsets.
    static func sparse(_ bytes: [UInt8], _ dir: String, length: Int, writes: [(Int, [UInt8])]) throws -> String {
        let name = try write(bytes, dir)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/" + name))
        defer { try? handle.close() }
        try handle.truncate(atOffset: UInt64(length))
        for (offset, data) in writes {
            try handle.seek(toOffset: UInt64(offset))
            try handle.write(contentsOf: Data(data))
        }
        return name
    }

    /// Runs info, map and convert on the case, then checks every run.
    @Test("damaged images get a clear error or the right answer", .tags(.hostileCLI), arguments: cases)
    func damaged(_ c: HostileCLICase) throws {
        let base = try Self.base.get()
        let dir = NSTemporaryDirectory() + "qcowkit-hostile-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try c.make(base, dir)
        // Deep chains: QEMU follows them (slowly); only our refusal is checked.
        let oracle = !c.name.contains("deeper")
        var verbs = [["info", file], ["map", "--output=json", file], ["convert", "-O", "raw", file, "ours.raw"]]
        if c.chain { verbs.append(["info", "--backing-chain", file]) }
        for verb in verbs {
            let ours = try HostileProcess.qcowkit(verb, in: dir)
            let what = "\(c.name): qcowkit \(verb.joined(separator: " "))"
            #expect(ours.answered, "\(what) ended with status \(ours.status)\(ours.timedOut ? " (timed out)" : ""): \(ours.stderr)")
            if ours.status == 1 {
                #expect(ours.stderr.hasPrefix("qcowkit: ") && ours.stderr.count > "qcowkit: ".count, "\(what): \(ours.stderr)")
            }
            if c.mustAnswer { #expect(ours.status == 0, "\(what): \(ours.stderr)") }
            if let text = c.infoError, verb[0] == "info" {
                #expect(ours.status == 1 && ours.stderr.contains(text), "\(what): \(ours.stderr)")
            }
            guard ours.status == 0, oracle else { continue }
            // An answer: it must be qemu-img's whenever qemu-img answers.
            var theirsVerb = verb
            if verb[0] == "convert" { theirsVerb[theirsVerb.count - 1] = "theirs.raw" }
            let theirs = try HostileProcess.qemuImg(theirsVerb, in: dir)
            guard theirs.status == 0 else { continue }
            switch verb[0] {
            case "info":
                let keep = { (text: String) in text.split(separator: "\n").filter { !$0.hasPrefix("disk size:") } }
                #expect(keep(ours.stdout) == keep(theirs.stdout), "\(what)")
            case "map":
                #expect(ours.stdout == theirs.stdout, "\(what)")
            default:
                #expect(FileManager.default.contentsEqual(atPath: dir + "/ours.raw", andPath: dir + "/theirs.raw"), "\(what)")
            }
        }
    }
}

extension Tag {
    @Tag static var hostileCLI: Self
}
