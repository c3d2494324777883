// qemu-io's truncate (and the debug-breakpoint commands qcowkit refuses)
// against qemu-io 7.2: the same output and exit status, and images
// byte-identical to qemu-io's after growing, shrinking and preallocating.
import Foundation
import Testing

@Suite("qcowkit io = qemu-io: truncate")
struct IOInteropTruncateTests {
    private static func fixtures() throws -> IOTwinDirectories {
        let twins = try IOTwinDirectories()
        try twins.prepare([
            ["qemu-img", "create", "-q", "-f", "qcow2", "disk.qcow2", "1M"],
            ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 900k", "disk.qcow2"],
            ["qemu-img", "create", "-q", "-f", "raw", "disk.raw", "1M"],
        ])
        return twins
    }

    static let cases: [[String]] = [
        ["truncate 2M"], ["truncate -m full 3M"], ["truncate -m metadata 3M"], ["truncate -m falloc 5M"],
        ["truncate -m bogus 2M"], ["truncate"], ["truncate x"], ["truncate -1"], ["truncate 512k"], ["t 4M"],
        ["truncate 1M 2M"], ["truncate 0"], ["truncate -m full 512k"], ["truncate 1000"], ["truncate 9E"],
        ["help truncate"], ["help wait_break"], ["truncate 3M", "write -P 9 2M 64k", "truncate 1M", "truncate 2M", "read -P 0 1M 1M"],
    ]

    @Test("grow, shrink and preallocate, qcow2 and raw", arguments: cases)
    func truncate(_ commands: [String]) throws {
        let twins = try Self.fixtures()
        for (image, format) in [("disk.qcow2", "qcow2"), ("disk.raw", "raw")] {
            try twins.syncCopies()
            let arguments = ["-f", format] + commands.flatMap { ["-c", $0] } + ["-c", "length", image]
            let (qemu, ours) = try twins.run(arguments)
            #expect(ours == qemu, "\(image): \(commands)")
            #expect(try twins.bytes(image, in: twins.qemu) == twins.bytes(image, in: twins.ours), "\(image): \(commands)")
        }
        let (qemu, ours) = try twins.run(["-r", "-c", "truncate 2M", "disk.qcow2"])
        #expect(ours == qemu)
    }
}
