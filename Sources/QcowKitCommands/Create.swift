import ArgumentParser

// Placeholder until the Create verb lands.
struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create")
    func run() throws { throw CommandFailure("create: not implemented yet") }
}
