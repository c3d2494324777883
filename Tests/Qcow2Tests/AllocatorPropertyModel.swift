// Generated inputs for the allocator properties: an image geometry and a
// sequence of guest operations in geometry-free units (cluster indices and
// 1/1024ths of a cluster), so that shrinking moves towards the first
// cluster, short lengths, plain writes and fewer operations. `PropertyRun`
// applies them to an image and to a byte-array model of the guest disk.
import Foundation
import PropertyBased
import Testing
@testable import Qcow2

struct PropertyGeometry: Sendable, CustomStringConvertible {
    static let clusterBitChoices = [9, 12, 14, 16]
    var clusterBits: Int
    var refcountOrder: Int
    /// Only with clusters of 16 KiB or more (32 subclusters of 512 bytes).
    var extendedL2: Bool
    var lazyRefcounts: Bool
    var backing: Bool
    /// Guest clusters in the image.
    var clusters: UInt64 = 96

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    var size: UInt64 { clusters * clusterSize }

    var description: String {
        "\(clusterSize)-byte clusters, \(1 << refcountOrder)-bit refcounts"
            + (extendedL2 ? ", extended L2" : "") + (lazyRefcounts ? ", lazy refcounts" : "")
            + (backing ? ", backing file" : "") + ", \(clusters) clusters"
    }

    static let generator = zip(
        Gen.int(in: 0...(clusterBitChoices.count - 1)), Gen.int(in: 0...6), Gen.bool, Gen.bool, Gen.bool
    ).map { choice, order, extended, lazy, backing in
        let bits = clusterBitChoices[choice]
        return PropertyGeometry(clusterBits: bits, refcountOrder: order, extendedL2: extended && bits >= 14,
                                lazyRefcounts: lazy, backing: backing)
    }
}

/// One operation in geometry-free units.
struct PropertyOp: Sendable, CustomStringConvertible {
    /// 0...5 and 15: write; 6, 7: zero write; 8: zero write that may unmap;
    /// 9, 10: discard; 11, 12: compressed write of one cluster; 13: flush;
    /// 14: close and open again.
    var kind: Int
    var cluster: UInt64
    /// Offset in the cluster, in 1/1024ths of it.
    var start: UInt64
    var lengthClusters: UInt64
    /// Length beyond whole clusters, in 1/1024ths of a cluster.
    var lengthFraction: UInt64
    var pattern: UInt8

    var description: String {
        "(\(kind) c\(cluster)+\(start) len \(lengthClusters)c+\(lengthFraction) p\(pattern))"
    }

    static func generator(clusters: UInt64, maxLengthClusters: Int) -> Generator<PropertyOp, some SendableSequenceType> {
        zip(Gen.int(in: 0...15), Gen.int(in: 0...Int(clusters - 1)), Gen.int(in: 0...1023),
            Gen.int(in: 0...maxLengthClusters), Gen.int(in: 0...1023), Gen.int(in: 1...255)
        ).map { kind, cluster, start, lengthClusters, fraction, pattern in
            PropertyOp(kind: kind, cluster: UInt64(cluster), start: UInt64(start), lengthClusters: UInt64(lengthClusters),
                       lengthFraction: UInt64(fraction), pattern: UInt8(pattern))
        }
    }
}

/// An operation for a given geometry.
enum ConcreteOp: CustomStringConvertible {
    case write(UInt64, UInt64, UInt8)
    case zeroes(UInt64, UInt64, unmap: Bool)
    case discard(UInt64, UInt64)
    case compressed(UInt64, UInt8)
    case flush
    case reopen

    init(_ op: PropertyOp, _ g: PropertyGeometry) {
        let cs = g.clusterSize
        let offset = op.cluster * cs + op.start * cs / 1024
        let length = min(max(1, op.lengthClusters * cs + op.lengthFraction * cs / 1024), g.size - offset)
        switch op.kind {
        case 6, 7: self = .zeroes(offset, length, unmap: false)
        case 8: self = .zeroes(offset, length, unmap: true)
        case 9, 10: self = .discard(offset, length)
        case 11, 12: self = .compressed(op.cluster * cs, op.pattern)
        case 13: self = .flush
        case 14: self = .reopen
        default: self = .write(offset, length, op.pattern)
        }
    }

    var description: String {
        switch self {
        case let .write(o, l, p): return "write -P \(p) \(o) \(l)"
        case let .zeroes(o, l, unmap): return "write -z\(unmap ? " -u" : "") \(o) \(l)"
        case let .discard(o, l): return "discard \(o) \(l)"
        case let .compressed(o, p): return "write -c -P \(p) \(o) <cluster>"
        case .flush: return "flush"
        case .reopen: return "reopen"
        }
    }
}
