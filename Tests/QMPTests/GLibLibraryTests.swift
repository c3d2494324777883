// GLib is opened by the first main loop (GLibLibrary.swift), not linked: the
// verbs that run no QMP service never load it, and a missing library is a
// QMPServiceError that says what to install.
import Foundation
import Testing
import TestSupport
@testable import QMP

@Suite struct GLibLibraryTests {
    @Test func aMissingLibraryIsAClearError() {
        guard case let .failure(error) = GLib.load("libglib-absent.so.0") else {
            Issue.record("an absent library loaded")
            return
        }
        #expect(error.message.hasPrefix("The main loop needs GLib 2 (libglib-absent.so.0, Debian's libglib2.0-0): "))
        #expect(error.message.contains("libglib-absent.so.0: cannot open shared object file"))
    }

    @Test func aLibraryLackingAFunctionIsRefusedByName() {
        // zlib loads, but has none of GLib's functions: the first one is named.
        guard case let .failure(error) = GLib.load("libz.so.1") else {
            Issue.record("zlib taken for GLib")
            return
        }
        #expect(error.message == "The main loop needs GLib 2 (libz.so.1), but the library found lacks g_idle_source_new")
    }

    /// A loop made through the table runs a timer and an invoked closure.
    @Test func theInstalledLibraryRunsALoop() throws {
        let loop = try MainLoop()
        var order: [String] = []
        loop.invoke { order.append("invoked") }
        let timer = loop.after(milliseconds: 1) {
            order.append("timer")
            loop.quit()
        }
        loop.run()
        timer.cancel()
        #expect(order == ["invoked", "timer"])
    }

    /// The dynamic loader's own account (glibc's LD_DEBUG): the verbs start
    /// without GLib or PCRE2, and serve loads GLib.
    @Test func onlyServeLoadsGLib() throws {
        let info = try runClient(["qcowkit", "--version"], environment: ["LD_DEBUG": "files"])
        #expect(info.status == 0)
        #expect(info.output.contains("file=libc.so.6"))
        #expect(!info.output.contains("file=libglib-2.0"), "GLib loaded at start-up")
        #expect(!info.output.contains("file=libpcre2"), "PCRE2 loaded at start-up")

        let (executable, arguments) = try TestTools.resolve(["qcowkit", "serve", "-qmp", "stdio"])
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: executable)
        serve.arguments = arguments
        serve.environment = ProcessInfo.processInfo.environment.merging(["LD_DEBUG": "files"]) { $1 }
        let input = Pipe(), output = Pipe()
        serve.standardInput = input
        serve.standardOutput = output
        serve.standardError = output
        try serve.run()
        input.fileHandleForWriting.write(Data("{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"quit\"}\n".utf8))
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        serve.waitUntilExit()
        #expect(serve.terminationStatus == 0)
        #expect(text.contains("file=libglib-2.0.so.0"))
        #expect(text.contains("\"event\": \"SHUTDOWN\""))
    }
}
