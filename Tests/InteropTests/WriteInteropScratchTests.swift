import Foundation
import Testing
@testable import Qcow2

@Test func writeScratch() throws {
    let dir = try WriteScratch()
    let random = WriteOracle.randomBytes(count: 65536, seed: 1)
    try Data(random).write(to: URL(fileURLWithPath: dir.file("R")))
    let env = ProcessInfo.processInfo.environment
    let opts = env["WOPTS"] ?? ""
    let size = env["WSIZE"] ?? "64M"
    var args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if !opts.isEmpty { args += ["-o", opts] }
    args += [dir.file("base.qcow2"), size]
    try QemuOracle.run(args)
    if let pre = env["WPRE"] { try QemuOracle.run(["sh", "-c", pre.replacingOccurrences(of: "IMG", with: dir.file("base.qcow2"))]) }
    let ops: [WriteOp] = (env["WOPS"] ?? "").split(separator: ";").compactMap { spec in
        let p = spec.split(separator: " ").map(String.init)
        let n = p.dropFirst().compactMap { UInt64($0) }
        switch p[0] {
        case "w": return .write(n[0], n[1], pattern: UInt8(n.count > 2 ? n[2] : 0xab))
        case "r": return .writeRandom(n[0], n[1])
        case "z": return .zeroes(n[0], n[1], unmap: false)
        case "zu": return .zeroes(n[0], n[1], unmap: true)
        case "d": return .discard(n[0], n[1])
        case "c": return .compressed(n[0], n[1], pattern: UInt8(n.count > 2 ? n[2] : 0x5c))
        case "cr": return .compressedRandom(n[0], n[1])
        default: return nil
        }
    }
    let q = try dir.copy(dir.file("base.qcow2"), to: "q.qcow2")
    let l = try dir.copy(dir.file("base.qcow2"), to: "l.qcow2")
    print("QEMU-IO:", try WriteOracle.applyWithQemuIO(q, ops, randomFile: dir.file("R")))
    let errors = try WriteOracle.applyWithLibrary(l, ops, random: random)
    print("LIB ERRORS:", errors)
    print("DIFF:", try WriteOracle.firstDifference(q, l) ?? "identical")
    print("CHECK:", try WriteOracle.check(l).output)
    print("COMPARE:", try WriteOracle.compare(q, l))
    if env["WKEEP"] != nil { try? FileManager.default.copyItem(atPath: q, toPath: "/tmp/wexp/q.qcow2"); try? FileManager.default.copyItem(atPath: l, toPath: "/tmp/wexp/l.qcow2") }
}

@Test func writeBench() throws {
    let env = ProcessInfo.processInfo.environment
    guard let mode = env["WBENCH"] else { return }
    let dir = try WriteScratch()
    let count = Int(env["WCOUNT"] ?? "4096")!
    let size: UInt64 = 1 << 30
    let bs = mode == "seq" ? 65536 : 4096
    var rng = WriteRandom(seed: 7)
    let offsets: [UInt64] = (0..<count).map { i in mode == "seq" ? UInt64(i * bs) : (rng.next() % (size / 4096)) * 4096 }
    try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", dir.file("q.qcow2"), "1G"])
    try QemuOracle.run(["qemu-img", "create", "-q", "-f", "qcow2", dir.file("l.qcow2"), "1G"])
    let script = offsets.map { "write -q -P 7 \($0) \(bs)" }.joined(separator: "\n") + "\n"
    try script.write(toFile: dir.file("cmds"), atomically: true, encoding: .utf8)
    var t0 = Date()
    try QemuOracle.run(["sh", "-c", "qemu-io \(dir.file("q.qcow2")) < \(dir.file("cmds")) > /dev/null"])
    let qt = Date().timeIntervalSince(t0)
    t0 = Date()
    let image = try Qcow2Image.open(path: dir.file("l.qcow2"), writable: true)
    let buf = [UInt8](repeating: 7, count: bs)
    for o in offsets { try buf.withUnsafeBytes { try image.write($0, at: o) } }
    try image.close()
    let lt = Date().timeIntervalSince(t0)
    print("BENCH \(mode) qemu-io \(qt)s library \(lt)s identical: \(try WriteOracle.firstDifference(dir.file("q.qcow2"), dir.file("l.qcow2")) ?? "yes")")
}
