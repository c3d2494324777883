// Persistent dirty bitmaps against QEMU 7.2: the same writes, zero writes,
// discards and bitmap operations on two copies of an image (qemu-io /
// qemu-img vs qcowkit io / bitmap / resize), over several cluster sizes,
// granularities and extended L2 entries; see BitmapInteropSupport.swift
// for what is compared.

import Foundation
import Testing

@Suite("bitmaps against qemu-img / qemu-io 7.2")
struct BitmapInteropTests {
    static let cases: [BitmapCase] = [
        BitmapCase(name: "64 KiB clusters: add, write, merge, clear, enable, remove", createOptions: "", size: "10M", steps: [
            .bitmap("--add", name: "b0"),
            .io("write -P 1 0 100k", "write -z 1M 64k", "discard 2M 64k"),
            .bitmap("--add", "-g", "512", "--disable", name: "b1"),
            .io("write 5M 1k", "write -z -u 6M 128k"),
            .bitmap("--merge", "b0", name: "b1"),
            .bitmap("--clear", name: "b0"),
            .bitmap("--enable", name: "b1"),
            .io("write 7M 3k"),
            .bitmap("--remove", name: "b0"),
            .bitmap("--add", "--add", name: "b2"),
            .io("write 9M 512"),
            .check("-r", "all"),
            .check("-r", "leaks"),
        ]),
        BitmapCase(name: "16 KiB clusters with extended L2, 1 KiB and 2 MiB granularity",
                   createOptions: "cluster_size=16k,extended_l2=on", size: "50M", steps: [
            .bitmap("--add", "-g", "1k", name: "fine"),
            .bitmap("--add", "-g", "2M", name: "coarse"),
            .io("write 0 100k", "write -z 1M 64k", "discard 2M 64k", "write -c 8M 16k", "write 49M 1M"),
            .bitmap("--remove", name: "fine"),
            .io("write 3k 1k"),
            .bitmap("--disable", "--clear", name: "coarse"),
        ]),
        BitmapCase(name: "2 MiB clusters, a 3 GiB disk at 512 bytes a bit", createOptions: "cluster_size=2M", size: "3G", steps: [
            .bitmap("--add", "-g", "512", name: "b0"),
            .io("write 1G 100k", "write -z 2G 64k", "write 3071M 1M"),
            .bitmap("--add", name: "b1"),
            .io("write 0 1"),
        ]),
        BitmapCase(name: "512-byte clusters, a bitmap fully set, and refusals", createOptions: "cluster_size=512", size: "10M", steps: [
            .bitmap("--add", name: "b0"),
            .io("write 0 10M"),
            .bitmap("--disable", name: "b0"),
            .bitmap("--remove", name: "nope"),
            .bitmap("--clear", name: "nope"),
            .bitmap("--merge", "zz", name: "b0"),
            .bitmap(name: "b0"),
            .bitmap("--add", "-g", "3000", name: "b1"),
            .bitmap("--add", "-g", "4G", name: "b1"),
            .bitmap("--add", "-g", "1k", "--remove", name: "b1"),
            .bitmap("--add", "-f", "raw", name: "b1"),
            .bitmap("--add", name: ""),
            .bitmap("--add", name: String(repeating: "n", count: 1024)),
        ]),
        BitmapCase(name: "version 2 images store no bitmaps", createOptions: "compat=0.10", size: "10M", steps: [
            .bitmap("--add", name: "b0"),
            .io("write 0 64k"),
        ]),
        BitmapCase(name: "bitmaps left in use by a killed qemu-io: inconsistent, writes still work",
                   createOptions: "", size: "10M",
                   setup: [["qemu-img", "bitmap", "--add", "IMAGE", "b0"], ["qemu-img", "bitmap", "--add", "IMAGE", "b1"],
                           ["qemu-io", "-c", "write 0 64k", "-c", "sigraise 9", "IMAGE"],
                           ["qemu-img", "bitmap", "--add", "IMAGE", "fresh"]],
                   steps: [
            .io("write 1M 64k"),
            .bitmap("--clear", name: "b0"),
            .bitmap("--enable", name: "b1"),
            .bitmap("--merge", "b0", name: "fresh"),
            .resize("20M"),
            .bitmap("--remove", name: "b0"),
            .io("write 2M 64k"),
            .check("-r", "leaks"),
            .bitmap("--remove", name: "b1"),
            .resize("20M"),
            .io("write 19M 64k"),
        ], leaks: true),
        BitmapCase(name: "resize with bitmaps, growing and shrinking", createOptions: "", size: "10M", steps: [
            .bitmap("--add", name: "b0"),
            .bitmap("--add", "-g", "512", name: "b1"),
            .io("write 9M 1M", "write 0 4k"),
            .resize("30M"),
            .io("write 25M 64k"),
            .resize("--shrink", "5M"),
            .resize("+1536"),
        ]),
        BitmapCase(name: "a stale bitmaps extension (autoclear bit cleared) dropped by check -r",
                   createOptions: "", size: "4M",
                   setup: [["qemu-img", "bitmap", "--add", "IMAGE", "b0"], ["qemu-io", "-c", "write 0 64k", "IMAGE"],
                           ["sh", "-c", "printf '\\000\\000\\000\\000\\000\\000\\000\\000' | dd of=IMAGE bs=1 seek=88 conv=notrunc 2>/dev/null"]],
                   steps: [
            .check("-r", "all"),
            .io("write 1M 64k"),
            .bitmap("--add", name: "n"),
        ]),
        BitmapCase(name: "the last bitmap removed drops the extension", createOptions: "", size: "4M", steps: [
            .bitmap("--add", name: "only"),
            .io("write 0 64k"),
            .bitmap("--remove", name: "only"),
            .io("write 1M 64k"),
            .bitmap("--add", "-g", "8k", name: "again"),
        ]),
    ]

