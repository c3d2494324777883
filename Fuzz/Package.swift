// swift-tools-version:5.9
// libFuzzer targets for QcowKit, as a package of their own beside the main one.
//
// Why nested, and why tools-version 5.9: SwiftPM 6 renames an executable's
// `main` symbol, and libFuzzer's own `main` must be the one that runs. An older
// manifest keeps SwiftPM from doing that; the library under test comes from the
// parent package by path, so this package adds nothing to what users build.
//
// One file per fuzz target: every `Targets/<name>.swift` becomes an executable
// product `fuzz-<name>` (its entry point is `LLVMFuzzerTestOneInput`), with a
// seed corpus in `Corpus/<name>/`. `Support/` holds what targets share.
// Build with the sanitizers on every module, so that the library under test
// is instrumented too, and with testable imports (the qmp target drives the
// service's internal session API; the targets reach Qcow2's `package` API,
// which another package sees only through `@testable import`); Scripts/fuzz.sh
// does this.
import Foundation
import PackageDescription

let targetsDirectory = URL(fileURLWithPath: Context.packageDirectory).appendingPathComponent("Targets")
let targetFiles = ((try? FileManager.default.contentsOfDirectory(atPath: targetsDirectory.path)) ?? [])
    .filter { $0.hasSuffix(".swift") }
    .sorted()

let library: [Target.Dependency] = [
    "FuzzSupport",
    .product(name: "Qcow2", package: "QcowKit"),
    .product(name: "QcowKitCommands", package: "QcowKit"),
    .product(name: "QemuJSON", package: "QcowKit"),
    .product(name: "QMP", package: "QcowKit"),
    .product(name: "NBD", package: "QcowKit"),
]

let fuzzTargets: [Target] = targetFiles.map { file in
    let name = String(file.dropLast(".swift".count))
    return .executableTarget(
        name: "fuzz-" + name,
        dependencies: library,
        path: "Targets",
        exclude: targetFiles.filter { $0 != file },
        sources: [file],
        swiftSettings: [
            // No top-level code: libFuzzer provides `main`.
            .unsafeFlags(["-parse-as-library"]),
        ])
}

let package = Package(
    name: "QcowKitFuzz",
    products: fuzzTargets.map { .executable(name: $0.name, targets: [$0.name]) },
    dependencies: [
        .package(name: "QcowKit", path: ".."),
    ],
    targets: [
        .target(
            name: "FuzzSupport",
            dependencies: [.product(name: "Qcow2", package: "QcowKit")],
            path: "Support"),
    ] + fuzzTargets
)
