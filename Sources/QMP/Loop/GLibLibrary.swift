// The one owner of GLib as a library: opened with dlopen when the first
// MainLoop is made (CSystemLibs/CGLib/shim.h says why it is not linked), its
// functions resolved once into a table MainLoop.swift calls through:
// `glib.g_main_loop_run(...)` where `glib` is `try GLib.library()`.
import CGLib
import CSystemShims

@dynamicMemberLookup
final class GLib: Sendable {
    /// The soname of GLib 2 (Debian's libglib2.0-0).
    static let soname = "libglib-2.0.so.0"

    private let functions: qk_glib_functions

    private init(functions: qk_glib_functions) { self.functions = functions }

    /// The function `name` of GLib, e.g. `glib.g_main_loop_run`.
    subscript<Function>(dynamicMember name: KeyPath<qk_glib_functions, Function>) -> Function {
        functions[keyPath: name]
    }

    /// Loaded once per process.
    private static let loaded = load(soname)

    /// GLib, loaded; a QMPServiceError saying what is missing if it cannot be.
    static func library() throws(QMPServiceError) -> GLib { try loaded.get() }

    static func load(_ soname: String) -> Result<GLib, QMPServiceError> {
        let table = UnsafeMutablePointer<qk_glib_functions>.allocate(capacity: 1)
        defer { table.deallocate() }
        var failure: UnsafePointer<CChar>?
        switch qk_glib_load(soname, table, &failure) {
        case QK_DL_LOADED:
            // Filled field by field by qk_glib_load (a trivial C struct).
            return .success(GLib(functions: table.move()))
        case QK_DL_MISSING_SYMBOL:
            let name = failure.map { String(cString: $0) } ?? "?"
            return .failure(QMPServiceError("The main loop needs GLib 2 (\(soname)), but the library found lacks \(name)"))
        default:
            let reason = failure.map { String(cString: $0) } ?? "not found"
            return .failure(QMPServiceError("The main loop needs GLib 2 (\(soname), Debian's libglib2.0-0): \(reason)"))
        }
    }
}
