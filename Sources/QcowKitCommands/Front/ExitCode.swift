// The end of a command whose messages are already out: thrown by the verbs'
// option loop (VerbGetopt: help shown, a bad flag reported) and turned into
// the process's exit status by QemuImgFront.finish.
struct ExitCode: Error, Equatable {
    var rawValue: Int32
    init(_ rawValue: Int32) { self.rawValue = rawValue }
    static let success = ExitCode(0)
}
