// What the `check` and `write` fuzz targets found, rebuilt by hand on the
// check's test images (CheckTestImage) so that each test says which field
// was hostile. The fuzzers' own inputs are in Fuzz/Corpus/<target>/crash-*,
// which every fuzz run replays.
import Foundation
import Testing
@testable import Qcow2

@Suite("Fuzz regressions: check and write")
struct FuzzRegressionsCheck {
    /// check, -r all: a refcount table entry naming a block a terabyte past
    /// the end of the file made the repair grow the file (sparse) and the
    /// in-memory counts to match: gigabytes of allocation. Such a block now
    /// fails to be reached as "file too large", and the structure is rebuilt.
    @Test("check -r all: a refcount block far past the end is not reached by growing the file")
    func refcountBlockFarPastTheEnd() throws {
        var image = CheckTestImage(clusterBits: 12)
        image.setU64(image.clusterSize + 8, 1 << 40)
        let file = try CheckTestFile(image)
        let (result, messages) = try file.check(.all)
        #expect(messages.contains("Repairing refcount block 1 is outside image"))
        #expect(messages.contains("ERROR could not resize image: File too large"))
        #expect(messages.contains("Rebuilding refcount structure"))
        #expect(result.corruptions == 0 && result.checkErrors == 0)
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? UInt64
        #expect((size ?? .max) < 1 << 20)
        let (again, _) = try file.check()
        #expect(again.corruptions == 0 && again.leaks == 0 && again.checkErrors == 0)
    }
}
