// What a consistency check found (QEMU's BdrvCheckResult), what it may
// repair (BdrvCheckMode), and how it fails. Counts follow qemu-img's
// meaning: corruptions harm data, leaks only waste space, check errors mean
// the check itself could not look somewhere.

/// Which inconsistencies a check repairs (`qemu-img check -r leaks|all`).
public struct CheckRepair: OptionSet, Sendable, Hashable {
    /// The option set's bits.
    public let rawValue: Int
    /// The repairs whose bits are in `rawValue`.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Refcounts higher than the references found (BDRV_FIX_LEAKS).
    public static let leaks = CheckRepair(rawValue: 1)
    /// Everything else that can be fixed (BDRV_FIX_ERRORS).
    public static let errors = CheckRepair(rawValue: 2)
    /// Every repair (`-r all`).
    public static let all: CheckRepair = [.leaks, .errors]
}

/// How much of the guest disk is allocated, and how (BlockFragInfo).
public struct FragmentationInfo: Equatable, Sendable {
    /// Clusters the virtual disk spans.
    public var totalClusters: Int64 = 0
    /// Clusters the active L1 table maps to host clusters (or compressed data).
    public var allocatedClusters: Int64 = 0
    /// Allocated clusters not directly after the previous one of their L2 table.
    public var fragmentedClusters: Int64 = 0
    /// Allocated clusters that are compressed.
    public var compressedClusters: Int64 = 0
    package init() {}
}

/// What a check found and repaired, counted as qemu-img counts it.
public struct CheckResult: Equatable, Sendable {
    /// Corruptions found (and not repaired).
    public var corruptions: Int = 0
    /// Leaked clusters found (and not repaired).
    public var leaks: Int = 0
    /// Metadata the check could not read or repair ("check errors").
    public var checkErrors: Int = 0
    /// Corruptions the repair fixed.
    public var corruptionsFixed: Int = 0
    /// Leaked clusters the repair freed.
    public var leaksFixed: Int = 0
    /// One past the last cluster in use (0 when unknown).
    public var imageEndOffset: Int64 = 0
    /// Allocation and fragmentation of the guest clusters.
    public var fragmentation = FragmentationInfo()
    package init() {}

    /// qcow2_add_check_result: counts add up; the allocation picture comes
    /// from the refcount pass only.
    mutating func add(_ other: CheckResult, allocationInfo: Bool) {
        corruptions += other.corruptions
        leaks += other.leaks
        checkErrors += other.checkErrors
        corruptionsFixed += other.corruptionsFixed
        leaksFixed += other.leaksFixed
        if allocationInfo {
            imageEndOffset = other.imageEndOffset
            fragmentation = other.fragmentation
        }
    }
}

/// The check could not complete (a negative errno in QEMU); qemu-img then
/// prints "Check failed: <strerror(errno)>" and nothing else. Inside the
/// check only: callers see `Qcow2Error.checkFailed`.
struct CheckFailure: Error, Equatable, Sendable, CustomStringConvertible {
    var errno: Int32
    init(errno: Int32) { self.errno = errno }
    var description: String { errnoDescription(errno) }
}

/// One line the check reports. QEMU prints most with plain fprintf; some go
/// through its error reporting, which puts the program's name first
/// ("qemu-img: ERROR writing refblock: ...").
public struct CheckMessage: Equatable, Sendable {
    /// The line as bytes: names read from an image are printed as stored,
    /// valid UTF-8 or not.
    public var bytes: [UInt8]
    /// Whether QEMU reports the line through its error reporting (prefixed
    /// with the program's name) rather than printing it plainly.
    public var isErrorReport: Bool
    package init(_ text: String, isErrorReport: Bool = false) {
        self.bytes = Array(text.utf8)
        self.isErrorReport = isErrorReport
    }
    package init(bytes: [UInt8], isErrorReport: Bool = false) {
        self.bytes = bytes
        self.isErrorReport = isErrorReport
    }
    /// The line as text (invalid UTF-8 replaced).
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Where the check's diagnostics go, line by line (qemu-img prints them on
/// standard error as it goes; images with millions of findings exist).
public typealias CheckDiagnostics = (CheckMessage) -> Void

// errno values QEMU's check returns, by name (Glibc's on Linux).
enum CheckErrno {
    static let io: Int32 = 5          // EIO
    static let noMemory: Int32 = 12   // ENOMEM
    static let invalid: Int32 = 22    // EINVAL
    static let tooBig: Int32 = 27     // EFBIG
    static let readOnly: Int32 = 30   // EROFS
    static let noMedium: Int32 = 123     // ENOMEDIUM
}
