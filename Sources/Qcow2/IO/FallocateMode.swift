// The mode argument of fallocate(2), named once with the kernel's own
// constants (linux/falloc.h through CSystemShims).

import CSystemShims

/// What fallocate(2) does to a range of a file.
package struct FallocateMode: OptionSet, Sendable {
    package let rawValue: Int32
    package init(rawValue: Int32) { self.rawValue = rawValue }

    /// Mode 0: allocate blocks, reading as before; past the end of the
    /// file they read as zeroes and extend it.
    package static let allocate: FallocateMode = []
    /// FALLOC_FL_KEEP_SIZE: the file's length stays as it is.
    package static let keepSize = FallocateMode(rawValue: FALLOC_FL_KEEP_SIZE)
    /// FALLOC_FL_PUNCH_HOLE: deallocate; the range reads as zeroes. The
    /// kernel accepts it only together with `keepSize`.
    package static let punchHole = FallocateMode(rawValue: FALLOC_FL_PUNCH_HOLE)
    /// FALLOC_FL_ZERO_RANGE: the range reads as zeroes and stays allocated.
    package static let zeroRange = FallocateMode(rawValue: FALLOC_FL_ZERO_RANGE)

    /// How a discard or an unmapping zero write deallocates.
    package static let deallocate: FallocateMode = [.punchHole, .keepSize]
}
