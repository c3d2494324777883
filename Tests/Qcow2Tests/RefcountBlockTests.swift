import Testing
@testable import Qcow2

@Suite struct RefcountBlockTests {
    @Test func placeholder() { #expect(RefcountWidth(bits: 16)?.order == 4) }
}
