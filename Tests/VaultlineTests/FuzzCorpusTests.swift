import Foundation
import Testing
@_spi(Fuzzing) @testable import VaultlineCore
@_spi(Fuzzing) @testable import VaultlineReplication

/// The fuzzers' entry points in the default suite: every seed, and a few hundred deterministic
/// mutations of each (bit flips, cut ends, lengths set to extremes), must leave the receiver
/// and the readers standing. `tools/fuzz` runs the same entry points under libFuzzer and ASan.
@Suite("Fuzz corpus") struct FuzzCorpusTests {
    /// Mutations of `seed` that reach the checks the fuzzer found worth having: one bit
    /// flipped at spread positions, the input cut short, and 8-byte runs set to 0xFF or 0x80….
    static func mutations(of seed: [UInt8], count: Int) -> [[UInt8]] {
        var out: [[UInt8]] = [seed]
        var rng = SplitMix64(seed: UInt64(seed.count))
        for i in 0..<count {
            var m = seed
            guard m.count > 1 else { break }
            let at = 1 + Int(rng.next() % UInt64(m.count - 1))
            switch i % 4 {
            case 0: m[at] ^= UInt8(1) << (rng.next() % 8)
            case 1: m.removeLast(min(m.count - 1, 1 + Int(rng.next() % 64)))
            case 2: for j in at..<min(m.count, at + 8) { m[j] = 0xFF }
            default: for j in at..<min(m.count, at + 8) { m[j] = j == at ? 0x80 : 0 }
            }
            out.append(m)
        }
        return out
    }

    @Test(.timeLimit(.minutes(2)))
    func receiverSurvivesItsSeedsAndTheirMutations() async throws {
        let dir = TemporaryDirectory()
        let harness = try ReceiverFuzzing(root: dir.path + "/root")
        let seeds = ReceiverFuzzing.seeds()
        // The seeds reach deep: the push seed's pack and empty index file are committed, the
        // config seed's config too, and the replica's GET reads the pack back.
        #expect(await harness.run(seeds[0]) > 0)
        let replica = try harness.server.store.repository(id: ReceiverFuzzing.repositoryID, create: false)
        #expect(replica.count(.pack) == 1 && replica.count(.index) == 1)
        #expect(replica.count(.config) == 0)
        _ = await harness.run(seeds[1])
        #expect(replica.count(.config) == 1)
        for seed in seeds {
            for input in Self.mutations(of: seed, count: 60) { _ = await harness.run(input) }
        }
        // Still a working receiver.
        #expect(await harness.run(seeds[2]) > 3000)
    }

    @Test func formatReadersSurviveTheirSeedsAndTheirMutations() throws {
        let seeds = FormatFuzzing.seeds()
        // The seeds are valid: each reader accepts its own writer's output.
        #expect(try IndexFile.decode(Array(seeds[0].dropFirst()), object: "seed").count == 2)
        #expect(try PackFormat.decodeHeader(Array(seeds[1].dropFirst()), object: "seed").count == 3)
        #expect(try FormatFuzzing.readPack(Array(seeds[3].dropFirst())).count == 3)
        #expect(try Tree.decode(Array(seeds[4].dropFirst()), id: "seed").nodes.count == 2)
        for seed in seeds {
            for input in Self.mutations(of: seed, count: 400) { FormatFuzzing.run(input) }
        }
        // A header whose entry points past the blob area is refused, not trusted.
        let short = try FormatFuzzing.sealedPack(header: Array(seeds[1].dropFirst()), blobArea: 250)
        expectError(VaultlineError.self, .corrupt) { try FormatFuzzing.readPack(short) }
    }
}
