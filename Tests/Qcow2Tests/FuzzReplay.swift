// The fuzz targets' steps, for replaying their inputs in the test suite
// (the fuzz package itself is built only with the sanitizers). Same input
// layout as Fuzz/Targets/open-read.swift: an option byte (bit 0: probe the
// format), a 4-byte big-endian backing length, the top image, whose last
// bytes of that length are "backing.qcow2" in the same directory.
import Foundation
@testable import Qcow2

enum FuzzReplay {
    struct OpenReadOutcome {
        var opened = false
        var size: UInt64 = 0
        var mappedBytes: UInt64 = 0
        var mapError: Error?
        var readError: Error?
        var infoError: Error?
    }

    /// Base64 text, split over lines as the tests keep it, back to bytes.
    static func decode(_ text: String) throws -> [UInt8] {
        let joined = text.split(whereSeparator: \.isWhitespace).joined()
        guard let data = Data(base64Encoded: joined) else { throw CocoaError(.coderReadCorrupt) }
        return [UInt8](data)
    }

    /// Opens, maps (at most 4096 block-status answers), reads (at most
    /// 16 MiB) and runs info, as the open-read target does.
    static func openRead(_ input: [UInt8]) throws -> OpenReadOutcome {
        var bytes = input[...]
        let options = bytes.popFirst() ?? 0
        var backingLength: UInt64 = 0
        for _ in 0..<4 { backingLength = backingLength << 8 | UInt64(bytes.popFirst() ?? 0) }
        let split = bytes.count - Int(min(backingLength, UInt64(bytes.count)))
        let top = Array(bytes[bytes.startIndex..<(bytes.startIndex + split)])
        let backing = Array(bytes[(bytes.startIndex + split)...])

        let scratch = try HostileScratch()
        let topPath = try scratch.write("top.qcow2", top)
        if !backing.isEmpty { try scratch.write("backing.qcow2", backing) }

        var outcome = OpenReadOutcome()
        let format: ImageFormat? = options & 1 == 0 ? .qcow2 : nil
        if let image = try? ImageOpener.open(path: topPath, format: format) {
            defer { try? image.close() }
            outcome.opened = true
            outcome.size = image.size
            var offset: UInt64 = 0
            do {
                for _ in 0..<4096 where offset < image.size {
                    offset += try image.chainBlockStatus(at: offset, length: image.size - offset).status.length
                }
            } catch { outcome.mapError = error }
            outcome.mappedBytes = offset
            let head = Int(min(image.size, 16 << 20))
            do { _ = try image.read(head, at: 0) } catch { outcome.readError = error }
        }
        do { _ = try ImageInfoReader.read(path: topPath, format: format?.rawValue, backingChain: true) } catch {
            outcome.infoError = error
        }
        return outcome
    }
}
