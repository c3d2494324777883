// C's standard streams for this module. Glibc declares them as mutable
// globals, which Swift 6 cannot prove safe to read; nothing in qcowkit
// reassigns them, so reading them is (hence the @preconcurrency import).
// These shadow Glibc's names in the module's other files.
#if canImport(Glibc)
@preconcurrency import Glibc

var stdin: UnsafeMutablePointer<FILE> { Glibc.stdin }
var stdout: UnsafeMutablePointer<FILE> { Glibc.stdout }
var stderr: UnsafeMutablePointer<FILE> { Glibc.stderr }
#endif
