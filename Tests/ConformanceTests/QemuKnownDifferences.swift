// Where QEMU 7.2 (Debian 1:7.2+dfsg-7+deb12u18, the oracle installed here)
// departs from the spec's 191.out, which an older QEMU produced. This is the
// one place they are listed. Each entry rewrites QEMU 7.2's normalized
// transcript back into the spec's form, narrowly: it matches exact lines, so
// anything else QEMU prints differently still shows up as a diff, and every
// entry must apply at least once (a stale entry fails the test too).
//
// Found by running Scripts/iotest-191.sh against qemu-img, qemu-io and
// qemu-system-x86_64 7.2 and diffing with the fixture: these three are all.
// Everything else (the Formatting lines, the qemu-io output, every event and
// its order, the commit's len/offset, node order, ro flags, file sizes of
// the protocol nodes, backing file names, the info lines) is as the spec.

struct KnownDifference: Sendable {
    var name: String
    /// Turns QEMU 7.2's lines into the spec's; returns how many places changed.
    var undo: @Sendable ([String]) -> (lines: [String], changes: Int)
}

enum QemuKnownDifferences {
    static let all: [KnownDifference] = [
        // 1. QEMU 6.0 removed BlockDeviceInfo's `encryption_key_missing`
        //    (deprecated before, always false); the spec keeps it as each
        //    node's last member, after `file`.
        KnownDifference(name: "encryption_key_missing dropped") { lines in
            var out: [String] = [], changes = 0
            for (index, line) in lines.enumerated() {
                let closesNode = index + 1 < lines.count && (lines[index + 1] == "}" || lines[index + 1] == "},")
                if line.hasPrefix("\"file\": \""), line.hasSuffix("\""), closesNode {
                    out.append(line + ",")
                    out.append("\"encryption_key_missing\": false")
                    changes += 1
                } else {
                    out.append(line)
                }
            }
            return (out, changes)
        },

        // 2. `quit`: QEMU 7.2 sends the SHUTDOWN event before quit's return;
        //    the spec has the return first. Swapped back only when the two
        //    are exactly the return and the host-qmp-quit SHUTDOWN.
        KnownDifference(name: "SHUTDOWN before quit's return") { lines in
            var out = lines, changes = 0
            let shutdown = [
                "{", "\"timestamp\": {", "\"seconds\": TIMESTAMP,", "\"microseconds\": TIMESTAMP", "},",
                "\"event\": \"SHUTDOWN\",", "\"data\": {", "\"guest\": false,",
                "\"reason\": \"host-qmp-quit\"", "}", "}",
            ]
            let reply = ["{", "\"return\": {", "}", "}"]
            var index = 0
            while index < out.count {
                defer { index += 1 }
                guard out[index] == "{ 'execute': 'quit' }" else { continue }
                let s = index + 1, r = s + shutdown.count
                guard r + reply.count <= out.count,
                      Array(out[s..<r]) == shutdown, Array(out[r..<(r + reply.count)]) == reply
                else { continue }
                out.replaceSubrange(s..<(r + reply.count), with: reply + shutdown)
                changes += 1
            }
            return (out, changes)
        },

        // 3. QEMU 7.2 puts the qcow2 driver's `format-specific` ImageInfo
        //    member (ImageInfoSpecificQCow2) into every qcow2 image and
        //    backing-image object of query-named-block-nodes, after
        //    `actual-size`; the spec has none. Removed only with exactly the
        //    values of a fresh qemu-img-created image.
        KnownDifference(name: "format-specific in query-named-block-nodes") { lines in
            let block = [
                "\"format-specific\": {", "\"type\": \"IMGFMT\",", "\"data\": {",
                "\"compat\": \"1.1\",", "\"compression-type\": \"zlib\",", "\"lazy-refcounts\": false,",
                "\"refcount-bits\": 16,", "\"corrupt\": false,", "\"extended-l2\": false",
                "}", "},",
            ]
            var out: [String] = [], changes = 0, index = 0
            while index < lines.count {
                if index + block.count <= lines.count, index > 0, lines[index - 1] == "\"actual-size\": SIZE,",
                   Array(lines[index..<(index + block.count)]) == block {
                    index += block.count
                    changes += 1
                } else {
                    out.append(lines[index])
                    index += 1
                }
            }
            return (out, changes)
        },
    ]

    /// QEMU 7.2's transcript in the spec's form, and how often each known
    /// difference applied (by name).
    static func undo(_ lines: [String]) -> (lines: [String], applied: [(String, Int)]) {
        var current = lines
        var applied: [(String, Int)] = []
        for difference in all {
            let (rewritten, changes) = difference.undo(current)
            current = rewritten
            applied.append((difference.name, changes))
        }
        return (current, applied)
    }
}
