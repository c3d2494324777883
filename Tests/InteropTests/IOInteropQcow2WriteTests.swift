// `qcowkit io` against qemu-io 7.2 writing qcow2 images: the same commands
// must print the same, and leave images qemu-img finds identical in content
// and consistent.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io writing qcow2 images")
struct IOInteropQcow2WriteTests {
    /// An empty image, one with a backing file, and one of another layout.
    private static func fixtures() throws -> IOTwinDirectories {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "empty.qcow2", "4M"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", "base.qcow2"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "4M"],
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=32k,compression_type=zstd",
             "l2.qcow2", "4M"],
        ])
        return twins
    }

    static let cases: [[String]] = [
        ["write 0 64k", "write -P 0x41 1000 100", "write -P 0x42 70000 200000", "read -v 990 20", "map", "alloc 0 4M"],
        ["write -z 0 64k", "write -z 100k 8k", "write -z -u 1M 128k", "write -zu 2M 1000", "map", "alloc 0 4M"],
        ["write -c 0 64k", "write -c -P 0x43 64k 128k", "write -c 1 512", "write -c 512 512", "write -c 4128768 64k",
         "read -P 0x43 64k 128k", "map"],
        ["write 0 1M", "discard 0 64k", "discard 100k 8k", "discard 512k 512k", "read -P 0 0 64k", "map", "alloc 0 4M"],
        ["write -P 1 0 4M", "write -z 1M 1M", "discard 3M 1M", "write -c 2M 64k", "flush", "map"],
        ["write 4M 1", "write -z 4193792 1k", "discard 4M 1", "write 0 0", "write -z 0 0", "discard 0 0"],
        ["writev -P 5 0 512 1k 64k", "aio_write -P 6 1M 64k", "aio_flush", "aio_write -z 2M 64k", "aio_flush",
         "readv -P 5 0 66048", "read -P 6 1M 64k", "read -P 0 2M 64k"],
    ]

    @Test("writes, zero writes, compressed writes and discards", arguments: cases)
    func writes(_ commands: [String]) throws {
        let twins = try Self.fixtures()
        for image in ["empty.qcow2", "top.qcow2", "l2.qcow2"] {
            try twins.syncCopies()
            let arguments = ["-f", "qcow2"] + commands.flatMap { ["-c", $0] } + [image]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(image): \(commands)")
            #expect(try twins.sameContent(image), "\(image): \(commands)")
            let check = try IOProcess.run(["qemu-img", "check", "-f", "qcow2", image], in: twins.ours)
            #expect(check.status == 0, "\(image): \(commands): \(check.output)\(check.error)")
        }
    }
}
