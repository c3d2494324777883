// A bounded soak of `qcowkit nbd`: several libnbd clients at once, each
// writing its own range with up to 8 requests in flight (some FUA, varying
// unaligned lengths), reading it back; one more client is killed in the
// middle of large writes. Afterwards the image is `qemu-img check` clean and
// every acknowledged write reads back from the image file.
import Foundation
import Testing
import TestSupport

@Suite("qcowkit nbd under several clients at once", .serialized)
struct NBDSoakTests {
    static let stride = 65536
    static let slots = 48

    static let client = #"""
import nbd, sys
uri, cid, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stride, slots = int(sys.argv[4]), int(sys.argv[5])
h = nbd.NBD()
h.connect_uri(uri)
for i in range(slots):
    n = 1 + (cid * 7919 + i * 104729) % (stride - 1)
    data = bytes([(cid * 31 + i) & 0xff]) * n
    h.aio_pwrite(data, start + i * stride, flags=nbd.CMD_FLAG_FUA if i % 5 == 0 else 0)
    while h.aio_in_flight() >= 8:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
back = h.pread(slots * stride, start)
for i in range(slots):
    n = 1 + (cid * 7919 + i * 104729) % (stride - 1)
    want = bytes([(cid * 31 + i) & 0xff]) * n + bytes(stride - n)
    if back[i * stride:(i + 1) * stride] != want:
        print("mismatch", cid, i)
        sys.exit(1)
print("ok", cid)
"""#

    static let victim = #"""
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
start = int(sys.argv[2])
print("started", flush=True)
for i in range(200):
    h.aio_pwrite(bytes([i & 0xff]) * (4 * 1024 * 1024), start)
    while h.aio_in_flight() >= 4:
        h.poll(-1)
"""#

    /// The bytes client `cid` leaves in its range.
    static func expected(_ cid: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: slots * stride)
        for i in 0..<slots {
            let count = 1 + (cid * 7919 + i * 104729) % (stride - 1)
            for j in 0..<count { bytes[i * stride + j] = UInt8((cid * 31 + i) & 0xff) }
        }
        return bytes
    }

    @Test("Four writers and a killed client: acknowledged writes read back, the image checks clean")
    func soak() throws {
        let scratch = try ScratchDirectory()
        let dir = scratch.path
        try QemuOracle.qemuImg("create", "-q", "-f", "qcow2", dir + "/soak.qcow2", "64M")
        let server = try NBDServerProcess(qemu: false, socket: dir + "/s.sock",
                                          arguments: ["-t", "-e", "8", "-f", "qcow2", "soak.qcow2"], in: dir)
        let python = try NBDClients.python()
        try NBDSoakTests.client.write(toFile: dir + "/client.py", atomically: true, encoding: .utf8)
        try NBDSoakTests.victim.write(toFile: dir + "/victim.py", atomically: true, encoding: .utf8)

        let victimOutput = Pipe()
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: python)
        victim.arguments = [dir + "/victim.py", server.uri, String(40 << 20)]
        victim.standardOutput = victimOutput
        try victim.run()
        // Killed once it has requests in flight, while the writers run.
        _ = victimOutput.fileHandleForReading.readData(ofLength: 8)

        var writers: [(Process, Pipe)] = []
        for cid in 0..<4 {
            let process = Process(), output = Pipe()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [dir + "/client.py", server.uri, String(cid), String(cid * (8 << 20)),
                                 String(Self.stride), String(Self.slots)]
            process.standardOutput = output
            try process.run()
            writers.append((process, output))
        }
        usleep(100_000)
        victim.interrupt()
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        for (cid, (process, output)) in writers.enumerated() {
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0 && text.contains("ok \(cid)"), "client \(cid): \(text)")
        }
        #expect(server.stop().status == 0)

        let check = try QemuOracle.qemuImg("check", dir + "/soak.qcow2", check: false)
        #expect(check.status == 0, "\(check.output)")
        try QemuOracle.qemuImg("convert", "-O", "raw", dir + "/soak.qcow2", dir + "/soak.raw")
        let image = try FileHandle(forReadingFrom: URL(fileURLWithPath: dir + "/soak.raw"))
        defer { try? image.close() }
        for cid in 0..<4 {
            try image.seek(toOffset: UInt64(cid * (8 << 20)))
            let bytes = [UInt8](try image.read(upToCount: Self.slots * Self.stride) ?? Data())
            #expect(bytes == Self.expected(cid), "client \(cid)'s range")
        }
    }
}
