import ArgumentParser

// Placeholder until the Convert verb lands.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "convert")
    func run() throws { throw CommandFailure("convert: not implemented yet") }
}
