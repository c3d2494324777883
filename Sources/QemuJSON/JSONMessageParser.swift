// Reads a stream of JSON values the way QEMU's QMP monitor does: bytes may
// arrive in any pieces; a value is complete when its brackets balance (a
// scalar at once); values may follow each other with or without whitespace.
// Each value or error comes out as an outcome; errors reset the stream, which
// then resynchronises as QEMU's lexer does. Nothing here traps or grows
// without bound: token size, token count and nesting depth are limited.

/// One value read from the stream, or why a message was rejected. Error texts
/// are QEMU's ("JSON parse error, expecting value").
public enum JSONParseOutcome: Equatable, Sendable {
    case value(JSONValue)
    case error(String)
}

public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public struct JSONMessageParser {
    /// QEMU's limits for one message.
    public struct Limits: Sendable {
        /// Bytes of all tokens of one message (and of any one token): 64 MiB.
        public var maxTokenBytes: Int
        /// Tokens in one message: 2 Mi.
        public var maxTokenCount: Int
        /// Open brackets and braces at once: 1024.
        public var maxNesting: Int

        public init(maxTokenBytes: Int = 64 << 20, maxTokenCount: Int = 2 << 20, maxNesting: Int = 1 << 10) {
            self.maxTokenBytes = maxTokenBytes
            self.maxTokenCount = maxTokenCount
            self.maxNesting = maxNesting
        }

        public static let qemu = Limits()
    }

    private var lexer: JSONLexer
    private let limits: Limits
    private var tokens: [JSONToken] = []
    private var tokenBytes = 0
    private var braces = 0
    private var brackets = 0

    public init(limits: Limits = .qemu) {
        self.limits = limits
        lexer = JSONLexer(maxTokenSize: limits.maxTokenBytes)
    }

    /// Feeds bytes; returns the values and errors completed by them, in order.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [JSONParseOutcome] where Bytes.Element == UInt8 {
        let contiguous = Array(bytes)
        return contiguous.withUnsafeBufferPointer { feed(buffer: $0) }
    }

    private mutating func feed(buffer: UnsafeBufferPointer<UInt8>) -> [JSONParseOutcome] {
        var outcomes: [JSONParseOutcome] = []
        var emitted: [JSONToken] = []
        var index = 0
        while index < buffer.count {
            let next = lexer.consumeRun(buffer, from: index)
            if next > index {
                index = next
                continue
            }
            let withinLimit = lexer.feed(buffer[index]) { emitted.append($0) }
            index += 1
            for token in emitted { process(token, into: &outcomes) }
            emitted.removeAll(keepingCapacity: true)
            if !withinLimit { fail("JSON token size limit exceeded", into: &outcomes) }
        }
        return outcomes
    }

    public mutating func feed(_ text: String) -> [JSONParseOutcome] {
        feed(Array(text.utf8))
    }

    /// Ends the input: a token in progress is finished, and a message still
    /// open is parsed (and so reported as an error).
    public mutating func flush() -> [JSONParseOutcome] {
        var outcomes: [JSONParseOutcome] = []
        var emitted: [JSONToken] = []
        lexer.flush { emitted.append($0) }
        for token in emitted { process(token, into: &outcomes) }
        if !tokens.isEmpty {
            let result = JSONTokenParser.parse(tokens)
            reset()
            outcomes.append(result)
        }
        return outcomes
    }

    private mutating func process(_ token: JSONToken, into outcomes: inout [JSONParseOutcome]) {
        switch token.kind {
        case .leftCurly: braces += 1
        case .rightCurly: braces -= 1
        case .leftSquare: brackets += 1
        case .rightSquare: brackets -= 1
        case .error:
            // QEMU formats the token as a C string: a NUL byte ends the text.
            let text = token.text.prefix { $0 != 0 }
            fail("JSON parse error, stray '\(ModifiedUTF8.string(text))'", into: &outcomes)
            return
        default: break
        }
        if tokenBytes + token.text.count + 1 > limits.maxTokenBytes {
            return fail("JSON token size limit exceeded", into: &outcomes)
        }
        if tokens.count + 1 > limits.maxTokenCount {
            return fail("JSON token count limit exceeded", into: &outcomes)
        }
        if braces + brackets > limits.maxNesting {
            return fail("JSON nesting depth limit exceeded", into: &outcomes)
        }
        tokens.append(token)
        tokenBytes += token.text.count
        // Wait for more while something is open and nothing closed too much.
        if (braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0 { return }
        let result = JSONTokenParser.parse(tokens)
        reset()
        outcomes.append(result)
    }

    private mutating func fail(_ message: String, into outcomes: inout [JSONParseOutcome]) {
        reset()
        outcomes.append(.error(message))
    }

    private mutating func reset() {
        tokens.removeAll()
        tokenBytes = 0
        braces = 0
        brackets = 0
    }
}

extension JSONValue {
    /// Parses text holding exactly one value in QEMU's dialect
    /// (qobject_from_json): errors are QEMU's messages.
    public static func parse(_ text: String, limits: JSONMessageParser.Limits = .qemu) -> Result<JSONValue, JSONParseError> {
        var parser = JSONMessageParser(limits: limits)
        var outcomes = parser.feed(text)
        outcomes += parser.flush()
        var result: JSONValue?
        for outcome in outcomes {
            // The first error wins, unless a value came first: then anything
            // after it is one value too many.
            if result != nil { return .failure(JSONParseError("Expecting at most one JSON value")) }
            switch outcome {
            case let .error(message): return .failure(JSONParseError(message))
            case let .value(v): result = v
            }
        }
        guard let result else { return .failure(JSONParseError("Expecting a JSON value")) }
        return .success(result)
    }
}
