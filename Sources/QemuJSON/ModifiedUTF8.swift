// QEMU's strings are "modified UTF-8": UTF-8 in which U+0000 is written as
// the overlong pair C0 80 (so C strings can hold it), and in which
// noncharacters and surrogates count as invalid. The JSON parser accepts
// exactly these sequences in strings, and the printer replaces what it cannot
// carry with U+FFFD.

enum ModifiedUTF8 {
    /// Whether QEMU can encode `cp`: in Unicode's range, not a surrogate and
    /// not a noncharacter (U+FDD0...U+FDEF and U+xxFFFE/U+xxFFFF).
    static func isValidCodepoint(_ cp: Int) -> Bool {
        if cp < 0 || cp > 0x10FFFF { return false }
        if (0xFDD0...0xFDEF).contains(cp) || (cp & 0xFFFE) == 0xFFFE { return false }
        if (0xD800...0xDFFF).contains(cp) { return false }
        return true
    }

    /// Decodes one character of `bytes` starting at `start` (before `end`).
    /// Returns the code point, or -1 for an invalid sequence, and where the
    /// next character starts, following QEMU's rules for how far an invalid
    /// sequence reaches.
    static func decode(_ bytes: [UInt8], at start: Int, end: Int) -> (codepoint: Int, next: Int) {
        guard start < end, bytes[start] != 0 else { return (-1, start) }
        let lead = Int(bytes[start])
        var p = start + 1
        if lead < 0x80 { return (lead, p) }
        if lead >= 0xFE { return (-1, p) }            // bytes that never occur
        if lead & 0x40 == 0 { return (-1, p) }        // stray continuation byte
        var length = 0
        var mask = 0x80
        while lead & mask != 0 {
            length += 1
            mask >>= 1
        }
        var cp = lead & (mask - 1)
        for _ in 1..<length {
            let byte = p < end ? Int(bytes[p]) : 0
            if byte & 0xC0 != 0x80 { return (-1, p) } // continuation missing
            p += 1
            cp = (cp << 6) | (byte & 0x3F)
        }
        let minimum = [0x80, 0x800, 0x10000, 0x200000, 0x4000000]
        if cp > 0x10FFFF || !isValidCodepoint(cp) { return (-1, p) }
        if cp < minimum[length - 2] && !(cp == 0 && length == 2) { return (-1, p) } // overlong, except C0 80
        return (cp, p)
    }

    /// Raw bytes as QEMU prints them inside a string: each character it can
    /// decode as itself, each invalid sequence (as far as `decode` says it
    /// reaches) as one U+FFFD. (Swift's own decoding replaces invalid input
    /// in other pieces: ED A9 is two U+FFFD there, one in QEMU.)
    static func string<Bytes: Collection>(_ input: Bytes) -> String where Bytes.Element == UInt8 {
        let bytes = Array(input)
        var scalars = String.UnicodeScalarView()
        var index = 0
        while index < bytes.count {
            let (cp, next) = decode(bytes, at: index, end: bytes.count)
            scalars.append(cp >= 0 ? Unicode.Scalar(UInt32(cp)) ?? "\u{FFFD}" : "\u{FFFD}")
            index = max(next, index + 1)
        }
        return String(scalars)
    }
}
