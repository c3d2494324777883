// swift-tools-version:6.0
// QcowKit: a qcow2 toolkit in Swift. Layers run one way:
//   qcowkit (CLI) -> QcowKitCommands -> QMP (service, GLib main loop) -> BlockGraph (nodes, jobs)
//                                    -> NBD (server: exports over images and nodes) -> BlockGraph, Qcow2
//                                    -> Qcow2 (codec) -> CZlib/CZstd (C libraries)
//   QemuJSON (QEMU's JSON dialect and printer) sits beside them, for the CLI and QMP.
import PackageDescription

let package = Package(
    name: "QcowKit",
    products: [
        .library(name: "Qcow2", targets: ["Qcow2"]),
        .library(name: "QcowKitCommands", targets: ["QcowKitCommands"]),
        // For the fuzz targets (Fuzz/Package.swift), which import it directly.
        .library(name: "QemuJSON", targets: ["QemuJSON"]),
        .library(name: "BlockGraph", targets: ["BlockGraph"]),
        .library(name: "QMP", targets: ["QMP"]),
        .library(name: "NBD", targets: ["NBD"]),
        .executable(name: "qcowkit", targets: ["qcowkit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        // Tests only: property-based tests of the allocator and refcounts.
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // System libraries: module maps over the Debian -dev packages, with tiny shims
        // for what Swift cannot import (function-like macros).
        .systemLibrary(
            name: "CZlib", path: "CSystemLibs/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CZstd", path: "CSystemLibs/CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // Declarations only: GLib is opened with dlopen by the first main loop
        // (Sources/QMP/Loop/GLibLibrary.swift), as GnuTLS below.
        .systemLibrary(
            name: "CGLib", path: "CSystemLibs/CGLib",
            providers: [.apt(["libglib2.0-0"])]),

        // Headers only: GnuTLS is opened with dlopen when TLS is first used
        // (Sources/TLS/GnuTLSLibrary.swift), so no pkg-config: its flags
        // would link it into every process.
        .systemLibrary(
            name: "CGnuTLS", path: "CSystemLibs/CGnuTLS",
            providers: [.apt(["libgnutls28-dev"])]),

        .systemLibrary(name: "CSystemShims", path: "CSystemLibs/CSystemShims"),

        .target(
            name: "Qcow2",
            dependencies: [
                "CZlib", "CZstd", "CSystemShims",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            exclude: ["README.md"]),
        .target(name: "QemuJSON"),
        // TLS for the NBD server: QEMU's tls-creds-x509/-psk objects and sessions over GnuTLS.
        .target(name: "TLS", dependencies: ["CGnuTLS", "CSystemShims"]),
        .target(name: "BlockGraph", dependencies: ["Qcow2"]),
        // QEMU's ImageInfo as QAPI JSON, for the CLI's `info` and QMP's queries.
        .target(name: "ImageInfoJSON", dependencies: ["Qcow2", "QemuJSON"]),
        // The NBD server: negotiation, transmission, exports over images or graph nodes.
        .target(name: "NBD", dependencies: ["Qcow2", "BlockGraph", "TLS", "CSystemShims"]),
        .target(name: "QMP", dependencies: ["BlockGraph", "Qcow2", "QemuJSON", "ImageInfoJSON", "CGLib", "CSystemShims", "TLS", "NBD"]),
        .target(
            name: "QcowKitCommands",
            dependencies: [
                "Qcow2", "QemuJSON", "ImageInfoJSON", "BlockGraph", "QMP", "NBD", "CSystemShims",
            ]),
        .executableTarget(
            name: "qcowkit", dependencies: ["QcowKitCommands"],
            exclude: ["qcowkit.order"],
            linkerSettings: [
                // lld, to lay out first the functions the verbs run (qcowkit.order, written
                // by Scripts/startup-order.sh): the kernel maps code in blocks around each
                // page touched, so scattered start-up code costs every process megabytes of
                // resident memory. No dynamic symbol table: nothing loads against qcowkit.
                // Relative relocations packed (DT_RELR, glibc 2.36 and later: Debian 12's):
                // the loader reads 1 MiB of RELA entries at every start otherwise.
                .unsafeFlags([
                    "-use-ld=lld", "-Xlinker", "--no-export-dynamic",
                    "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                ]),
                .unsafeFlags([
                    "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/qcowkit/qcowkit.order",
                    "-Xlinker", "--no-warn-symbol-ordering",
                ], .when(configuration: .release)),
            ]),

        // What every test suite shares: finding qemu-img, qemu-io and the built qcowkit
        // (a missing one fails the suite, saying what to install or build).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // Tests only: counts a thread's heap allocations (malloc defined in the
        // test executable, forwarding to glibc's), for the zero-allocation hot paths.
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        .testTarget(
            name: "Qcow2Tests",
            dependencies: [
                // QcowKitCommands, BlockGraph and NBD: the power-loss workloads
                // of `commit`, of an active commit and of writes through an NBD export.
                "Qcow2", "TestSupport", "AllocationCounter", "QcowKitCommands", "BlockGraph", "NBD",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(name: "TLSTests", dependencies: ["TLS", "TestSupport"]),
        .testTarget(name: "BlockGraphTests", dependencies: ["BlockGraph", "Qcow2", "TestSupport"]),
        .testTarget(name: "NBDTests", dependencies: ["NBD", "Qcow2", "TestSupport"]),
        .testTarget(name: "QMPTests", dependencies: ["QMP", "BlockGraph", "QemuJSON", "TestSupport", "TLS"]),
        .testTarget(name: "QcowKitCommandsTests", dependencies: ["QcowKitCommands", "QMP", "QemuJSON", "TestSupport"]),
        // Interop suite: real qemu-img / qemu-io make the fixtures and are the oracle.
        .testTarget(name: "InteropTests", dependencies: ["Qcow2", "QcowKitCommands", "TestSupport"]),
        // Acceptance: Scripts/iotest-191.sh run with qcowkit and with QEMU, compared with the
        // spec's 191.out; QEMU's Python QMP client against `qcowkit serve`. Runs the built
        // qcowkit binary, so it links nothing of the package but the tool finder.
        .testTarget(
            name: "ConformanceTests", dependencies: ["TestSupport"],
            resources: [.copy("Fixtures"), .copy("qmp_client_commit.py")]),
    ],
    swiftLanguageModes: [.v6]
)
