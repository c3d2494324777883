// How a QMP message goes on the wire, byte for byte as QEMU 7.2 writes it:
// the JSON text (compact, or pretty: four-space indents, QDict key order),
// a newline after it, and every newline sent as "\r\n" (QEMU's monitor output
// turns each '\n' into "\r\n", inside pretty output too). Raw newlines never
// occur inside the JSON, since strings escape them.
import QemuJSON

enum QMPWire {
    static func encode(_ message: JSONValue, pretty: Bool) -> [UInt8] {
        let text = message.qemuJSON(pretty: pretty, keyOrder: .qdict)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 16)
        for byte in text.utf8 {
            if byte == UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\r")) }
            bytes.append(byte)
        }
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }
}
