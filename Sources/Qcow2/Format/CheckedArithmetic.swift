// Offsets and lengths read from disk are hostile until proven otherwise: every
// sum or product of them goes through these helpers, which turn overflow into
// an error instead of a trap or a wrapped value.

@inlinable
func checkedAdd(_ a: UInt64, _ b: UInt64, _ what: @autoclosure () -> String) throws -> UInt64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if overflow { throw Qcow2Error.arithmeticOverflow(what()) }
    return sum
}

@inlinable
func checkedMultiply(_ a: UInt64, _ b: UInt64, _ what: @autoclosure () -> String) throws -> UInt64 {
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    if overflow { throw Qcow2Error.arithmeticOverflow(what()) }
    return product
}

/// Rounds `value` up to a multiple of `alignment` (a power of two), or nil on overflow.
@inlinable
package func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64? {
    let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
    return overflow ? nil : sum & ~(alignment - 1)
}

@inlinable
package func divideRoundingUp(_ value: UInt64, _ divisor: UInt64) -> UInt64 {
    value / divisor + (value % divisor == 0 ? 0 : 1)
}
