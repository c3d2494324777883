import ArgumentParser

// Placeholder until the Map verb lands.
struct Map: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "map")
    func run() throws { throw CommandFailure("map: not implemented yet") }
}
