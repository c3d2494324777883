// The commands the service offers, in the order query-commands lists them
// (QEMU's order for the same commands).
extension QMPService {
    static func commandTable() -> [QMPCommand] {
        [
            ControlCommands.quit,
            ControlCommands.queryCommands,
            ControlCommands.queryVersion,
            ControlCommands.capabilitiesAfterNegotiation,
        ]
    }

    func settleBlockLayer() {}
}
