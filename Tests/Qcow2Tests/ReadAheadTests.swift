// The read-ahead pipeline convert uses: chunks arrive in order, with the
// bytes their producer put in the buffer, and an error on either side ends
// both sides (no hang, nothing consumed past a producer error).

import Synchronization
import Testing
@testable import Qcow2

@Suite("ReadAhead")
struct ReadAheadTests {
    struct Stop: Error, Equatable { var at: Int }

    @Test("chunks are consumed in order, each with its own buffer contents", arguments: [1, 2, 4])
    func order(depth: Int) throws {
        var next = 0
        var seen: [Int] = []
        try ReadAhead.run(depth: depth, bufferSize: 64, produce: { buffer -> Int? in
            guard next < 100 else { return nil }
            defer { next += 1 }
            buffer.storeBytes(of: next, as: Int.self)
            return next
        }) { chunk, buffer in
            #expect(buffer.load(as: Int.self) == chunk)
            seen.append(chunk)
        }
        #expect(seen == Array(0..<100))
    }

    @Test("a producer error comes after every chunk produced before it")
    func producerError() {
        var next = 0
        var seen: [Int] = []
        #expect(throws: Stop(at: 7)) {
            try ReadAhead.run(depth: 3, bufferSize: 8, produce: { _ -> Int? in
                if next == 7 { throw Stop(at: 7) }
                defer { next += 1 }
                return next
            }) { chunk, _ in seen.append(chunk) }
        }
        #expect(seen == Array(0..<7))
    }

    @Test("a consumer error stops the producer")
    func consumerError() {
        let produced = Atomic<Int>(0)
        #expect(throws: Stop(at: 5)) {
            try ReadAhead.run(depth: 2, bufferSize: 8, produce: { _ -> Int? in
                // Endless: only the consumer's error can end the run.
                produced.wrappingAdd(1, ordering: .relaxed).oldValue
            }) { chunk, _ in
                if chunk == 5 { throw Stop(at: 5) }
            }
        }
        // Read ahead by at most the buffers there are (plus the one the
        // producer may have been filling when it was told to stop).
        #expect(produced.load(ordering: .relaxed) <= 5 + 1 + 2)
    }
}
