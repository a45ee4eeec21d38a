import NIOCore
import VaultlineCore

/// The bucketed summary of a set of names (docs/PROTOCOL.md, "Inventory"): per bucket of the
/// names' first `bits` bits, a count and the XOR of the names' last eight bytes.
public struct InventorySummary: Equatable, Sendable {
    public var bits: Int
    public var counts: [UInt32]
    public var digests: [UInt64]

    /// Summarises `names`, which need not be sorted.
    public init(names: some Sequence<Bytes32>, bits: Int) {
        precondition((0...16).contains(bits))
        self.bits = bits
        counts = [UInt32](repeating: 0, count: 1 << bits)
        digests = [UInt64](repeating: 0, count: 1 << bits)
        for name in names {
            let b = Self.bucket(of: name, bits: bits)
            counts[b] &+= 1
            digests[b] ^= name.d
        }
    }

    init(bits: Int, counts: [UInt32], digests: [UInt64]) {
        self.bits = bits
        self.counts = counts
        self.digests = digests
    }

    @inlinable public static func bucket(of name: Bytes32, bits: Int) -> Int {
        bits == 0 ? 0 : Int(truncatingIfNeeded: name.a >> UInt64(64 - bits))
    }

    /// The bucket size a sender aims at: about 16 of its own names per bucket.
    public static func bits(forCount count: Int) -> Int {
        var bits = 0
        while bits < 16 && (count >> (bits + 1)) >= 16 { bits += 1 }
        return bits
    }

    /// The buckets whose count or digest differ from `other`'s (same `bits`).
    public func differingBuckets(from other: InventorySummary) -> [Int] {
        precondition(bits == other.bits)
        return (0..<counts.count).filter { counts[$0] != other.counts[$0] || digests[$0] != other.digests[$0] }
    }

    /// What the receiver's summary settles before any LIST: the names of `sorted` (this
    /// summary's names, ascending) it certainly lacks, and the buckets that only a LIST can
    /// settle. A differing bucket the receiver counts 0 in lacks every local name in it; one
    /// this side holds nothing in has nothing to send. So a new replica needs no LIST at all.
    /// A summary of another `bits` is no answer to this one: `malformed`.
    public func plan(sorted: [Bytes32], against remote: InventorySummary) throws -> (missing: [Bytes32], bucketsToList: [Int]) {
        guard remote.bits == bits, remote.counts.count == counts.count, remote.digests.count == digests.count else {
            throw ReplicationError(.malformed, "SUMMARY_REPLY with \(remote.bits) bits, asked for \(bits)", fromPeer: true)
        }
        var missing: [Bytes32] = [], toList: [Int] = []
        for bucket in differingBuckets(from: remote) {
            if remote.counts[bucket] == 0 {
                missing += bucketNames(sorted, bits: bits, bucket: bucket, after: nil, limit: Int.max).names
            } else if counts[bucket] != 0 {
                toList.append(bucket)
            }
        }
        return (missing, toList)
    }

    func encode(kind: ReplicatedKind, requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.reserveCapacity(10 + 12 * counts.count)
        b.writeInteger(kind.rawValue)
        b.writeInteger(UInt8(bits))
        b.writeInteger(UInt64(counts.reduce(0) { $0 + Int($1) }))
        for i in 0..<counts.count {
            b.writeInteger(counts[i])
            b.writeInteger(digests[i])
        }
        return Frame(.summaryReply, requestID: requestID, payload: b)
    }

    static func decode(_ frame: Frame) throws -> InventorySummary {
        var b = frame.payload
        _ = try b.readKind()
        let bits = Int(try b.readInt(UInt8.self, "bits"))
        guard bits <= 16 else { throw ReplicationError(.malformed, "summary with \(bits) bits") }
        _ = try b.readInt(UInt64.self, "total")
        var counts = [UInt32](), digests = [UInt64]()
        counts.reserveCapacity(1 << bits)
        digests.reserveCapacity(1 << bits)
        for _ in 0..<(1 << bits) {
            counts.append(try b.readInt(UInt32.self, "bucket count"))
            digests.append(try b.readInt(UInt64.self, "bucket digest"))
        }
        return InventorySummary(bits: bits, counts: counts, digests: digests)
    }
}

/// A LIST request (docs/PROTOCOL.md, "Inventory").
struct ListRequest: Sendable {
    var kind: ReplicatedKind
    var bits: Int
    var bucket: Int
    var cursor: Bytes32?
    var limit: Int

    func encode(requestID: UInt32) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(kind.rawValue)
        b.writeInteger(UInt8(bits))
        b.writeInteger(UInt32(bucket))
        b.writeInteger(UInt8(cursor == nil ? 0 : 1))
        b.writeName(cursor ?? .zero)
        b.writeInteger(UInt32(limit))
        return Frame(.list, requestID: requestID, payload: b)
    }

    static func decode(_ frame: Frame) throws -> ListRequest {
        var b = frame.payload
        let kind = try b.readKind()
        let bits = Int(try b.readInt(UInt8.self, "bits"))
        let bucket = Int(try b.readInt(UInt32.self, "bucket"))
        let hasCursor = try b.readInt(UInt8.self, "has-cursor") != 0
        let cursor = try b.readName("cursor")
        let limit = Int(try b.readInt(UInt32.self, "limit"))
        guard bits <= 16, bucket < (1 << bits), limit >= 1, limit <= Int(ProtocolLimits.maxListLimit) else {
            throw ReplicationError(.malformed, "LIST with bits \(bits), bucket \(bucket), limit \(limit)")
        }
        return ListRequest(kind: kind, bits: bits, bucket: bucket, cursor: hasCursor ? cursor : nil, limit: limit)
    }
}

/// The names of one bucket, in ascending order, from a sorted array (binary search).
func bucketNames(_ sorted: [Bytes32], bits: Int, bucket: Int, after cursor: Bytes32?, limit: Int) -> (names: ArraySlice<Bytes32>, more: Bool) {
    func lowerBound(_ pred: (Bytes32) -> Bool) -> Int {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pred(sorted[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
    let start = lowerBound { name in InventorySummary.bucket(of: name, bits: bits) < bucket || (cursor.map { name <= $0 } ?? false) }
    let end = lowerBound { InventorySummary.bucket(of: $0, bits: bits) <= bucket }
    let last = max(start, end)
    let stop = limit >= last - start ? last : start + limit
    return (sorted[start..<stop], stop < last)
}
