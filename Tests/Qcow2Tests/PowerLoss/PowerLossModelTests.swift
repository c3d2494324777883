// The power-loss harness's own model, pinned: which states the replayer
// builds, and that the guest check refuses a lost flushed write and a third
// value (so that the suite's passing runs mean something).
import Testing
@testable import Qcow2

@Suite("PowerLossModel")
struct PowerLossModelTests {
    @Test func replayerBuildsEveryBoundarysStates() {
        let ops: [BlockFileOperation] = [
            .write(offset: 0, bytes: [1, 1]), .flush,
            .write(offset: 1, bytes: [2]), .truncate(length: 4), .flush,
        ]
        let replayer = CrashReplayer(base: [0, 0, 0], operations: ops)
        var states: [(Int, [Int], [UInt8])] = []
        replayer.forEachState(seed: 1, budget: CrashReplayer.Budget(singles: 10, subsets: 0)) {
            states.append(($0.boundary, $0.applied, $0.file))
        }
        let expected: [(Int, [Int], [UInt8])] = [
            (-1, [], [0, 0, 0]), (-1, [0], [1, 1, 0]),
            (1, [], [1, 1, 0]), (1, [2], [1, 2, 0]), (1, [3], [1, 1, 0, 0]),
            (4, [], [1, 2, 0, 0]),
        ]
        #expect(states.map(\.0) == expected.map(\.0))
        #expect(states.map(\.1) == expected.map(\.1))
        #expect(states.map(\.2) == expected.map(\.2))
    }

    /// Two files, one log: a sync makes only its own file's earlier
    /// writes durable; the other file's stay pending across it.
    @Test func aSyncCoversOnlyItsOwnFile() {
        let ops = [
            RecordedOperation(file: "a", operation: .write(offset: 0, bytes: [1])),
            RecordedOperation(file: "b", operation: .write(offset: 0, bytes: [2])),
            RecordedOperation(file: "b", operation: .flush),
            RecordedOperation(file: "a", operation: .write(offset: 1, bytes: [3])),
            RecordedOperation(file: "a", operation: .flush),
        ]
        let replayer = CrashReplayer(bases: ["a": [0, 0], "b": [0]], operations: ops)
        var states: [(Int, [Int], [UInt8], [UInt8])] = []
        replayer.forEachState(seed: 1, budget: CrashReplayer.Budget(singles: 10, subsets: 0)) {
            states.append(($0.boundary, $0.applied, $0.files["a"]!, $0.files["b"]!))
        }
        let expected: [(Int, [Int], [UInt8], [UInt8])] = [
            (-1, [], [0, 0], [0]), (-1, [0], [1, 0], [0]), (-1, [1], [0, 0], [2]),
            // b synced: a's first write is still pending, beside its second.
            (2, [], [0, 0], [2]), (2, [0], [1, 0], [2]), (2, [3], [0, 3], [2]),
            (4, [], [1, 3], [2]),
        ]
        #expect(states.map(\.0) == expected.map(\.0))
        #expect(states.map(\.1) == expected.map(\.1))
        #expect(states.map(\.2) == expected.map(\.2))
        #expect(states.map(\.3) == expected.map(\.3))
    }

    @Test func fallocateModesReplayAsTheKernelDoes() {
        var file: [UInt8] = [7, 7, 7, 7]
        BlockFileOperation.fallocate(mode: .deallocate, offset: 1, length: 8).apply(to: &file)
        #expect(file == [7, 0, 0, 0])
        BlockFileOperation.fallocate(mode: .allocate, offset: 2, length: 4).apply(to: &file)
        #expect(file == [7, 0, 0, 0, 0, 0])
        file = [7, 7]
        BlockFileOperation.fallocate(mode: .zeroRange, offset: 1, length: 2).apply(to: &file)
        #expect(file == [7, 0, 0])
    }

    @Test func guestCheckRefusesLostFlushedDataAndThirdValues() {
        let history = GuestHistory()
        history.record(GuestView(size: 1024, sectors: [10, 20]), position: 0, durable: true, label: "base")
        history.record(GuestView(size: 1024, sectors: [11, 20]), position: 2, durable: false, label: "write")
        history.record(GuestView(size: 1024, sectors: [11, 20]), position: 4, durable: true, label: "flush")
        history.record(GuestView(size: 1024, sectors: [11, 21]), position: 6, durable: false, label: "write 2")
        // Cut before the flush's sync: old or new.
        #expect(history.mismatch(GuestView(size: 1024, sectors: [10, 20]), cut: 3) == nil)
        #expect(history.mismatch(GuestView(size: 1024, sectors: [11, 20]), cut: 3) == nil)
        // After it: the flushed sector must be new; the unflushed one old or new.
        #expect(history.mismatch(GuestView(size: 1024, sectors: [10, 20]), cut: 7) != nil)
        #expect(history.mismatch(GuestView(size: 1024, sectors: [11, 21]), cut: 7) == nil)
        // A FUA write pins its own sectors only.
        history.record(GuestView(size: 1024, sectors: [12, 22]), position: 8, durable: false, label: "fua", pinned: 0..<1)
        #expect(history.mismatch(GuestView(size: 1024, sectors: [12, 20]), cut: 9) == nil)
        #expect(history.mismatch(GuestView(size: 1024, sectors: [11, 20]), cut: 9) != nil)
        #expect(history.mismatch(GuestView(size: 1024, sectors: [11, 20]), cut: 7) == nil)
        // Never a third value, nor another size.
        #expect(history.mismatch(GuestView(size: 1024, sectors: [11, 99]), cut: 7) != nil)
        #expect(history.mismatch(GuestView(size: 512, sectors: [11]), cut: 7) != nil)
    }
}
