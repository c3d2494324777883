// Fuzz target `open-read`: a whole image file (and a backing file) through
// everything that reads images. The input is
//
//   byte 0      options: bit 0 probes the format instead of forcing qcow2,
//               bits 1-2 pick the request size of the second read, bits 3-4
//               how much shorter its first request is (misaligning the rest)
//   bytes 1-4   length B of the backing file, big-endian (0: none)
//   then        the top image, and its last B bytes are "backing.qcow2"
//
// Both files go to a tmpfs scratch directory as "top.qcow2" and
// "backing.qcow2" (the name the seeds' headers use). The top is opened through
// ImageOpener with its chain; block status is asked over the disk as `map`
// asks it; the guest data is read twice with different request sizes; small
// images are converted to raw; and `info` runs through the CLI (output thrown
// away) and ImageInfoReader. Any error is fine. What must hold: no trap, no
// hang, no huge allocation (Scripts/fuzz.sh runs this with -timeout and
// -malloc_limit_mb), block status well formed, zero ranges read as zeroes,
// reads independent of how they are cut, convert's output equal to the reads.

import FuzzSupport
@testable import Qcow2
import QcowKitCommands

/// Guest bytes read per input, in all (the brief's cap: bounded work even for
/// an exabyte disk); block-status answers asked per walk.
private let readBudget = 16 << 20
private let maxMapSteps = 4096
/// Images up to this size are also converted to raw and compared.
private let convertLimit: UInt64 = 2 << 20

@_cdecl("LLVMFuzzerInitialize")
public func fuzzOpenReadInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    // The CLI prints to standard output; libFuzzer reports on standard error.
    StandardStreams.silenceOutput()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOpenRead(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let backingLength = Int(min(input.bigEndian(4), UInt64(Int32.max)))
    let backing = input.takeLast(backingLength)
    let top = input.rest()

    let scratch = ScratchFiles.shared
    guard BackingNames.allContained([top, backing], in: scratch.directory) else { return 0 }
    let topPath = scratch.write("top.qcow2", top)
    if backing.isEmpty { scratch.remove("backing.qcow2") } else { scratch.write("backing.qcow2", backing) }

    let format: ImageFormat? = options & 1 == 0 ? .qcow2 : nil
    let piece = [512, 4096 + 7, 65535, 3 << 20][Int(options >> 1) & 3]
    let skew = [0, 1, 511, 4097][Int(options >> 3) & 3]

    if let image = try? ImageOpener.open(path: topPath, format: format) {
        defer { try? image.close() }
        let (runs, _) = ImageWalk.map(image, maxSteps: maxMapSteps)
        let (bytes, good) = ImageWalk.readAndCompare(image, runs: runs, budget: readBudget, piece: piece, skew: skew)
        if image.size <= convertLimit, good == [0..<bytes.count] {
            convertAndCompare(image, expected: bytes, scratch: scratch)
        }
    }

    // info: the library's reader, then the whole CLI verb in both styles.
    _ = try? ImageInfoReader.read(path: topPath, format: format?.rawValue, backingChain: true)
    StandardStreams.withErrorSilenced {
        for arguments in [["info", topPath], ["info", "--output=json", "--backing-chain", topPath]] {
            _ = QcowKit.run(arguments)
        }
    }
    return 0
}

/// `convert -O raw` of a small image that read without error: the raw file
/// must hold exactly the bytes the reads gave.
private func convertAndCompare(_ image: BlockImage, expected: [UInt8], scratch: ScratchFiles) {
    let path = scratch.path("converted.raw")
    defer { scratch.remove("converted.raw") }
    guard (try? RawExport.write(image, to: path)) != nil else { return }
    guard let file = try? BlockFile(path: path, writable: false) else { return }
    defer { try? file.close() }
    let written = (try? file.readExactly(expected.count, at: 0, step: "reading the converted image")) ?? []
    fuzzRequire((try? file.size()) == UInt64(expected.count), "converted image has the wrong size")
    fuzzRequire(Bytes.equal(written, expected), "converted image differs from the guest data read")
}
