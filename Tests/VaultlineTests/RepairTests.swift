import Foundation
import Logging
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

/// `repair --from` in both directions, and `repair snapshots` when data is lost everywhere.
@Suite struct RepairTests {
    static func repair(_ path: String, key: MasterKey?, port: Int, identity: SiteIdentity = TestSites.shared.primary) async throws -> PeerRepair.Summary {
        var o = PeerRepair.Options(host: "127.0.0.1", port: port, identity: identity)
        o.clientName = "test-repair"
        var logger = Logger(label: "test.repair")
        logger.logLevel = .critical
        return try await PeerRepair(repositoryPath: path, key: key, options: o, logger: logger).run()
    }

    /// Flips a bit in `count` packs, deletes `deleted` more, damages one index file.
    static func damage(_ repo: Repository, flipped: Int, deleted: Int, seed: UInt64) throws -> Set<String> {
        let backend = repo.backend as! LocalBackend
        var packs = try backend.list(.pack).sorted()
        var rng = SplitMix64(seed: seed)
        var hurt = Set<String>()
        for i in 0..<(flipped + deleted) {
            let name = packs.remove(at: Int(rng.next() % UInt64(packs.count)))
            if i < flipped {
                let size = try backend.stat(.pack, name)!
                try VerificationTests.flipBit(backend.path(.pack, name), at: Int64(rng.next() % UInt64(size)), bit: Int(rng.next() % 8))
            } else {
                try backend.delete(.pack, name)
            }
            hurt.insert("packs/\(name)")
        }
        let index = try backend.list(.index).sorted()[0]
        try VerificationTests.flipBit(backend.path(.index, index), at: 40, bit: 3)
        hurt.insert("index/\(index)")
        return hurt
    }

    @Test(.timeLimit(.minutes(2)))
    func siteARepairsFromSiteB() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 31, scale: 3)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        let before = try ReplicationFixtures.files(dir.path + "/repo")
        let hurt = try Self.damage(repo, flipped: 2, deleted: 2, seed: 5)
        #expect(try !Checker(repository: repo).run(readData: true).ok)

        let summary = try await Self.repair(dir.path + "/repo", key: repo.key, port: receiver.port)
        await receiver.stop()
        #expect(Set(summary.repaired) == hurt)
        #expect(summary.ok && summary.unavailable.isEmpty)
        #expect(try ReplicationFixtures.files(dir.path + "/repo") == before)
        let reopened = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
        #expect(try Checker(repository: reopened).run(readData: true).ok)
        try Restorer(repository: reopened).restore(snapshotID: try reopened.resolveSnapshot("latest"), path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    @Test(.timeLimit(.minutes(2)))
    func siteBRepairsFromSiteAWithoutThePassword() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 32, scale: 2)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        await receiver.stop()
        let replicaPath = dir.path + "/site-b/" + repo.config.id
        let replica = try Repository.open(path: replicaPath, password: Fixtures.password)
        let hurt = try Self.damage(replica, flipped: 3, deleted: 0, seed: 6)

        // Keyless scrub at B finds it; B repairs from A, which serves its repository read-only.
        var o = Scrubber.Options(statePath: dir.path + "/scrub-b")
        let found = try Scrubber(backend: LocalBackend(root: replicaPath), key: nil, options: o).run()
        #expect(Set(found.damaged.map(\.file)) == hurt)
        let siteA = try await RunningReceiver(root: dir.path + "/unused", identity: TestSites.shared.primary, serving: dir.path + "/repo")
        let summary = try await Self.repair(replicaPath, key: nil, port: siteA.port, identity: TestSites.shared.replica)
        #expect(Set(summary.repaired) == hurt && summary.ok)
        // Site A's server takes nothing: a push to it (a new snapshot made at B) is refused.
        _ = try Fixtures.backup(replica, [dir.path + "/src"])
        await expectError(ReplicationError.self, .forbidden) { try await ReplicationFixtures.replicate(replicaPath, port: siteA.port) { $0.retries = 0 } }
        await siteA.stop()
        o.statePath = dir.path + "/scrub-b2"
        #expect(try Scrubber(backend: LocalBackend(root: replicaPath), key: nil, options: o).run().ok)
        #expect(try ReplicationFixtures.files(replicaPath).filter { !$0.key.hasPrefix("snapshots/") }
                == ReplicationFixtures.files(dir.path + "/repo").filter { !$0.key.hasPrefix("snapshots/") }.merging(ReplicationFixtures.files(replicaPath).filter { $0.key.hasPrefix("packs/") || $0.key.hasPrefix("index/") }) { a, _ in a })
    }

    @Test func repairSnapshotsMarksExactlyTheLostItems() throws {
        let (dir, repo, snap) = try VerificationTests.manyPacks()
        try repo.loadIndex()
        let pack = repo.index.packIDs.first { $0.type == .data }!.id
        try repo.backend.delete(.pack, pack.hex)
        let affected = try Checker(repository: repo).run(readData: false).affected.first { $0.snapshot == snap }!.paths

        let result = try SnapshotRepair.run(repo, readData: true, dryRun: false)
        #expect(result.rewritten.count == 1)
        let rewritten = try #require(result.rewritten.first)
        #expect(rewritten.old == snap && rewritten.damagedItems == affected)
        #expect(try !repo.backend.list(.snapshot).contains(snap))
        let check = try Checker(repository: repo).run(readData: true)
        #expect(check.ok, "\(check.errors)")

        // Restore writes every other file byte-identical and lists the damaged ones.
        let new = try #require(rewritten.new)
        let restorer = Restorer(repository: repo)
        try restorer.restore(snapshotID: new, path: "/", target: dir.path + "/out")
        #expect(restorer.stats.damaged.count == affected.count)
        let restoredRoot = dir.path + "/out/src/docs"
        for i in 0..<48 {
            let name = "file-\(i).bin"
            let lost = affected.contains { $0.hasSuffix("/" + name) }
            #expect(FileSystem.exists(restoredRoot + "/" + name) == !lost)
            if !lost {
                #expect(try FileSystem.readFile(restoredRoot + "/" + name) == FileSystem.readFile(dir.path + "/src/docs/" + name))
            }
        }
        let snapshot = try repo.loadSnapshot(new)
        #expect(snapshot.repairedFrom == snap && snapshot.partial && snapshot.tags.contains("repaired"))
        #expect(snapshot.errors.count == affected.count)
    }
}
