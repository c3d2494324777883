// Every header `qemu-img create` writes for a set of options decodes and
// validates, with the fields the options ask for.
import Foundation
import Testing
@testable import Qcow2

struct CreateOptions: Sendable, CustomTestStringConvertible {
    var size: String
    var options: String
    var backing: Bool = false
    // What the header must then say.
    var version: UInt32 = 3
    var clusterBits: UInt32 = 16
    var virtualSize: UInt64
    var refcountOrder: UInt32 = 4
    var compression: CompressionType = .zlib
    var incompatible: IncompatibleFeatures = []
    var compatible: CompatibleFeatures = []

    var testDescription: String { "\(size) \(options)\(backing ? " with backing" : "")" }
}

@Suite struct HeaderQemuImgTests {
    static let cases: [CreateOptions] = [
        CreateOptions(size: "64M", options: "", virtualSize: 64 << 20),
        CreateOptions(size: "0", options: "", virtualSize: 0),
        CreateOptions(size: "1000", options: "", virtualSize: 1024),
        CreateOptions(size: "1G", options: "compat=0.10", version: 2, virtualSize: 1 << 30),
        CreateOptions(size: "10G", options: "cluster_size=512", clusterBits: 9, virtualSize: 10 << 30),
        CreateOptions(size: "100G", options: "cluster_size=2M", clusterBits: 21, virtualSize: 100 << 30),
        CreateOptions(size: "1G", options: "cluster_size=4k,refcount_bits=1", clusterBits: 12, virtualSize: 1 << 30,
                      refcountOrder: 0),
        CreateOptions(size: "1G", options: "refcount_bits=64", virtualSize: 1 << 30, refcountOrder: 6),
        CreateOptions(size: "1G", options: "compression_type=zstd", virtualSize: 1 << 30, compression: .zstd,
                      incompatible: .compressionType),
        CreateOptions(size: "1G", options: "extended_l2=on", virtualSize: 1 << 30, incompatible: .extendedL2),
        CreateOptions(size: "1G", options: "extended_l2=on,cluster_size=16k", clusterBits: 14, virtualSize: 1 << 30,
                      incompatible: .extendedL2),
        CreateOptions(size: "1G", options: "lazy_refcounts=on", virtualSize: 1 << 30, compatible: .lazyRefcounts),
        CreateOptions(size: "1G", options: "preallocation=metadata", virtualSize: 1 << 30),
        CreateOptions(size: "4T", options: "", virtualSize: 4 << 40),
        CreateOptions(size: "64M", options: "", backing: true, virtualSize: 64 << 20),
        CreateOptions(size: "64M", options: "compat=0.10", backing: true, version: 2, virtualSize: 64 << 20),
    ]

    @Test(arguments: cases)
    func decodesWhatQemuImgCreates(_ c: CreateOptions) throws {
        let scratch = try ScratchDirectory()
        let path = scratch.file("image.qcow2")
        var arguments = ["create", "-q", "-f", "qcow2"]
        if !c.options.isEmpty { arguments += ["-o", c.options] }
        if c.backing {
            let base = scratch.file("base.raw")
            #expect(try run(QemuImg.path, ["create", "-q", "-f", "raw", base, c.size]).status == 0)
            arguments += ["-b", base, "-F", "raw"]
        }
        arguments += [path, c.size]
        let created = try run(QemuImg.path, arguments)
        try #require(created.status == 0, "qemu-img \(arguments): \(created.stderr)")

        let image = try Qcow2Image.open(path: path)
        defer { try? image.close() }
        let h = image.header
        #expect(h.version == c.version)
        #expect(h.clusterBits == c.clusterBits)
        #expect(h.size == c.virtualSize)
        #expect(h.refcountOrder == c.refcountOrder)
        #expect(h.compressionType == c.compression)
        #expect(h.incompatibleFeatures == c.incompatible)
        #expect(h.compatibleFeatures == c.compatible)
        #expect(h.autoclearFeatures == [])
        #expect(h.cryptMethod == 0)
        #expect(h.snapshotCount == 0)
        #expect(h.headerLength == (c.version == 2 ? 72 : 112))
        #expect(h.unknownFields.isEmpty)
        // QEMU sizes the L1 table exactly for the virtual size.
        #expect(UInt64(h.l1Size) == h.requiredL1Entries)
        #expect(h.refcountTableClusters >= 1)
        #expect(h.refcountTableOffset % h.clusterSize == 0)
        #expect(h.l1TableOffset % h.clusterSize == 0)
        // qemu-img 7.2 writes the feature name table into version 3 images
        // with clusters of 8 KiB or more only.
        if c.version == 3 && c.clusterBits >= 13 {
            #expect(image.extensions.contains(.featureNameTable(FeatureName.qemuTable)))
        } else {
            #expect(!image.extensions.contains { $0.type == HeaderExtension.Magic.featureNameTable })
        }
        if c.backing {
            #expect(image.backingFileName == scratch.file("base.raw"))
            #expect(image.backingFormat == "raw")
            #expect(h.backingFileSize == UInt32(scratch.file("base.raw").utf8.count))
        } else {
            #expect(image.backingFileName == nil)
            #expect(h.backingFileOffset == 0)
        }

        // Re-encoding gives back qemu-img's bytes: header, then extensions.
        let file = try BlockFile(path: path, writable: false)
        defer { try? file.close() }
        let written = try file.readExactly(Int(h.clusterSize), at: 0, step: "test")
        let encoded = h.encode() + HeaderExtension.encodeAll(image.extensions)
        #expect(Array(written.prefix(encoded.count)) == encoded)
    }
}
