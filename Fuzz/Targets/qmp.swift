// Fuzz target `qmp`: QMP sessions on the service, driven in-process (the
// transport-free session the QMP tests use). The input is
//
//   byte 0      options: bit 0 negotiates capabilities first, bit 1 pretty
//               output, bits 2-7 with byte 1 where the text is cut in two
//   byte 1      (see above)
//   then        what the client sends
//
// Every iteration starts a fresh service, in the scratch directory, which
// holds two small images: "base.qcow2" and "top.qcow2" (backed by it); the
// session's requests may open them, start jobs on them, and quit. Inputs
// with '/' or '\' are skipped, so that no name can leave the scratch
// directory (the JSON target covers escapes). At the end the service shuts
// down as on quit: jobs cancelled and settled, images closed. What must
// hold, beyond no crash, hang or huge allocation: everything sent is QMP
// (each message an object holding exactly one of QMP, return, error, event),
// the greeting comes first, and, unless the client quit, there is one reply
// per request the stream parser saw, in order, each carrying its request's
// id. With QCOWKIT_FUZZ_TRACE set, what the service sent is printed.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FuzzSupport
@testable import Qcow2
import QemuJSON
// The session API is internal (the QMP tests use it the same way): the fuzz
// build enables testable imports.
@testable import QMP

private let scratch = ScratchFiles.shared
/// The images' bytes, made once and written again before every iteration.
nonisolated(unsafe) private var images: [(name: String, bytes: [UInt8])] = []

@_cdecl("LLVMFuzzerInitialize")
public func fuzzQMPInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    StandardStreams.silenceOutput()
    guard chdir(scratch.directory) == 0 else { fatalError("cannot enter \(scratch.directory)") }
    var base = Qcow2CreateOptions(size: 64 << 10)
    base.clusterSize = 512
    var top = base
    top.backingFile = "base.qcow2"
    top.backingFormat = "qcow2"
    do {
        try Qcow2Creator.create(path: scratch.path("base.qcow2"), options: base)
        let image = try Qcow2Image.open(path: scratch.path("base.qcow2"), writable: true)
        let data = [UInt8](repeating: 0xb5, count: 6 << 10)
        try data.withUnsafeBytes { try image.write($0, at: 1024) }
        try image.close()
        try Qcow2Creator.create(path: scratch.path("top.qcow2"), options: top)
        for name in ["base.qcow2", "top.qcow2"] {
            let file = try BlockFile(path: scratch.path(name), writable: false)
            images.append((name, try file.readExactly(Int(try file.size()), at: 0, step: "reading")))
            try file.close()
        }
    } catch {
        fatalError("cannot make the images: \(error)")
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQMP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let cutByte = input.byte()
    let bytes = input.rest()
    guard !bytes.contains(UInt8(ascii: "/")) && !bytes.contains(UInt8(ascii: "\\")) else { return 0 }
    for (name, image) in images { scratch.write(name, image) }

    // GLib missing is the machine's fault, not the input's.
    let service = try! QMPService(version: QMPVersion(package: "fuzz"))
    var output: [UInt8] = []
    let session = service.openSession(pretty: options & 2 != 0) { output += $0 }
    if options & 1 != 0 { session.receive(Array(#"{"execute": "qmp_capabilities"}"#.utf8)) }
    let negotiationReplies = options & 1 != 0 ? 1 : 0
    let cut = bytes.isEmpty ? 0 : (Int(options >> 2) << 8 | Int(cutByte)) % (bytes.count + 1)
    session.receive(Array(bytes[..<cut]))
    session.receive(Array(bytes[cut...]))
    let quit = service.isShuttingDown
    if !quit { service.shutDown(reason: .hostQMPQuit) }
    service.serve()

    if getenv("QCOWKIT_FUZZ_TRACE") != nil { fputs(String(decoding: output, as: UTF8.self), stderr) }
    checkOutput(output, requests: bytes, negotiationReplies: negotiationReplies, quit: quit)
    return 0
}

/// What was sent is a QMP stream; without quit, one reply per request in order.
private func checkOutput(_ output: [UInt8], requests: [UInt8], negotiationReplies: Int, quit: Bool) {
    var parser = JSONMessageParser()
    let messages = parser.feed(output) + parser.flush()
    var replies: [JSONValue] = []
    for (index, outcome) in messages.enumerated() {
        guard case let .value(message) = outcome, case let .object(members) = message else {
            fuzzRequire(false, "not a JSON object on the wire: \(outcome)")
            return
        }
        let kinds = members.map(\.0).filter { ["QMP", "return", "error", "event"].contains($0) }
        fuzzRequire(kinds.count == 1, "a message that is not one QMP message: \(message)")
        fuzzRequire((index == 0) == (kinds.first == "QMP"), "the greeting is not first, and only first: \(message)")
        if kinds.first == "return" || kinds.first == "error" { replies.append(message) }
    }
    guard !quit else { return }
    var requestParser = JSONMessageParser()
    let outcomes = requestParser.feed(requests)
    let answered = Array(replies.dropFirst(negotiationReplies))
    fuzzRequire(answered.count == outcomes.count,
                "\(outcomes.count) requests but \(answered.count) replies")
    for (outcome, reply) in zip(outcomes, answered) {
        if case let .value(request) = outcome, let id = request["id"], case .object = request {
            fuzzRequire(reply["id"] == id, "reply \(reply) does not carry the id of \(request)")
        }
    }
}
