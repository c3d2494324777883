import Testing
@testable import QcowKitCommands

@Suite struct CreationOptionsTests {
    private func pairs(_ list: String) -> [String] { CreationOptionSet.split(list).map { "\($0.0)=\($0.1)" } }

    @Test func splitsLists() {
        #expect(pairs("cluster_size=4k,compat=0.10") == ["cluster_size=4k", "compat=0.10"])
        #expect(pairs("backing_file=a,,b,backing_fmt=raw") == ["backing_file=a,b", "backing_fmt=raw"])
        #expect(pairs("backing_file=a,,,,b") == ["backing_file=a,,b"])
        #expect(pairs("lazy_refcounts,nolazy_refcounts") == ["lazy_refcounts=on", "lazy_refcounts=off"])
        #expect(pairs("a=") == ["a="])
        #expect(pairs("a=1,,") == ["a=1,"])
        #expect(pairs("") == [])
    }

    @Test func validListsAndHelp() {
        #expect(CreationOptionSet.isValidList("a=1"))
        #expect(CreationOptionSet.isValidList("a=1,,"))
        #expect(!CreationOptionSet.isValidList(""))
        #expect(!CreationOptionSet.isValidList(",a=1"))
        #expect(!CreationOptionSet.isValidList("a=1,"))
        #expect(CreationOptionSet.wantsHelp("help"))
        #expect(CreationOptionSet.wantsHelp("cluster_size=4k,?"))
        #expect(!CreationOptionSet.wantsHelp("compat=help"))
        #expect(!CreationOptionSet.wantsHelp("backing_file=x,,help"))
    }

    @Test func typedValuesAndLastOneWins() throws {
        var set = CreationOptionSet(descriptors: CreationOptionCatalog.qcow2)
        try set.parse("cluster_size=4k,cluster_size=0x2000,refcount_bits=010,lazy_refcounts=yes,extended_l2")
        #expect(set["cluster_size"]?.number == 8192)
        #expect(set["refcount_bits"]?.number == 8)
        #expect(set["lazy_refcounts"]?.flag == true && set["lazy_refcounts"]?.text == "yes")
        #expect(set["extended_l2"]?.flag == true)
        try set.parse("refcount_bits=-16")
        #expect(set["refcount_bits"]?.number == UInt64(bitPattern: -16))
        #expect(CreationOptionSet.fitsInt64("-16") && !CreationOptionSet.fitsInt64("18446744073709551615"))
    }

    @Test func errorsWordedLikeQemu() {
        func message(_ list: String) -> String? {
            var set = CreationOptionSet(descriptors: CreationOptionCatalog.qcow2)
            do { try set.parse(list) } catch let f as CommandFailure { return f.message } catch { return "\(error)" }
            return nil
        }
        #expect(message("x=1") == "Invalid parameter 'x'")
        #expect(message("lazy_refcounts=maybe") == "Parameter 'lazy_refcounts' expects 'on' or 'off'")
        #expect(message("refcount_bits=abc") == "Parameter 'refcount_bits' expects a number")
        #expect(message("refcount_bits=99999999999999999999") == "Value '99999999999999999999' is too large for parameter 'refcount_bits'")
        #expect(message("size=99E") == "Value '99E' is out of range for parameter 'size'")
        #expect(message("cluster_size=abc") == "Parameter 'cluster_size' expects a non-negative number below 2^64\n"
            + "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")
        #expect(message("compat=anything,preallocation=anything") == nil)
    }

    /// The option part of "Formatting ...", in QEMU's order with its defaults.
    @Test func printedLikeQemu() throws {
        var set = CreationOptionSet(descriptors: CreationOptionCatalog.qcow2)
        set.setNumber("size", 67_108_864)
        #expect(set.printed() == "cluster_size=65536 extended_l2=off compression_type=zlib size=67108864 lazy_refcounts=off refcount_bits=16")
        try set.parse("compat=1.1,preallocation=metadata,cluster_size=64k,extended_l2=on,lazy_refcounts=on,compression_type=zstd")
        try set.set("backing_file", "a,b")
        try set.set("backing_fmt", "qcow2")
        #expect(set.printed() == "cluster_size=65536 extended_l2=on preallocation=metadata compression_type=zstd size=67108864 "
            + "compat=1.1 backing_file=a,,b backing_fmt=qcow2 lazy_refcounts=on refcount_bits=16")
        try set.parse("refcount_bits=-16,nocow=off,extent_size_hint=1M")
        #expect(set.printed().hasSuffix("refcount_bits=-16 nocow=off extent_size_hint=1048576"))

        var raw = CreationOptionSet(descriptors: CreationOptionCatalog.raw)
        try raw.parse("extent_size_hint=1M,preallocation=falloc,nocow=off")
        raw.setNumber("size", 1 << 20)
        #expect(raw.printed() == "size=1048576 nocow=off preallocation=falloc extent_size_hint=1048576")
        #expect(throws: CommandFailure.self) { try raw.set("backing_file", "x") }
    }

    @Test func helpText() {
        let text = CreationOptionSet.help(format: "qcow2", withFileName: false)
        #expect(text.hasPrefix("Supported qcow2 options:\n  backing_file=<str>     - File name of a base image\n"))
        #expect(text.contains("  lazy_refcounts=<bool (on/off)> - Postpone refcount updates\n"))
        #expect(!text.contains("encrypt") && !text.contains("nocow"))
        #expect(text.hasSuffix("\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n"))
        #expect(CreationOptionSet.help(format: "raw", withFileName: true) == """
            Supported options:
              extent_size_hint=<size> - Extent size hint for the image file, 0 to disable
              nocow=<bool (on/off)>  - Turn off copy-on-write (valid only on btrfs)
              preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)
              size=<size>            - Virtual disk size

            """)
    }
}
