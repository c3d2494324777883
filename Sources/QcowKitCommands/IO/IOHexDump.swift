// qemu-io's `-v` dump: per 16 bytes, the guest offset as 8+ hex digits, two
// spaces, each byte as two hex digits and a space, one more space, then the
// bytes again with everything but ASCII letters and digits shown as '.'.
// A short last line is not padded.

enum IOHexDump {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends the dump of `bytes`, read at guest offset `offset`, to `out`.
    static func dump(_ bytes: UnsafeRawBufferPointer, offset: Int64, into console: IOConsole) {
        var line: [UInt8] = []
        line.reserveCapacity(96)
        var i = 0
        while i < bytes.count {
            line.removeAll(keepingCapacity: true)
            appendHex(UInt64(bitPattern: offset &+ Int64(i)), minimumDigits: 8, to: &line)
            line.append(contentsOf: [0x3a, 0x20, 0x20])   // ":  "
            let end = min(i + 16, bytes.count)
            for j in i..<end {
                line.append(hexDigits[Int(bytes[j] >> 4)])
                line.append(hexDigits[Int(bytes[j] & 0xf)])
                line.append(0x20)
            }
            line.append(0x20)
            for j in i..<end {
                line.append(isAlphanumeric(bytes[j]) ? bytes[j] : UInt8(ascii: "."))
            }
            line.append(0x0a)
            console.out(bytes: line)
            i = end
        }
    }

    /// isalnum(3) in the C locale.
    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
    }

    /// printf's "%08" PRIx64.
    private static func appendHex(_ value: UInt64, minimumDigits: Int, to line: inout [UInt8]) {
        var digits: [UInt8] = []
        var v = value
        repeat {
            digits.append(hexDigits[Int(v & 0xf)])
            v >>= 4
        } while v > 0
        if digits.count < minimumDigits {
            line.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: minimumDigits - digits.count))
        }
        line.append(contentsOf: digits.reversed())
    }
}
