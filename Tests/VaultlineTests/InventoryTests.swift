import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

@Suite("Replication inventory") struct InventoryTests {
    static func names(_ count: Int, seed: UInt64) -> [Bytes32] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Bytes32(a: rng.next(), b: rng.next(), c: rng.next(), d: rng.next()) }.sorted()
    }

    @Test func bucketsFindExactlyWhatThePeerLacks() {
        let local = Self.names(20_000, seed: 1)
        // The peer holds all but 37 of them, plus 5 of its own.
        var remote = local
        var removed: [Bytes32] = []
        for i in stride(from: 11, to: local.count, by: 541) { removed.append(local[i]) }
        remote.removeAll { removed.contains($0) }
        remote += Self.names(5, seed: 2)
        remote.sort()
        let bits = InventorySummary.bits(forCount: local.count)
        #expect(bits == 10)
        let mine = InventorySummary(names: local, bits: bits)
        let theirs = InventorySummary(names: remote, bits: bits)
        var missing: [Bytes32] = []
        for bucket in mine.differingBuckets(from: theirs) {
            let there = Set(bucketNames(remote, bits: bits, bucket: bucket, after: nil, limit: Int.max).names)
            missing += bucketNames(local, bits: bits, bucket: bucket, after: nil, limit: Int.max).names.filter { !there.contains($0) }
        }
        #expect(missing.sorted() == removed.sorted())
        #expect(mine.differingBuckets(from: theirs).count <= removed.count + 5)
    }

    @Test func listingPagesWithACursor() {
        let all = Self.names(5_000, seed: 3)
        let bits = 2
        for bucket in 0..<4 {
            var paged: [Bytes32] = []
            var cursor: Bytes32? = nil
            while true {
                let (page, more) = bucketNames(all, bits: bits, bucket: bucket, after: cursor, limit: 100)
                paged += page
                guard more, let last = page.last else { break }
                cursor = last
            }
            #expect(paged == all.filter { InventorySummary.bucket(of: $0, bits: bits) == bucket })
        }
        #expect(InventorySummary.bits(forCount: 0) == 0 && InventorySummary.bits(forCount: 10_000_000) == 16)
    }

    @Test func theSummaryAloneSettlesEmptyBuckets() throws {
        let all = Self.names(2_000, seed: 4)
        let bits = InventorySummary.bits(forCount: all.count)
        #expect(bits == 6)
        // This side holds no name of the bucket `all[1]` falls in; the replica holds that one.
        let foreign = InventorySummary.bucket(of: all[1], bits: bits)
        let local = all.filter { InventorySummary.bucket(of: $0, bits: bits) != foreign }
        let mine = InventorySummary(names: local, bits: bits)
        // A new replica: every name is missing, and nothing needs a LIST.
        let fresh = try mine.plan(sorted: local, against: InventorySummary(names: [], bits: bits))
        #expect(fresh.missing == local && fresh.bucketsToList.isEmpty)
        // A replica with everything (and the foreign name): nothing missing, nothing to list.
        let same = try mine.plan(sorted: local, against: InventorySummary(names: local + [all[1]], bits: bits))
        #expect(same.missing.isEmpty && same.bucketsToList.isEmpty)
        // A replica lacking one bucket entirely and one name of another.
        let emptyBucket = InventorySummary.bucket(of: local[0], bits: bits)
        let lacked = local.first { InventorySummary.bucket(of: $0, bits: bits) != emptyBucket }!
        let remote = local.filter { InventorySummary.bucket(of: $0, bits: bits) != emptyBucket && $0 != lacked } + [all[1]]
        let plan = try mine.plan(sorted: local, against: InventorySummary(names: remote, bits: bits))
        #expect(plan.missing == local.filter { InventorySummary.bucket(of: $0, bits: bits) == emptyBucket })
        #expect(plan.bucketsToList == [InventorySummary.bucket(of: lacked, bits: bits)])
        // A summary of another size is refused, not compared.
        let error = #expect(throws: ReplicationError.self) {
            try mine.plan(sorted: local, against: InventorySummary(names: remote, bits: bits - 1))
        }
        #expect(error?.code == .malformed)
    }
}
