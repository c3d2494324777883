// QEMU's JSON lexer: a byte-at-a-time state machine that cuts input into
// tokens. Its dialect is JSON plus single-quoted strings and `\'` escapes.
// After a bad byte it reports an error token holding the text so far and
// skips ahead to a resynchronisation point: a structural character, a
// control character other than tab, or the never-valid bytes 0xFE/0xFF
// (which QMP clients send on purpose to reset the parser).
// String contents are only checked here for control characters; escapes and
// UTF-8 are the parser's job.

enum JSONTokenKind: Equatable {
    case leftCurly, rightCurly, leftSquare, rightSquare, colon, comma
    case integer, float, keyword, string
    case error
}

struct JSONToken {
    var kind: JSONTokenKind
    var text: [UInt8]
}

struct JSONLexer {
    private enum State {
        case recovery
        case dqString, dqEscape, sqString, sqEscape
        case zero, expDigits, expSign, expE, mantissa, mantissaDigits, digits, sign
        case keyword
        case start
    }

    private enum Next {
        case state(State)
        case token(JSONTokenKind)
    }

    private var state = State.start
    private var text: [UInt8] = []
    /// A token longer than this is cut off and reported as too large.
    let maxTokenSize: Int

    init(maxTokenSize: Int) {
        self.maxTokenSize = maxTokenSize
    }

    /// One transition; `lookahead` means the byte ends the current token and
    /// must be looked at again from the next state.
    private static func transition(_ state: State, _ byte: UInt8) -> (next: Next, lookahead: Bool) {
        let c = byte
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        switch state {
        case .recovery:
            switch c {
            case 0x09, 0x20...0xFD:
                if c == 0x5B || c == 0x5D || c == 0x7B || c == 0x7D || c == 0x3A || c == 0x2C {
                    return (.state(.start), true)
                }
                return (.state(.recovery), false)
            default: return (.state(.start), true)
            }
        case .dqEscape: return (0x20...0xFD).contains(c) ? (.state(.dqString), false) : (.token(.error), false)
        case .sqEscape: return (0x20...0xFD).contains(c) ? (.state(.sqString), false) : (.token(.error), false)
        case .dqString, .sqString:
            let double = state == .dqString
            if c == UInt8(ascii: "\\") { return (.state(double ? .dqEscape : .sqEscape), false) }
            if c == (double ? UInt8(ascii: "\"") : UInt8(ascii: "'")) { return (.token(.string), false) }
            return (0x20...0xFD).contains(c) ? (.state(state), false) : (.token(.error), false)
        case .zero:
            if isDigit(c) { return (.token(.error), false) }
            if c == UInt8(ascii: ".") { return (.state(.mantissa), false) }
            return (.token(.integer), true)
        case .expDigits:
            return isDigit(c) ? (.state(.expDigits), false) : (.token(.float), true)
        case .expSign:
            return isDigit(c) ? (.state(.expDigits), false) : (.token(.error), false)
        case .expE:
            if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { return (.state(.expSign), false) }
            return isDigit(c) ? (.state(.expDigits), false) : (.token(.error), false)
        case .mantissaDigits:
            if isDigit(c) { return (.state(.mantissaDigits), false) }
            if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { return (.state(.expE), false) }
            return (.token(.float), true)
        case .mantissa:
            return isDigit(c) ? (.state(.mantissaDigits), false) : (.token(.error), false)
        case .digits:
            if isDigit(c) { return (.state(.digits), false) }
            if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { return (.state(.expE), false) }
            if c == UInt8(ascii: ".") { return (.state(.mantissa), false) }
            return (.token(.integer), true)
        case .sign:
            if c == UInt8(ascii: "0") { return (.state(.zero), false) }
            return isDigit(c) ? (.state(.digits), false) : (.token(.error), false)
        case .keyword:
            return (0x61...0x7A).contains(c) ? (.state(.keyword), false) : (.token(.keyword), true)
        case .start:
            switch c {
            case UInt8(ascii: "\""): return (.state(.dqString), false)
            case UInt8(ascii: "'"): return (.state(.sqString), false)
            case UInt8(ascii: "0"): return (.state(.zero), false)
            case UInt8(ascii: "1")...UInt8(ascii: "9"): return (.state(.digits), false)
            case UInt8(ascii: "-"): return (.state(.sign), false)
            case UInt8(ascii: "{"): return (.token(.leftCurly), false)
            case UInt8(ascii: "}"): return (.token(.rightCurly), false)
            case UInt8(ascii: "["): return (.token(.leftSquare), false)
            case UInt8(ascii: "]"): return (.token(.rightSquare), false)
            case UInt8(ascii: ","): return (.token(.comma), false)
            case UInt8(ascii: ":"): return (.token(.colon), false)
            case 0x61...0x7A: return (.state(.keyword), false)
            case 0x20, 0x09, 0x0D, 0x0A: return (.state(.start), false)
            default: return (.token(.error), false)
            }
        }
    }

