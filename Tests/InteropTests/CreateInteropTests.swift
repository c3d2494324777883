// `qcowkit create` against `qemu-img create` (QEMU 7.2): for each command
// line, both run in directories with the same fixtures; the images must be
// byte-identical, the output and exit status the same (bar the program name),
// and each qcow2 image we write must pass `qemu-img check`.

import Foundation
import Testing
import TestSupport

struct CreateInteropCase: CustomTestStringConvertible, Sendable {
    var arguments: [String]
    init(_ arguments: String...) { self.arguments = arguments }
    var testDescription: String { arguments.joined(separator: " ") }
}

private func qcow2(_ options: String, _ size: String, file: String = "img.qcow2") -> CreateInteropCase {
    options.isEmpty ? CreateInteropCase("-f", "qcow2", file, size) : CreateInteropCase("-f", "qcow2", "-o", options, file, size)
}

enum CreateInteropCatalog {
    static let layouts: [CreateInteropCase] =
        ["512", "1k", "4k", "8k", "64k", "2M"].flatMap { cs in
            ["0", "1", "511", "64M", "1073741825"].map { qcow2("cluster_size=\(cs)", $0) }
        }
        + ["16T", "1P", "2P"].map { qcow2("", $0) }
        + [qcow2("cluster_size=512", "16T"), qcow2("cluster_size=2M", "4P"), qcow2("cluster_size=512,refcount_bits=64", "64G")]

    static let refcountWidths: [CreateInteropCase] = ["1", "2", "4", "8", "16", "32", "64"].flatMap { bits in
        [qcow2("refcount_bits=\(bits)", "1M"), qcow2("refcount_bits=\(bits)", "16T"),
         qcow2("cluster_size=512,refcount_bits=\(bits)", "1G"),
         qcow2("cluster_size=512,refcount_bits=\(bits),preallocation=metadata", "3M")]
    }

    static let features: [CreateInteropCase] = [
        qcow2("compat=0.10", "64M"), qcow2("compat=1.1", "64M"), qcow2("compat=v2", "1M"),
        qcow2("compression_type=zstd", "64M"), qcow2("extended_l2=on", "1G"),
        qcow2("extended_l2=on,cluster_size=16k", "100M"), qcow2("lazy_refcounts=on", "64M"),
        qcow2("lazy_refcounts,extended_l2=yes,compression_type=zstd,refcount_bits=8", "5G"),
        qcow2("cluster_size=0x10000,refcount_bits=0x10,nolazy_refcounts", "1M"),
    ]

    static let preallocation: [CreateInteropCase] = ["metadata", "falloc", "full"].flatMap { mode in
        [qcow2("preallocation=\(mode)", "0"), qcow2("preallocation=\(mode)", "511"),
         qcow2("preallocation=\(mode)", "3000001"), qcow2("preallocation=\(mode),cluster_size=512", "2M"),
         qcow2("preallocation=\(mode),cluster_size=2M", "5M"),
         qcow2("preallocation=\(mode),extended_l2=on", "100000"),
         qcow2("preallocation=\(mode),compat=0.10", "1M"),
         qcow2("preallocation=\(mode),refcount_bits=1,cluster_size=1k", "3M")]
    } + [qcow2("preallocation=metadata", "1G"), qcow2("preallocation=metadata,lazy_refcounts=on", "100M"),
         qcow2("preallocation=off", "1M")]