    @Test("the same steps leave the same image and bits", arguments: cases)
    func differential(_ testCase: BitmapCase) throws {
        try BitmapOracle.run(testCase)
    }

    @Test("--merge from another image (-b, -F), and sizes that differ")
    func mergeFromAnotherFile() throws {
        let source = NSTemporaryDirectory() + "qcowkit-bitmap-source-\(UUID().uuidString).qcow2"
        let small = NSTemporaryDirectory() + "qcowkit-bitmap-small-\(UUID().uuidString).qcow2"
        defer {
            try? FileManager.default.removeItem(atPath: source)
            try? FileManager.default.removeItem(atPath: small)
        }
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", source, "10M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "4k", source, "s0"])
        try QemuOracle.run(["qemu-io", "-c", "write 3M 200k", "-c", "write 9M 1k", source])
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", small, "5M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", small, "s1"])
        try BitmapOracle.run(BitmapCase(name: "merge", createOptions: "", size: "10M", steps: [
            .bitmap("--add", name: "b0"),
            .bitmap("--merge", "s0", "-b", source, name: "b0"),
            .bitmap("--merge", "s0", "-b", source, "-F", "qcow2", name: "b0"),
            .bitmap("--merge", "nope", "-b", source, name: "b0"),
            .bitmap("--merge", "s1", "-b", small, name: "b0"),
            .bitmap("-F", "raw", "--remove", name: "b0"),
            .bitmap("-b", source, "--remove", name: "b0"),
        ]))
    }

    /// convert --bitmaps [--skip-broken-bitmaps]: qemu-img convert and
    /// qcowkit convert on the same sources; the outputs, messages and bits
    /// must agree.
    @Test("convert --bitmaps", arguments: [
        ["--bitmaps", "-O", "qcow2", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "qcow2", "-o", "cluster_size=4k,extended_l2=off", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "qcow2", "-o", "cluster_size=16k,extended_l2=on", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "qcow2", "INUSE", "OUT"],
        ["--bitmaps", "--skip-broken-bitmaps", "-O", "qcow2", "INUSE", "OUT"],
        ["--skip-broken-bitmaps", "-O", "qcow2", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "qcow2", "SOURCE", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "raw", "SOURCE", "OUT"],
        ["--bitmaps", "-O", "qcow2", "-o", "compat=0.10", "SOURCE", "OUT"],
    ])
    func convert(_ arguments: [String]) throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-convert-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = root + "/source.qcow2", inUse = root + "/inuse.qcow2"
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", source, "10M"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", source, "b0"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "512", "--disable", source, "b1"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "1M", source, "b2"])
        try QemuOracle.run(["qemu-io", "-c", "write -P 7 0 100k", "-c", "write -z 1M 64k", "-c", "discard 2M 64k", source])
        try QemuOracle.run(["qemu-img", "bitmap", "--enable", "--merge", "b0", source, "b1"])
        try QemuOracle.run(["qemu-io", "-c", "write 5M 3k", source])
        try FileManager.default.copyItem(atPath: source, toPath: inUse)
        _ = try QemuOracle.run(["qemu-io", "-c", "write 8M 64k", "-c", "sigraise 9", inUse], check: false)

        func run(_ qemu: Bool) throws -> (ProcessResult, String) {
            let out = root + (qemu ? "/theirs.out" : "/ours.out")
            let resolved = arguments.map { $0 == "SOURCE" ? source : $0 == "INUSE" ? inUse : $0 == "OUT" ? out : $0 }
            let result = try QemuOracle.run((qemu ? ["qemu-img"] : ["qcowkit"]) + ["convert"] + resolved, check: false)
            return (result, out)
        }
        let (expected, theirs) = try run(true)
        let (actual, ours) = try run(false)
        #expect(actual.status == expected.status)
        #expect(BitmapOracle.normalized(actual.errorOutput, image: ours) == BitmapOracle.normalized(expected.errorOutput, image: theirs))
        let fm = FileManager.default
        #expect(fm.fileExists(atPath: ours) == fm.fileExists(atPath: theirs))
        guard fm.fileExists(atPath: theirs), fm.fileExists(atPath: ours) else { return }
        let identical = try Data(contentsOf: URL(fileURLWithPath: ours)) == Data(contentsOf: URL(fileURLWithPath: theirs))
        #expect(identical, "outputs differ")
        guard arguments.contains("qcow2"), expected.status == 0 else { return }
        let info = try QemuOracle.run(["qemu-img", "info", "--output=json", theirs])
        let ourInfo = try QemuOracle.run(["qemu-img", "info", "--output=json", ours])
        #expect(try BitmapOracle.formatSpecific(ourInfo.output) == BitmapOracle.formatSpecific(info.output))
        for bitmap in try BitmapOracle.consistentBitmaps(info.output) {
            #expect(try BitmapOracle.dirtyMap(ours, bitmap) == BitmapOracle.dirtyMap(theirs, bitmap), "bits of \(bitmap)")
        }
    }
}
