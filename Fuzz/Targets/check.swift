// Fuzz target `check`: the consistency checker on a fuzzed image, read-only
// and repairing a copy. The input is
//
//   byte 0      options: bit 0 repairs with -r leaks instead of -r all
//   then        the image file
//
// The image is checked read-only (library), then through the CLI verb in
// both output styles (only when any backing name stays in the scratch
// directory: the verb opens the chain). A copy is then repaired as
// `qcowkit check -r` does it (repair, check again, finish) and checked once
// more. Errors are fine; what must hold, beyond no crash, hang or huge
// allocation: a repair never makes an image that looked consistent worse.
// If the first check found no corruption and no check error, the repair
// succeeds, the repaired copy checks with no corruption, no check error and
// no more leaks than before, and its guest data reads as the original's.

import FuzzSupport
@testable import Qcow2
import QcowKitCommands

/// Guest bytes compared between the original and the repaired copy, at most.
private let compareBudget = 4 << 20

@_cdecl("LLVMFuzzerInitialize")
public func fuzzCheckInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    // The CLI prints to standard output; libFuzzer reports on standard error.
    StandardStreams.silenceOutput()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheck(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let bytes = input.rest()
    let repair: CheckRepair = options & 1 == 0 ? .all : .leaks

    let scratch = ScratchFiles.shared
    let path = scratch.write("image.qcow2", bytes)
    let first = check(path, repair: [])

    // The CLI verb, whose diagnostics go to standard error: silenced here.
    if BackingNames.allContained([bytes], in: scratch.directory) {
        StandardStreams.withErrorSilenced {
            for arguments in [["check", path], ["check", "--output=json", path]] {
                _ = QcowKit.run(arguments)
            }
        }
        // Opening the chain must not have changed the file.
        fuzzRequire(Bytes.equal(readFile(path), bytes), "check without -r changed the image")
    }

    // Repair a copy as `qcowkit check -r` does.
    let copy = scratch.write("copy.qcow2", bytes)
    var repaired: CheckResult?
    if let checker = try? Qcow2Checker.open(path: copy, writable: true) {
        repaired = try? checker.check(repair: repair, diagnostics: { _ in })
        if let result = repaired, result.corruptionsFixed != 0 || result.leaksFixed != 0 {
            repaired = try? checker.check(repair: [], diagnostics: { _ in })
        }
        if (try? checker.finishRepairs()) == nil { repaired = nil }
        try? checker.close()
    }
    let second = check(copy, repair: [])

    guard let first, first.corruptions == 0 && first.checkErrors == 0 else { return 0 }
    fuzzRequire(repaired != nil, "repairing an image that looked consistent failed (first check: \(first))")
    guard let second else {
        fuzzRequire(false, "the repaired copy of an image that looked consistent cannot be checked")
        return 0
    }
    fuzzRequire(second.corruptions == 0 && second.checkErrors == 0 && second.leaks <= first.leaks,
                "repair made an image worse: \(first) then \(second)")
    compareGuestData(path, copy)
    return 0
}

private func check(_ path: String, repair: CheckRepair) -> CheckResult? {
    guard let checker = try? Qcow2Checker.open(path: path, writable: !repair.isEmpty) else { return nil }
    defer { try? checker.close() }
    return try? checker.check(repair: repair, diagnostics: { _ in })
}

/// The guest data of the original and the repaired copy (each opened alone,
/// read-only) agree, as far as both read.
private func compareGuestData(_ original: String, _ copy: String) {
    guard let a = try? Qcow2Image.open(path: original), let b = try? Qcow2Image.open(path: copy) else { return }
    defer { try? a.close(); try? b.close() }
    fuzzRequire(a.size == b.size, "repair changed the disk size")
    let head = Int(min(a.size, UInt64(compareBudget)))
    var x = [UInt8](repeating: 0, count: head), y = [UInt8](repeating: 0, count: head)
    let goodA = x.withUnsafeMutableBytes { ImageWalk.read(a, at: 0, into: $0, piece: 1 << 16, skew: 0) }
    let goodB = y.withUnsafeMutableBytes { ImageWalk.read(b, at: 0, into: $0, piece: 1 << 16, skew: 0) }
    for range in ImageWalk.intersect(goodA, goodB) {
        fuzzRequire(Bytes.equal(x[range], y[range]), "repair changed the guest data in \(range)")
    }
}

private func readFile(_ path: String) -> [UInt8] {
    guard let file = try? BlockFile(path: path, writable: false) else { return [] }
    defer { try? file.close() }
    guard let size = try? file.size() else { return [] }
    return (try? file.readExactly(Int(size), at: 0, step: "reading")) ?? []
}
