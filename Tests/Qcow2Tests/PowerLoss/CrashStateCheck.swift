// The checks every crash state gets: written to a file, it must
//  - open; a dirty image (lazy refcounts) is first repaired by opening it
//    for writing, as QEMU repairs it on open;
//  - pass our check (in-process) with no corruption and no check error;
//    leaked clusters are allowed (a failure may strand allocations: a
//    refcount is raised before the reference lands), so the check runs as
//    `check -r leaks` does, the COPIED flags then compared with the mended
//    refcounts; a COPIED flag missing on a cluster of refcount 1 is allowed
//    too (`isBenign`);
//  - read, through our reader with its backing, as a state the guest may
//    see (GuestHistory: flushed data intact, unflushed sectors old or new);
//  - on a sample, also pass `qemu-img check -r leaks` on a copy of the
//    state as it was (exit 0, or 2 with only benign errors) and read the
//    same through QEMU (`qemu-img convert -O raw`).
import Foundation
import TestSupport
@testable import Qcow2

enum CrashStateCheck {
    /// A workload that could not run as planned.
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    struct Counts {
        var operations = 0
        var flushes = 0
        var states = 0
        var dirtyRepaired = 0
        var qemuChecked = 0
        /// Bitmap workloads: bitmaps found in-use (inconsistent), found
        /// consistent, and states whose bitmaps were all ignored (the
        /// autoclear bit clear).
        var bitmapsInUse = 0
        var bitmapsConsistent = 0
        var bitmapsIgnored = 0
        var failures: [String] = []
    }

    /// Checks `state`, adding to `counts`; the state file is left at `path`.
    /// `expectation` is the workload's own check of the state as it stands
    /// (before any repair): nil, or why it fails.
    static func check(_ state: CrashState, path: String, history: GuestHistory, qemu: Bool,
                      expectation: StateExpectation? = nil, counts: inout Counts) {
        counts.states += 1
        if let failure = failure(state, path: path, history: history, qemu: qemu, expectation: expectation,
                                 counts: &counts) {
            counts.failures.append("\(state.label): \(failure)")
        }
    }

    private static func failure(_ state: CrashState, path: String, history: GuestHistory, qemu: Bool,
                                expectation: StateExpectation?, counts: inout Counts) -> String? {
        do {
            try Data(state.file).write(to: URL(fileURLWithPath: path))
            if let expectation, let failure = try expectation.failure(path: path, state: state.file, qemu: qemu, counts: &counts) {
                return failure
            }
            if let failure = try repairIfDirty(path: path, counts: &counts) { return failure }
            // QEMU's copy, checked as it stands.
            if qemu { try Data(contentsOf: URL(fileURLWithPath: path)).write(to: URL(fileURLWithPath: path + ".qemu")) }
            if let failure = try ourCheckFailure(path: path) { return failure }
            let image = try ImageOpener.open(path: path, format: .qcow2, locking: .off)
            let view = try GuestView(of: image)
            try image.close()
            if let mismatch = history.mismatch(view, cut: state.cut) { return "our reader: \(mismatch)" }
            if qemu {
                counts.qemuChecked += 1
                if let failure = try qemuCheckFailure(copy: path + ".qemu") { return failure }
                return try qemuViewFailure(path: path, ours: view)
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The image at `path` with the corrupt bit is a failure; a dirty one
    /// (lazy refcounts, an emptying) is repaired by opening it for writing,
    /// as QEMU repairs it on open.
    static func repairIfDirty(path: String, counts: inout Counts) throws -> String? {
        let header = try Qcow2Header.decode(Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(4096)))
        if header.incompatibleFeatures.contains(.corrupt) { return "the corrupt bit is set" }
        if header.incompatibleFeatures.contains(.dirty) {
            let image = try Qcow2Image.open(path: path, writable: true, locking: .off)
            try image.close()
            counts.dirtyRepaired += 1
        }
        return nil
    }

    /// Our check of the image at `path` as `check -r leaks` runs it: nil,
    /// or the corruptions it found beyond benign ones.
    static func ourCheckFailure(path: String) throws -> String? {
        let checker = try Qcow2Checker.open(path: path, writable: true, locking: .off)
        var messages: [String] = []
        let result = try checker.check(repair: .leaks) { messages.append($0.text) }
        try checker.finishRepairs()
        try checker.close()
        let lines = messages.flatMap { $0.split(separator: "\n").map(String.init) }
        let benign = lines.filter(isBenign).count
        if result.checkErrors != 0 || result.corruptions > benign {
            let errors = lines.filter { $0.hasPrefix("ERROR") && !isBenign($0) }
            return "our check: \(result.corruptions) corruptions (\(benign) benign), \(result.checkErrors) errors: "
                + (errors.isEmpty ? lines : errors).prefix(4).joined(separator: " | ")
        }
        return nil
    }

    /// A COPIED flag missing where the refcount is 1: what a failure leaves
    /// between a refcount dropping to 1 and the flag being set again (a
    /// snapshot deleted), in the safe order: the cluster is only copied on
    /// its next write. The other way round (COPIED on a shared cluster)
    /// would let a write change a snapshot, and stays an error.
    static func isBenign(_ message: String) -> Bool {
        message.hasPrefix("ERROR OFLAG_COPIED") && message.hasSuffix(" refcount=1")
    }

    /// `qemu-img check -r leaks` of `copy` (removed after): nil, or why it fails.
    static func qemuCheckFailure(copy: String) throws -> String? {
        let qemuImg = try TestTools.qemuImg()
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let check = try run(qemuImg, ["check", "-r", "leaks", "-f", "qcow2", copy])
        let errors = check.stdout.split(separator: "\n").filter { $0.hasPrefix("ERROR") }
        let onlyBenign = check.status == 2 && !errors.isEmpty && errors.allSatisfy { isBenign(String($0)) }
        guard check.status == 0 || check.status == 3 || onlyBenign else {
            return "qemu-img check exit \(check.status): \(check.stdout.prefix(400)) \(check.stderr.prefix(200))"
        }
        return nil
    }

    /// Whether QEMU reads the image at `path` (with its backing) as `ours`.
    static func qemuViewFailure(path: String, ours: GuestView) throws -> String? {
        let qemuImg = try TestTools.qemuImg()
        let raw = path + ".raw"
        defer { try? FileManager.default.removeItem(atPath: raw) }
        let convert = try run(qemuImg, ["convert", "-f", "qcow2", "-O", "raw", path, raw])
        guard convert.status == 0 else { return "qemu-img convert exit \(convert.status): \(convert.stderr)" }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: raw)))
        var sectors: [UInt64] = []
        var start = 0
        while start < bytes.count {
            sectors.append(GuestView.hash(bytes[start..<min(start + GuestView.sectorSize, bytes.count)]))
            start += GuestView.sectorSize
        }
        guard UInt64(bytes.count) == ours.size, sectors == ours.sectors else {
            let first = zip(sectors, ours.sectors).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            return "QEMU reads the state differently (size \(bytes.count) vs \(ours.size), first sector \(first.map(String.init) ?? "-"))"
        }
        return nil
    }
}
