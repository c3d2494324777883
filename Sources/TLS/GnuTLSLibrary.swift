// The one owner of GnuTLS as a library: opened with dlopen on first use
// (CSystemLibs/CGnuTLS/shim.h says why it is not linked), its functions
// resolved once into a table the other files of this target call through:
// `gnutls.gnutls_init(...)` where `gnutls` is `try GnuTLS.library()`.
import CGnuTLS

@dynamicMemberLookup
final class GnuTLS: Sendable {
    /// The soname of GnuTLS 3.x (Debian's libgnutls30).
    static let soname = "libgnutls.so.30"

    private let functions: qk_gnutls_functions

    private init(functions: qk_gnutls_functions) { self.functions = functions }

    /// The function `name` of GnuTLS, e.g. `gnutls.gnutls_init`.
    subscript<Function>(dynamicMember name: KeyPath<qk_gnutls_functions, Function>) -> Function {
        functions[keyPath: name]
    }

    /// Loaded once per process, on the first TLS credentials or session.
    private static let loaded = load(soname)

    /// GnuTLS, loaded; a TLSError saying what is missing if it cannot be.
    static func library() throws -> GnuTLS { try loaded.get() }

    /// Opens `soname` and resolves every function the TLS target uses.
    static func load(_ soname: String) -> Result<GnuTLS, TLSError> {
        let table = UnsafeMutablePointer<qk_gnutls_functions>.allocate(capacity: 1)
        defer { table.deallocate() }
        var failure: UnsafePointer<CChar>?
        switch qk_gnutls_load(soname, table, &failure) {
        case QK_DL_LOADED:
            // Filled field by field by qk_gnutls_load (a trivial C struct).
            return .success(GnuTLS(functions: table.move()))
        case QK_DL_MISSING_SYMBOL:
            let name = failure.map { String(cString: $0) } ?? "?"
            return .failure(TLSError("TLS needs GnuTLS 3 (\(soname)), but the library found lacks \(name)"))
        default:
            let reason = failure.map { String(cString: $0) } ?? "not found"
            return .failure(TLSError("TLS needs GnuTLS 3 (\(soname), Debian's libgnutls30): \(reason)"))
        }
    }

    /// GnuTLS's text for an error code.
    func errorText(_ code: Int32) -> String {
        functions.gnutls_strerror(code).map { String(cString: $0) } ?? "Unknown error \(code)"
    }
}
