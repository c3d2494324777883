// A workload's run on an image whose file is recorded: the base (the file's
// bytes before the image is opened), every change the run makes, and the
// guest's view after every request (GuestHistory). Requests go through the
// library's own APIs, as an embedder's would.
import Foundation
@testable import Qcow2

final class RecordedRun {
    let path: String
    let base: [UInt8]
    let recorder = CrashRecorder()
    let history = GuestHistory()
    private(set) var image: Qcow2Image
    private var requests = 0

    /// Opens `path` for writing through a recorded file, with `backing`
    /// (a path, opened read-only) as its backing if given.
    init(path: String, backing: String? = nil) throws {
        self.path = path
        base = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let file = try BlockFile(path: path, writable: true, locking: .off, observer: recorder)
        image = try Qcow2Image(file: file)
        if let backing { image.attachBacking(try ImageOpener.open(path: backing, locking: .off)) }
        // Opening may write (a repair), but does not change what the guest reads.
        history.record(try GuestView(of: image), position: 0, durable: true, label: "base")
    }

    private func after(_ label: String, durable: Bool = false, pinned: Range<Int>? = nil) throws {
        requests += 1
        history.record(try GuestView(of: image), position: recorder.position, durable: durable,
                       label: "#\(requests) \(label)", pinned: pinned)
    }

    /// A request made some other way (through an NBD export of `image`),
    /// completed when `body` returns: `durable` for a completed flush,
    /// `pinned` for the sectors a FUA write made durable.
    func request(_ label: String, durable: Bool = false, pinned: Range<Int>? = nil, _ body: () throws -> Void) throws {
        try body()
        try after(label, durable: durable, pinned: pinned)
    }

    func write(_ offset: UInt64, _ count: Int, seed: UInt8) throws {
        let bytes = WriteFixture.pattern(seed, count: count)
        try bytes.withUnsafeBytes { try image.write($0, at: offset) }
        try after("write \(offset)+\(count)")
    }

    func writeCompressed(_ offset: UInt64, _ count: Int, seed: UInt8) throws {
        // Half pattern, half zeroes: compressible.
        var bytes = WriteFixture.pattern(seed, count: count / 2)
        bytes += [UInt8](repeating: 0, count: count - bytes.count)
        try bytes.withUnsafeBytes { try image.writeCompressed($0, at: offset) }
        try after("compressed \(offset)+\(count)")
    }

    func zero(_ offset: UInt64, _ length: UInt64, unmap: Bool) throws {
        try image.writeZeroes(at: offset, length: length, mayUnmap: unmap)
        try after("zero \(offset)+\(length)\(unmap ? " unmap" : "")")
    }

    func discard(_ offset: UInt64, _ length: UInt64) throws {
        try image.discard(at: offset, length: length)
        try after("discard \(offset)+\(length)")
    }

    func flush() throws {
        try image.flush()
        try after("flush", durable: true)
    }

    func createSnapshot(_ name: String) throws {
        _ = try image.createSnapshot(name: name, date: (1, 0))
        try after("snapshot create \(name)")
    }

    func applySnapshot(_ name: String) throws {
        try image.applySnapshot(name)
        try after("snapshot apply \(name)")
    }

    func deleteSnapshot(_ name: String) throws {
        try image.deleteSnapshot(name: name)
        try after("snapshot delete \(name)")
    }

    func resize(_ size: UInt64) throws {
        try image.truncate(to: size, preallocation: .off)
        try after("resize \(size)")
    }

    func amend(_ request: Qcow2AmendRequest, label: String) throws {
        try image.amend(request) { _, _ in }
        try after("amend \(label)")
    }

    /// A dirty bitmap command (add, clear, merge, remove) on the image.
    func bitmaps(_ label: String, _ command: (Qcow2Image) throws -> Void) throws {
        try command(image)
        try after("bitmap \(label)")
    }

    /// qemu-img rebase (safe mode) onto the raw image at `path`: the copy
    /// of what would change (flushed), then the header names it.
    func rebase(onto path: String) throws {
        let newBacking = try ImageOpener.open(path: path, format: .raw, locking: .off)
        try RebaseCopy.run(image: image, oldBacking: image.backing, newBacking: newBacking, prefix: nil) { _ in }
        try image.changeBackingFile(name: path, format: "raw")
        image.attachBacking(newBacking)
        try after("rebase onto \(path)")
    }

    /// Closes the image (caches written, dirty bit cleared) and returns the log.
    func close() throws -> [RecordedOperation] {
        try image.close()
        return recorder.operations
    }
}
