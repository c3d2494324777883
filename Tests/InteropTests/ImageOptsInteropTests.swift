// --image-opts, --target-image-opts and json:{...} filenames against
// qemu-img 7.2 invoked the same way in the same directory: the drivers'
// runtime options accepted, bad values and unknown options refused with
// QEMU's messages, the backing file dropped or looked up as a node, and the
// results (outputs, exit status, converted and resized images) the same.
import Foundation
import Testing

@Suite("--image-opts and json: filenames against qemu-img 7.2")
struct ImageOptsInteropTests {
    static let qcow2 = "driver=qcow2,file.filename="

    @Test("every verb that takes them reads QEMU's block options as qemu-img does")
    func readingVerbs() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        let top = Self.qcow2 + "top.qcow2"
        let json = #"json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}"#
        let cases: [[String]] = [
            ["info", "--image-opts", top], ["info", "--image-opts", "top.qcow2"], ["info", "--image-opts", "file=top.qcow2"],
            ["info", "--image-opts", "file.filename=base.qcow2"], ["info", "--image-opts", "driver=qcow2"],
            ["info", "--image-opts", top + ",foo=1"], ["info", "--image-opts", top + ",file.foo=1"],
            ["info", "--image-opts", top + ",backing=null"], ["info", "--image-opts", "driver=qcow3,file.filename=top.qcow2"],
            ["info", "--image-opts", top + ",l2-cache-size=1x"], ["info", "--image-opts", top + ",lazy-refcounts=maybe"],
            ["info", "--image-opts", top + ",cache.direct=on,cache.no-flush=on,l2-cache-size=1M,refcount-cache-size=64k,"
                + "discard=unmap,pass-discard-request=on,overlap-check=all,overlap-check.template=none,"
                + "overlap-check.active-l2=off,cache-clean-interval=10,force-share=on,read-only=on,file.locking=off,file.aio=threads"],
            ["info", "--image-opts", top + ",discard=foo"], ["info", "--image-opts", top + ",overlap-check=bad"],
            ["info", "--image-opts", top + ",cache-size=1M,l2-cache-size=2M"],
            ["info", "--image-opts", top + ",cache-size=1M,l2-cache-size=512k,refcount-cache-size=64k"],
            ["info", "--image-opts", "driver=raw,file.filename=top.qcow2,lazy-refcounts=on"],
            ["info", "--image-opts", "driver=raw,file.filename=top.qcow2,offset=x"],
            ["info", "--image-opts", top + ",file.locking=maybe"], ["info", "--image-opts", top + ",cache.writeback=off"],
            ["info", "--image-opts", top + ",detect-zeroes=bad"], ["info", "--image-opts", top + ",file.aio=bad"],
            ["info", "--image-opts", top + ",cache-clean-interval=x"], ["info", "--image-opts", Self.qcow2 + "missing.qcow2"],
            ["info", "--image-opts", "-f", "qcow2", top], ["info", "--output=json", "--image-opts", top],
            ["info", "--backing-chain", "--image-opts", top],
            // No driver: the probed format decides its own options; bare keys are deprecated.
            ["info", "--image-opts", "file.filename=top.qcow2,l2-cache-size=1M"], ["info", "--image-opts", "file.filename=top.qcow2,foo=1"],
            ["info", "--image-opts", "file.filename=top.qcow2,l2-cache-size=x"], ["info", "--image-opts", top + ",foo"],
            ["info", "--image-opts", top + ",nolazy-refcounts"], ["info", "--image-opts", "filename=top.qcow2"],
            ["info", json], ["info", "-f", "raw", json],
            ["info", #"json:{"driver":"qcow2","file.filename":"top.qcow2","l2-cache-size":65536,"lazy-refcounts":true}"#],
            ["info", #"json:{"driver":"qcow2","file":{"filename":"top.qcow2"}"#], ["info", "json:[1]"],
            ["info", #"json:{"driver":"qcow2","filename":"top.qcow2"}"#],
            ["info", #"json:{"driver":"qcow2","file":{"filename":"top.qcow2"},"lazy-refcounts":"x"}"#],
            ["map", "--image-opts", top], ["map", "--output=json", "--image-opts", top + ",backing=null"],
            ["map", "--image-opts", top + ",backing="],
            ["map", "--output=json", #"json:{"driver":"qcow2","file":{"filename":"top.qcow2"},"backing":null}"#],
            ["map", "--output=json", json],
            ["check", "--image-opts", top], ["check", "--image-opts", top + ",backing=x"],
            ["check", "--output=json", #"json:{"driver":"qcow2","file":{"filename":"flat.qcow2"}}"#],
            ["check", "--output=json", "--image-opts", Self.qcow2 + "flat.qcow2"],
            ["info", "--image-opts", top + ",overlap-check=all,overlap-check.template=all"],
            ["compare", "--image-opts", top, Self.qcow2 + "flat.qcow2"],
            ["compare", #"json:{"file":{"filename":"top.qcow2"}}"#, "base.qcow2"],
            ["compare", "--image-opts", "-f", "qcow2", top, top],
            ["measure", "-O", "qcow2", "--image-opts", top], ["measure", "-O", "qcow2", json],
            ["snapshot", "-l", "--image-opts", top],
        ]
        let differences = try cases.compactMap { try run.difference($0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }

    @Test("writing verbs: read-only and force-share refusals, converted and resized images byte-identical")
    func writingVerbs() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        func both(_ arguments: (String) -> [String], setup: [[String]] = []) throws {
            var outcomes: [QemuImgDifferential.Outcome] = []
            for side in ["theirs", "ours"] {
                for step in setup { _ = try run.theirs(step.map { $0.replacingOccurrences(of: "OUT", with: side) }) }
                let arguments = arguments(side)
                outcomes.append(side == "theirs" ? try run.theirs(arguments) : try run.mine(arguments))
            }
            let normalised = outcomes.map { QemuImgDifferential.Outcome(
                status: $0.status, stdout: $0.stdout.replacingOccurrences(of: "ours", with: "theirs"),
                stderr: $0.stderr.replacingOccurrences(of: "ours", with: "theirs")) }
            #expect(normalised[0] == normalised[1], "\(arguments("ours"))")
        }
        let copy = [["convert", "-O", "qcow2", "flat.qcow2", "OUT.qcow2"]]
        try both({ ["resize", "--image-opts", Self.qcow2 + "\($0).qcow2,read-only=on", "8M"] }, setup: copy)
        try both({ ["resize", "--image-opts", Self.qcow2 + "\($0).qcow2,force-share=on", "8M"] }, setup: copy)
        try both({ ["resize", "--image-opts", Self.qcow2 + "\($0).qcow2,l2-cache-size=1M", "8M"] }, setup: copy)
        #expect(run.sameBytes("theirs.qcow2", "ours.qcow2"))
        try both({ ["convert", "-O", "qcow2", "--image-opts", Self.qcow2 + "top.qcow2", "\($0)-c.qcow2"] })
        #expect(run.sameBytes("theirs-c.qcow2", "ours-c.qcow2"))
        try both({ ["convert", "-O", "qcow2", "--target-image-opts", "top.qcow2", Self.qcow2 + "\($0)-t.qcow2"] })
        let empty = [["create", "-q", "-f", "qcow2", "OUT-n.qcow2", "4M"]]
        try both({ ["convert", "-n", "--target-image-opts", "top.qcow2", Self.qcow2 + "\($0)-n.qcow2"] }, setup: empty)
        #expect(run.sameBytes("theirs-n.qcow2", "ours-n.qcow2"))
        try both({ ["dd", "--image-opts", "if=" + Self.qcow2 + "top.qcow2", "of=\($0)-dd.raw", "bs=64k", "count=40"] })
        #expect(run.sameBytes("theirs-dd.raw", "ours-dd.raw"))
        try both({ ["rebase", "-u", "-b", "", "--image-opts", Self.qcow2 + "\($0).qcow2"] })
        #expect(run.sameBytes("theirs.qcow2", "ours.qcow2"))
    }

    @Test("--object: secrets checked and unused, other types answered as qemu-img answers them")
    func objects() throws {
        let run = try QemuImgDifferential()
        try run.makeFixtures()
        var cases: [[String]] = []
        for object in ["secret,id=s0,data=abc", "secret,id=s0", "secret,data=x", "foo,id=x", "secret,id=s0,file=/nonexistent",
                       "secret,id=s0,file=/etc/hostname", "secret,id=s0,data=abc,format=base64", "secret,id=s0,data=a,format=bad",
                       "secret,id=s0,data=abc,bogus=1", "id=x", "", "secret,id=s0,data=a,id=s1", "iothread,id=i",
                       "help", "secret,help", "secret,id=s0,data=a,file=/etc/hostname", "secret,id=s0,data=a,loaded=x"] {
            cases.append(["info", "--object", object, "top.qcow2"])
        }
        cases.append(["info", "--object", "secret,id=s0,data=a", "--object", "secret,id=s0,data=b", "top.qcow2"])
        // One registry with serve and qcowkit nbd: TLS credentials load (or fail) as in qemu-img, JSON form too.
        for object in ["tls-creds-x509,id=t0,dir=/nonexistent,endpoint=server", "tls-creds-x509,id=t0,dir=/nonexistent,bogus=1",
                       "tls-creds-psk,id=p0,dir=/nonexistent", "tls-creds-x509,id=t0,endpoint=x",
                       #"{"qom-type":"secret","id":"s0","data":"x"}"#, #"{"qom-type":"secret","id":"s0"}"#] {
            cases.append(["info", "--object", object, "top.qcow2"])
        }
        let secret = "secret,id=s,data=x"
        cases += [["compare", "--object", "foo,id=x", "top.qcow2", "top.qcow2"], ["compare", "--object", secret, "top.qcow2", "top.qcow2"],
                  ["check", "--object", secret, "flat.qcow2"], ["map", "--object", secret, "top.qcow2"],
                  ["snapshot", "--object", secret, "-l", "top.qcow2"], ["measure", "--object", secret, "--size", "1M"],
                  ["create", "--object", "bad,id=s", "-f", "qcow2", "new.qcow2", "1M"],
                  ["convert", "--object", "secret,id=s", "-O", "raw", "top.qcow2", "out.raw"],
                  ["commit", "--object", "cheese,id=s", "top.qcow2"], ["resize", "--object", "x", "top.qcow2", "1M"]]
        let differences = try cases.compactMap { try run.difference($0) }
        #expect(differences.isEmpty, "\(differences.joined(separator: "\n\n"))")
    }
}
