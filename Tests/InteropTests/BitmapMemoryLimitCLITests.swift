// The bitmap memory cap through the verbs: an image made by qemu-img (2 TiB,
// one 512-byte-granularity bitmap, 512 MiB) whose directory is then
// rewritten to list five bitmaps sharing its table, every entry all ones.
// qemu-io 7.2 loads it (measured: 2.6 GB resident, 12 s); the verbs that
// load bits refuse it with the cap's message, and `info` still lists it.
import Foundation
import Testing
import TestSupport

@Suite("Bitmap memory cap: the verbs")
struct BitmapMemoryLimitCLITests {
    static let rewrite = """
        import struct, sys
        f = open(sys.argv[1], 'r+b'); d = f.read(65536)
        off = struct.unpack('>I', d[100:104])[0]
        while struct.unpack('>I', d[off:off + 4])[0] != 0x23852875:
            off += 8 + ((struct.unpack('>I', d[off + 4:off + 8])[0] + 7) & ~7)
        n, _, size, directory = struct.unpack('>IIQQ', d[off + 8:off + 32])
        f.seek(directory); table, entries = struct.unpack('>QI', f.read(12))
        f.seek(table); f.write(struct.pack('>Q', 1) * entries)
        out = b''
        for i in range(5):
            name = b'b%d' % i
            e = struct.pack('>QIIBBHI', table, entries, 2, 1, 9, len(name), 0) + name
            out += e + b'\\0' * ((-len(e)) % 8)
        f.seek(directory); f.write(out)
        f.seek(off + 8); f.write(struct.pack('>IIQQ', 5, 0, len(out), directory))
        """
    static let message = "Dirty bitmaps would need 2684354560 bytes of memory, more than qcowkit's limit of "
        + "2147483648 bytes"

    @Test("io, nbd -B and convert --bitmaps refuse it; info lists it")
    func verbs() throws {
        let root = NSTemporaryDirectory() + "qcowkit-bitmap-cap-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let image = root + "/h.qcow2"
        try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "2T"])
        try QemuOracle.run(["qemu-img", "bitmap", "--add", "-g", "512", image, "a"])
        try QemuOracle.run(["/usr/bin/python3", "-c", Self.rewrite, image])
        let info = try QemuOracle.run(["qcowkit", "info", image])
        #expect(info.output.contains("name: b4"))
        for command in [["qcowkit", "io", "-c", "write 0 512", image],
                        ["qcowkit", "nbd", "-r", "-t", "-k", root + "/s.sock", "-B", "b0", image],
                        ["qcowkit", "convert", "--bitmaps", "-O", "qcow2", image, root + "/out.qcow2"]] {
            let result = try QemuOracle.run(command, check: false)
            #expect(result.status == 1, "\(command[1])")
            #expect(result.errorOutput.contains(Self.message), "\(command[1]): \(result.errorOutput)")
            #expect(!result.errorOutput.contains("Try "), "\(command[1]): \(result.errorOutput)")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/out.qcow2"))
    }
}
