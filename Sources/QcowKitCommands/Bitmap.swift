// `qcowkit bitmap`: qemu-img 7.2's img_bitmap. The actions (--add, --remove,
// --clear, --enable, --disable, --merge SOURCE) run in command-line order on
// one bitmap of an image opened for writing without its backing chain; the
// first failure ends the command ("Operation add on bitmap b0 failed: ..."),
// and what the earlier actions did is still stored when the image closes,
// as in qemu-img. --merge takes its source from the image itself or from
// -b SOURCE_FILE (opened read-only, -F its format).
import Qcow2

enum Bitmap {
    enum Action {
        case add, remove, clear, enable, disable, merge(String)

        var name: String {
            switch self {
            case .add: return "add"
            case .remove: return "remove"
            case .clear: return "clear"
            case .enable: return "enable"
            case .disable: return "disable"
            case .merge: return "merge"
            }
        }
    }

    /// `arguments` start after the verb's name.
    static func run(_ arguments: [String]) throws {
        var format: String?
        var sourceFormat: String?
        var sourceFile: String?
        var granularity: UInt64 = 0
        var actions: [Action] = []
        var imageOpts = false
        var getopt = VerbGetopt("bitmap", arguments)
        while let (option, argument) = try getopt.next() {
            switch option {
            case UInt8(ascii: "b"): sourceFile = argument
            case UInt8(ascii: "f"): format = argument
            case UInt8(ascii: "F"): sourceFormat = argument
            case UInt8(ascii: "g"): granularity = try NumberArgument.parse("granularity", argument)
            case QemuImgVerb.imageOpts.code: imageOpts = true
            case 0x90: actions.append(.add)
            case 0x91: actions.append(.remove)
            case 0x92: actions.append(.clear)
            case 0x93: actions.append(.enable)
            case 0x94: actions.append(.disable)
            case 0x95: actions.append(.merge(argument))
            default: break
            }
        }
        let adds = actions.contains { if case .add = $0 { return true } else { return false } }
        let merges = actions.contains { if case .merge = $0 { return true } else { return false } }
        guard !actions.isEmpty else {
            throw CommandFailure("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge")
        }
        if granularity != 0 && !adds { throw CommandFailure("granularity only supported with --add") }
        if sourceFormat != nil && sourceFile == nil { throw CommandFailure("-F only supported with -b") }
        if sourceFile != nil && !merges { throw CommandFailure("Merge bitmap source file only supported with --merge") }
        let operands = getopt.operands
        guard operands.count == 2 else { throw CommandFailure("Expecting filename and bitmap name") }
        let name = operands[1]

        let image = try ImageVerbs.openWritable(ImageArgument(operands[0], format: format, imageOpts: imageOpts),
                                                withBacking: false)
        defer { try? image.close() }
        let source = try sourceFile.map {
            try ReadCommands.openChain($0, format: sourceFormat, access: VerbAccess.read, attachingBacking: false)
        }
        defer { try? source?.close() }

        for action in actions {
            do {
                try perform(action, on: image, bitmap: name, granularity: granularity, source: source ?? image)
            } catch {
                let reason = (error as? BitmapError)?.message ?? Qcow2Error.reason(of: error)
                throw CommandFailure("Operation \(action.name) on bitmap \(name) failed: \(reason)")
            }
        }
    }

    private static func perform(_ action: Action, on image: BlockImage, bitmap name: String, granularity: UInt64,
                         source: BlockImage) throws {
        guard let qcow2 = image as? Qcow2Image else {
            // Only qcow2 stores bitmaps; elsewhere none can be found.
            if case .add = action {
                throw BitmapError("Can't store persistent bitmaps to \(BitmapConstraints.anonymousNodeName): "
                                  + "Operation not supported")
            }
            throw BitmapError("Dirty bitmap '\(name)' not found")
        }
        switch action {
        case .add:
            // qemu-img hands the granularity over as a 32-bit value.
            let granularity32 = UInt64(UInt32(truncatingIfNeeded: granularity))
            try qcow2.addDirtyBitmap(name, granularity: granularity == 0 ? nil : granularity32, persistent: true,
                                     disabled: false, node: BitmapConstraints.anonymousNodeName)
        case .remove: try qcow2.removeDirtyBitmap(name)
        case .clear: try qcow2.clearDirtyBitmap(name)
        case .enable: try qcow2.setDirtyBitmapEnabled(name, true)
        case .disable: try qcow2.setDirtyBitmapEnabled(name, false)
        case let .merge(sourceName):
            _ = try qcow2.dirtyBitmap(named: name)
            guard let from = source as? Qcow2Image else { throw BitmapError("Dirty bitmap '\(sourceName)' not found") }
            try qcow2.mergeDirtyBitmap(into: name, from: try from.dirtyBitmap(named: sourceName))
        }
    }
}
