import ArgumentParser

// Placeholder until the Info verb lands.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info")
    func run() throws { throw CommandFailure("info: not implemented yet") }
}