    /// The fast path for the bulk of long tokens: takes the bytes from
    /// `start` on that only extend the token in progress (string characters
    /// other than quote and backslash, keyword letters, digits), never more
    /// than the size limit leaves room for, and returns where it stopped.
    /// The same as feeding those bytes one by one, without a call per byte
    /// (a client's 100 MB string is read at memory speed).
    mutating func consumeRun(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        let extends: (UInt8) -> Bool
        switch state {
        case .dqString: extends = { $0 >= 0x20 && $0 <= 0xFD && $0 != 0x22 && $0 != 0x5C }
        case .sqString: extends = { $0 >= 0x20 && $0 <= 0xFD && $0 != 0x27 && $0 != 0x5C }
        case .keyword: extends = { $0 >= 0x61 && $0 <= 0x7A }
        case .digits, .mantissaDigits, .expDigits: extends = { $0 >= 0x30 && $0 <= 0x39 }
        default: return start
        }
        let end = start + min(bytes.count - start, max(0, maxTokenSize - text.count))
        var index = start
        while index < end && extends(bytes[index]) { index += 1 }
        if index > start {
            reserveForToken(text.count + (index - start))
            text.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        }
        return index
    }

    /// Empties the token buffer, keeping it only if it is small.
    private mutating func clearText() {
        if text.capacity > 4096 { text = [] } else { text.removeAll(keepingCapacity: true) }
    }

    /// Grows the token buffer by doubling, but never past what the size
    /// limit allows, and straight to that once a doubling would pass half
    /// of it: a token at the limit costs one buffer of the limit's size,
    /// not a second, larger copy.
    private mutating func reserveForToken(_ count: Int) {
        guard count > text.capacity else { return }
        let doubled = max(count, text.capacity * 2)
        text.reserveCapacity(doubled > maxTokenSize / 2 ? maxTokenSize + 1 : doubled)
    }

    /// Feeds one byte; `emit` receives each finished token.
    /// Returns false when a token grew past the size limit (the token is
    /// dropped and lexing restarts, as QEMU does).
    mutating func feed(_ byte: UInt8, emit: (JSONToken) -> Void) -> Bool {
        var consumed = false
        while !consumed {
            let (next, lookahead) = Self.transition(state, byte)
            consumed = !lookahead
            if consumed {
                reserveForToken(text.count + 1)
                text.append(byte)
            }
            step(next, emit: emit)
        }
        if text.count > maxTokenSize {
            text.removeAll()
            state = .start
            return false
        }
        return true
    }

    /// Ends the input: a token in progress is finished as if a NUL followed.
    mutating func flush(emit: (JSONToken) -> Void) {
        while state != .start {
            let (next, _) = Self.transition(state, 0)
            step(next, emit: emit)
        }
    }

    private mutating func step(_ next: Next, emit: (JSONToken) -> Void) {
        switch next {
        case let .token(kind):
            emit(JSONToken(kind: kind, text: text))
            // The token keeps the buffer: start a fresh one.
            text = []
            state = kind == .error ? .recovery : .start
        case .state(.start):
            clearText()
            state = .start
        case .state(.recovery):
            clearText()
            state = .recovery
        case let .state(s):
            state = s
        }
    }
}
