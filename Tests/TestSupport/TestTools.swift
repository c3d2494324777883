// Where the test suites find the programs they run: QEMU's tools (fixture
// makers and the reference oracle) and the qcowkit binary this build made.
// A missing program is a test failure that says what to install or build,
// never a skipped suite.
import Foundation

public enum TestTools {
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    /// qemu-img (QEMU 7.2, the oracle), found in PATH.
    public static func qemuImg() throws -> String { try program("qemu-img", package: "qemu-utils") }

    /// qemu-io (QEMU 7.2, the oracle), found in PATH.
    public static func qemuIO() throws -> String { try program("qemu-io", package: "qemu-utils") }

    /// A program found in PATH, or a failure naming the package that provides it.
    public static func program(_ name: String, package: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw Missing(description: "\(name) not found in PATH: install \(package)")
    }

    /// The qcowkit binary `swift build` / `swift test` built: beside the test
    /// bundle, or in the package's .build directories.
    public static func qcowkit() throws -> String {
        if let qcowkitPath { return qcowkitPath }
        throw Missing(description: "the qcowkit binary was not built (looked in \(qcowkitCandidates.joined(separator: ", "))): run `swift build` first")
    }

    /// The executable and arguments to run `command`: a path as given, the
    /// built binary for "qcowkit", any other name from PATH (a missing
    /// qemu-img or qemu-io fails here, naming its package).
    public static func resolve(_ command: [String]) throws -> (executable: String, arguments: [String]) {
        let name = command[0]
        let arguments = Array(command.dropFirst())
        if name.contains("/") { return (name, arguments) }
        if name == "qcowkit" { return (try qcowkit(), arguments) }
        let package = name.hasPrefix("qemu-") ? "qemu-utils" : name
        _ = try program(name, package: package)
        // Through env, so that the program sees its bare name as argv[0].
        return ("/usr/bin/env", command)
    }

    private static let qcowkitCandidates: [String] = {
        var candidates: [String] = []
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("qcowkit").path)
            directory = directory.deletingLastPathComponent()
        }
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("qcowkit").path)
        let root = packageRoot
        let builds = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for build in builds.sorted() where build.hasPrefix(".build") {
            candidates.append(root.appendingPathComponent(build).appendingPathComponent("debug/qcowkit").path)
        }
        return candidates
    }()

    private static let qcowkitPath: String? = qcowkitCandidates.first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The package's root directory, found from this source file.
    public static let packageRoot: URL = {
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<2 { root = root.deletingLastPathComponent() }
        return root
    }()
}
