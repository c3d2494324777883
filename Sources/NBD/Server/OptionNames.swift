// Names QEMU's server uses for options and commands in its messages
// (nbd_opt_lookup, nbd_cmd_lookup).

extension NBDProtocol {
    static func optionName(_ option: UInt32) -> String {
        switch Option(rawValue: option) {
        case .exportName: return "export name"
        case .abort: return "abort"
        case .list: return "list"
        case .peekExport: return "peek export"
        case .startTLS: return "starttls"
        case .info: return "info"
        case .go: return "go"
        case .structuredReply: return "structured reply"
        case .listMetaContext: return "list meta context"
        case .setMetaContext: return "set meta context"
        case .extendedHeaders: return "extended headers"
        case nil: return "<unknown>"
        }
    }

    static func commandName(_ type: UInt16) -> String {
        switch Command(rawValue: type) {
        case .read: return "read"
        case .write: return "write"
        case .disconnect: return "discard"
        case .flush: return "flush"
        case .trim: return "trim"
        case .cache: return "cache"
        case .writeZeroes: return "write zeroes"
        case .blockStatus: return "block status"
        case .resize: return "resize"
        case nil: return "<unknown>"
        }
    }
}
