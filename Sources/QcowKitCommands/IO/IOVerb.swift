// `qcowkit io`: the verb as the root command sees it. Its arguments are
// handed over untouched, since qemu-io's option syntax (getopt_long, options
// after the file, repeated -c) is parsed by IOProgram.
import ArgumentParser

struct IO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io",
        abstract: "Exercise an image with qemu-io's commands (read, write, map, ...).")

    @Argument(parsing: .captureForPassthrough, help: "qemu-io's options, commands and file.")
    var arguments: [String] = []

    func run() throws {
        let status = IOProgram.run(arguments, console: .standard(), readLine: IOProgram.readStandardInput)
        Terminal.flushStandardOutput()
        if status != 0 { throw ExitCode(status) }
    }
}
