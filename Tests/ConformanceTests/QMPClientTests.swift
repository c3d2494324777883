// A QMP client we did not write: QEMU's `qemu.qmp` Python library (PyPI)
// drives an intermediate and an active commit over a unix socket
// (qmp_client_commit.py), and qemu-img checks the images afterwards. Run
// against qemu-storage-daemon, it validates the script; against
// `qcowkit serve`, it is the test.
import Foundation
import Testing
import TestSupport

@Suite("qemu.qmp drives block-commit", .serialized)
struct QMPClientTests {
    static func runClient(service: [String], monitor: String = "chardev") throws -> ScriptRun {
        guard let script = Bundle.module.url(forResource: "qmp_client_commit", withExtension: "py") else {
            throw ConformanceSetupError(description: "qmp_client_commit.py missing from the test bundle")
        }
        _ = try TestTools.program("python3", package: "python3")
        let probe = try ConformanceProcess.run(["python3", "-c", "import qemu.qmp"], timeout: 60)
        if probe.status != 0 {
            throw ConformanceSetupError(description: "python3 cannot import qemu.qmp (pip install qemu.qmp):\n\(probe.output)")
        }
        return try ConformanceProcess.run(
            ["python3", script.path, "--service", service.map(ConformanceProcess.shellQuoted).joined(separator: " "),
             "--monitor", monitor, "--timeout", "30"],
            timeout: 600)
    }

    @Test("the client script passes against qemu-storage-daemon 7.2")
    func clientAgainstQemuStorageDaemon() throws {
        _ = try TestTools.program("qemu-storage-daemon", package: "qemu-system-common")
        let run = try Self.runClient(service: ["qemu-storage-daemon"])
        #expect(run.status == 0 && run.output.hasSuffix("PASSED\n"), "\(run.output)")
    }

    @Test("the client script passes against qemu-system-x86_64 7.2 (-qmp unix:...)")
    func clientAgainstQemuSystem() throws {
        _ = try TestTools.program("qemu-system-x86_64", package: "qemu-system-x86")
        let run = try Self.runClient(
            service: ["qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none"], monitor: "qmp")
        #expect(run.status == 0 && run.output.hasSuffix("PASSED\n"), "\(run.output)")
    }

    /// Started as QEMU's test harnesses start a VM they only drive over QMP
    /// (the harness listens, the program connects; VM-only options such as
    /// -monitor none, -S, -accel, -nodefaults): validates the script's
    /// harness modes (see qmp_client_commit.py).
    @Test("harness-style command lines pass against qemu-system-x86_64 7.2", arguments: ["machine", "machine-fd", "qtest"])
    func harnessAgainstQemuSystem(monitor: String) throws {
        _ = try TestTools.program("qemu-system-x86_64", package: "qemu-system-x86")
        let run = try Self.runClient(service: ["qemu-system-x86_64"], monitor: monitor)
        #expect(run.status == 0 && run.output.hasSuffix("PASSED\n"), "\(run.output)")
    }

    @Test("iotests' qemu-storage-daemon command line (--pidfile, client socket) passes against qemu-storage-daemon 7.2")
    func harnessAgainstQemuStorageDaemon() throws {
        _ = try TestTools.program("qemu-storage-daemon", package: "qemu-system-common")
        let run = try Self.runClient(service: ["qemu-storage-daemon"], monitor: "daemon")
        #expect(run.status == 0 && run.output.hasSuffix("PASSED\n"), "\(run.output)")
    }

    @Test("qemu.qmp commits through qcowkit serve", arguments: ["chardev", "qmp", "machine", "machine-fd", "qtest", "daemon"])
    func clientAgainstQcowkitServe(monitor: String) throws {
        let qcowkit = try TestTools.qcowkit()
        let run = try Self.runClient(service: [qcowkit, "serve"], monitor: monitor)
        #expect(run.status == 0 && run.output.hasSuffix("PASSED\n"), "\(run.output)")
    }
}