    static let backing: [CreateInteropCase] = [
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img.qcow2", "1G"),
        CreateInteropCase("-f", "qcow2", "-b", "base.raw", "-F", "raw", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "raw", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.raw", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.raw", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-b", "missing", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "broken.qcow2", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", "broken.qcow2", "-F", "qcow2", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", "missing", "-F", "qcow2", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", "missing", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", "missing", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", "missing", "-F", "vmdk", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-b", "b2.qcow2", "-F", "qcow2", "sub/img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "sub/b2.qcow2", "-F", "qcow2", "sub/img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "", "-F", "qcow2", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-F", "qcow2", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "compat=0.10", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "cluster_size=512", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "preallocation=metadata", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o", "preallocation=metadata,extended_l2=on", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-b", "base.raw", "-F", "raw", "-o", "preallocation=full,extended_l2=on", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2", "img.qcow2"),
        CreateInteropCase("-f", "qcow2", "-u", "-o", "backing_file=a,,b,backing_fmt=raw", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", String(repeating: "a", count: 600), "-F", "raw", "-o", "cluster_size=512", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", String(repeating: "a", count: 1023), "-F", "raw", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "-u", "-b", String(repeating: "a", count: 1024), "-F", "raw", "img.qcow2", "1M"),
    ]

    static let errors: [CreateInteropCase] = [
        "cluster_size=1000", "cluster_size=4M", "cluster_size=256", "refcount_bits=3", "refcount_bits=128",
        "refcount_bits=8,compat=0.10", "extended_l2=on,compat=0.10", "extended_l2=on,cluster_size=8k",
        "lazy_refcounts=on,compat=0.10", "compression_type=zstd,compat=0.10", "compression_type=lz4", "compat=2.0",
        "x=1", "preallocation=foo", "lazy_refcounts=maybe", "refcount_bits=abc", "refcount_bits=-16",
        "refcount_bits=18446744073709551615", "cluster_size=abc", "size=1M", "size=99E", "compat=2,preallocation=foo",
        "extent_size_hint=5G",
    ].map { qcow2($0, "1M") } + [
        qcow2("", "4P"), qcow2("", "9223372036854775807"), qcow2("", "8E"), qcow2("", "1.5"), qcow2("", "1Q"),
        qcow2("size=9223372036854775296", "", file: "img.qcow2").droppingEmpty,
        CreateInteropCase("-f", "qcow2", "img.qcow2"), CreateInteropCase("-f", "qcow2"),
        CreateInteropCase("-f", "foo", "img.qcow2", "1M"),
        CreateInteropCase("-f", "raw", "-o", "help"), CreateInteropCase("-f", "qcow2", "-o", "a=1,", "img.qcow2", "1M"),
        CreateInteropCase("-f", "qcow2", "img.qcow2", "1M", "extra"),
    ]

    static let sizesAndRaw: [CreateInteropCase] =
        ["1.5G", "1.k", "0x10", "0x10k", "1b", "+12", "0.1k", "1.0005k", "3.3333k", "7.99E"].map { qcow2("", $0) }
        + ["off", "falloc", "full", "metadata", "foo"].flatMap { mode in
            ["0", "1", "4095", "5000"].map { CreateInteropCase("-f", "raw", "-o", "preallocation=\(mode)", "img.raw", $0) }
        }
        + [CreateInteropCase("img.raw", "1M"), CreateInteropCase("-f", "raw", "-b", "base.raw", "img.raw", "1M"),
           CreateInteropCase("-f", "raw", "-o", "nocow=off,extent_size_hint=1M", "img.raw", "64k"),
           CreateInteropCase("-f", "raw", "-o", "size=0x10k", "img.raw"),
           CreateInteropCase("-q", "-f", "qcow2", "-o", "preallocation=metadata", "img.qcow2", "1M")]

    static let all = layouts + refcountWidths + features + preallocation + backing + errors + sizesAndRaw
}

extension CreateInteropCase {
    /// Drops empty arguments (a case built without a size).
    var droppingEmpty: CreateInteropCase {
        var c = self
        c.arguments.removeAll { $0.isEmpty }
        return c
    }
}

@Suite
struct CreateInteropTests {
    @Test(arguments: CreateInteropCatalog.all)
    func sameAsQemuImg(_ testCase: CreateInteropCase) throws {
        let workspace = try CreateOracleWorkspace()
        let qcowkit = try TestTools.qcowkit()
        let expected = try CreateOracle.run(CreateOracle.qemuImg, ["create"] + testCase.arguments, in: workspace.qemuDirectory)
        let actual = try CreateOracle.run(qcowkit, ["create"] + testCase.arguments, in: workspace.ourDirectory)

        #expect(actual.status == expected.status)
        #expect(actual.stdout == expected.stdout)
        #expect(actual.stderr == CreateOracle.renamed(expected.stderr))

        let theirs = CreateOracle.files(in: workspace.qemuDirectory)
        let ours = CreateOracle.files(in: workspace.ourDirectory)
        #expect(ours.keys.sorted() == theirs.keys.sorted())
        for (name, data) in theirs {
            guard let mine = ours[name] else { continue }
            #expect(mine.count == data.count, "\(name): length")
            #expect(mine == data, "\(name): bytes differ")
        }

        // Our new qcow2 images are consistent by QEMU's own check (the image
        // alone: with -u its backing file may not exist).
        for name in ours.keys where name.hasPrefix("img") || name.hasPrefix("sub/img") {
            guard ours[name]?.starts(with: [0x51, 0x46, 0x49, 0xfb]) == true else { continue }
            let alone = "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"\(name)\"},\"backing\":null}"
            let check = try CreateOracle.run(CreateOracle.qemuImg, ["check", "-U", alone], in: workspace.ourDirectory)
            #expect(check.status == 0, "qemu-img check \(name): \(check.stdout) \(check.stderr)")
            #expect(check.stdout.contains("No errors were found on the image."))
        }
    }

    @Test func catalogCoversEveryRequiredOption() {
        let text = CreateInteropCatalog.all.map(\.testDescription).joined(separator: "\n")
        for needle in ["cluster_size=512", "cluster_size=2M", "refcount_bits=1", "refcount_bits=64", "compat=0.10",
                       "compression_type=zstd", "extended_l2=on", "lazy_refcounts=on", "preallocation=metadata",
                       "preallocation=falloc", "preallocation=full", "-F qcow2", "-F raw", "16T", "1073741825"] {
            #expect(text.contains(needle), "\(needle)")
        }
    }
}
