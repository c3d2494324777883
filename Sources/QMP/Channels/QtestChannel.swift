// -qtest CHARDEV: the qtest protocol channel QEMU's QEMUQtestMachine (and so
// every iotests VM) opens beside the monitor and waits for before it talks
// QMP. There is no guest here, so no qtest command has anything to act on:
// every line is answered as QEMU answers a command it does not know
// ("FAIL Unknown command 'WORD'"), which is what qemu-system-x86_64 7.2
// built without the qtest accelerator (Debian's) answers to clock_step too.
final class QtestChannel {
    /// A line longer than this ends the channel instead of being buffered.
    static let lineLimit = 64 << 10

    private let connection: Connection
    private var line: [UInt8] = []

    init(_ connection: Connection) {
        self.connection = connection
        connection.onInput = { [weak self] bytes in
            guard let self, let bytes else { return }
            self.receive(bytes)
        }
    }

    func start() { connection.start() }

    func close() { connection.close() }

    private func receive(_ bytes: [UInt8]) {
        for byte in bytes {
            guard byte != UInt8(ascii: "\n") else {
                answer(line)
                line.removeAll(keepingCapacity: true)
                continue
            }
            line.append(byte)
            if line.count > Self.lineLimit {
                connection.close()
                return
            }
        }
    }

    /// QEMU splits the command at spaces; the first word names it.
    private func answer(_ command: [UInt8]) {
        let word = command.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false).first ?? []
        connection.send(Array("FAIL Unknown command '".utf8) + word + Array("'\n".utf8))
    }
}
