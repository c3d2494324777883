// Fuzz target `header`: the qcow2 header decoder and validator on raw bytes,
// as the first cluster of an image: Qcow2Header.decode, then
// HeaderValidation.validate with the extensions (feature name table, bitmaps
// extension, backing format), against a file as long as the input and against
// a large one (so that table checks pass and the later checks run too). The
// snapshot table decoder gets the same bytes. Errors are expected; traps,
// overflows and unbounded allocations are what the fuzzer looks for. What must
// hold for a header that validated: it encodes and decodes back to itself, and
// a valid bitmaps extension encodes back to its bytes.

import FuzzSupport
@testable import Qcow2

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let bytes = input.rest()
    checkHeader(bytes)
    // The snapshot table decoder, on the same bytes (entry count from the first byte).
    _ = try? SnapshotTable.decode(bytes, count: UInt32(bytes.first ?? 0))
    return 0
}

private func checkHeader(_ bytes: [UInt8]) {
    guard let header = try? Qcow2Header.decode(bytes) else { return }
    // What Qcow2Image.init passes: the first cluster as far as the file has it.
    let firstCluster = Array(bytes.prefix(Int(min(header.clusterSize, UInt64(bytes.count)))))
    for fileSize in [UInt64(bytes.count), 1 << 40] {
        for writable in [false, true] {
            guard let layout = try? HeaderValidation.validate(
                header: header, firstCluster: firstCluster, fileSize: fileSize, writable: writable) else { continue }
            checkLayout(layout, header: header)
        }
    }
    // The unknown-feature naming, with whatever feature table decodes.
    let extEnd = header.backingFileOffset != 0 ? Int(header.backingFileOffset) : Int(header.clusterSize)
    let (found, _) = HeaderExtension.decodeReportingError(firstCluster, from: Int(header.headerLength), to: extEnd)
    var table: [FeatureName] = []
    for case let .featureNameTable(t) in found { table = t }
    let names = HeaderValidation.unsupportedFeatureNames(mask: header.incompatibleFeatures.rawValue, table: table)
    fuzzRequire(header.incompatibleFeatures.rawValue == 0 || !names.isEmpty, "set feature bits named by nothing")
}

private func checkLayout(_ layout: ValidatedLayout, header: Qcow2Header) {
    fuzzRequire(layout.header == header, "validation changed the header")
    // Encoding writes header_length as 112 (+ unknown fields) and the type byte
    // whenever it writes a version 3 header; the rest must survive unchanged.
    var expected = header
    if header.version >= 3 { expected.headerLength = UInt32(header.encodedLength) }
    let reencoded = header.encode()
    guard let decoded = try? Qcow2Header.decode(reencoded) else {
        fuzzRequire(false, "a valid header does not decode after encoding: \(header)")
        return
    }
    fuzzRequire(decoded == expected, "header round trip: \(decoded) != \(expected)")

    // Header extensions: encoding and decoding again gives the same list.
    // Names are cut at a NUL and decoded as UTF-8 on the way in, so only
    // records carried as bytes are compared.
    let bytesOnly = layout.extensions.filter {
        switch $0 {
        case .bitmaps, .fullDiskEncryption, .unknown: return true
        default: return false
        }
    }
    let area = HeaderExtension.encodeAll(bytesOnly)
    let again = (try? HeaderExtension.decodeAll(area, from: 0, to: area.count)) ?? []
    fuzzRequire(again == bytesOnly, "extension round trip")

    if let bitmaps = layout.bitmaps {
        fuzzRequire((try? bitmaps.validate(clusterSize: header.clusterSize)) != nil, "accepted bitmaps extension is invalid")
        // `bitmaps` decodes the first such record; later ones are checked but unused.
        let first = layout.extensions.lazy.compactMap { ext -> [UInt8]? in
            if case let .bitmaps(data) = ext { return data }
            return nil
        }.first
        fuzzRequire(bitmaps.encode() == first, "bitmaps extension round trip")
    }
    _ = layout.backingFormat
    _ = layout.featureNames
}
