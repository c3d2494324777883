// Refusals of the job manager, with QEMU's messages. Client input never
// crashes the service: every verb is checked before it changes anything.

/// Why the job manager refused a request.
public enum JobError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No job with this ID. QEMU words it per command family: `job-*` say
    /// `description` ("Job not found", class GenericError); `block-job-*` say
    /// `blockJobMessage` ("Block job 'x' not found", class DeviceNotActive).
    case notFound(id: String)
    /// The verb is not allowed in the job's state (QEMU's job_apply_verb).
    case verbRefused(JobVerbRefused)
    /// Any other refusal, with QEMU's message.
    case invalid(String)

    public var description: String {
        switch self {
        case .notFound: return "Job not found"
        case .verbRefused(let refused): return refused.description
        case .invalid(let message): return message
        }
    }

    /// The wording of QMP's `block-job-*` commands for the same refusal.
    public var blockJobMessage: String {
        if case .notFound(let id) = self { return "Block job '\(id)' not found" }
        return description
    }

    /// QMP reports it as DeviceNotActive from `block-job-*` commands.
    public var isNotFound: Bool {
        if case .notFound = self { return true }
        return false
    }
}

/// QEMU's id_wellformed (util/id.c): a letter, then letters, digits, '-',
/// '.' or '_'. ASCII only, as QEMU's qemu_isalpha/qemu_isalnum.
func isWellFormedID(_ id: String) -> Bool {
    var bytes = id.utf8.makeIterator()
    guard let first = bytes.next(), isASCIILetter(first) else { return false }
    while let byte = bytes.next() {
        let ok = isASCIILetter(byte) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
        if !ok { return false }
    }
    return true
}

private func isASCIILetter(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
}
