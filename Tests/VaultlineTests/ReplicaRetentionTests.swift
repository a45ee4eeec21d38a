import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// Site B's own retention: its policy, its retention lock, and a primary that cannot undo it.
@Suite struct ReplicaRetentionTests {
    @Test(.timeLimit(.minutes(2)))
    func retentionLockRefusesAndPrunedNamesAreNotSentAgain() async throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 21)
        try RetentionTests.evolve(dir, &rng, changed: 40)
        for _ in 0..<4 {
            try RetentionTests.evolve(dir, &rng, changed: 10)
            _ = try Fixtures.backup(repo, [dir.path + "/src"])
        }
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        let replicaPath = dir.path + "/site-b/" + repo.config.id
        let replica = try Repository.open(path: replicaPath, password: Fixtures.password)
        var policy = ForgetPolicy()
        policy.last = 1

        // A 30-day lock: the policy would remove three snapshots; each is refused, with why.
        try RetentionLock.raise(repository: replicaPath, days: 30)
        let refused = try replica.forget(policy: policy, grouping: .source, dryRun: false,
                                         retention: RetentionLock.load(repository: replicaPath), replicaPath: replicaPath)
        #expect(refused.filter { $0.refused != nil }.count == 3)
        #expect(refused.allSatisfy { $0.keep } && refused.compactMap(\.refused).allSatisfy { $0.contains("retention lock") })
        #expect(try replica.backend.list(.snapshot).count == 4)
        expectError(VaultlineError.self, .invalidArgument) { try RetentionLock.raise(repository: replicaPath, days: 10) }

        // A lock of two seconds, expired: the same policy now removes them and prune frees data.
        try FileManager.default.removeItem(atPath: replicaPath + "/" + RetentionLock.fileName)
        let short = try RetentionLock.raise(repository: replicaPath, days: 2.0 / 86400)
        try await Task.sleep(nanoseconds: 2_500_000_000)
        let removed = try replica.forget(policy: policy, grouping: .source, dryRun: false, retention: short, replicaPath: replicaPath)
        #expect(removed.filter { !$0.keep }.count == 3)
        var options = Pruner.Options()
        options.grace = 0
        options.retention = short
        options.replicaPath = replicaPath
        _ = try Pruner(repository: replica, options: options).run()
        let freed = try Pruner(repository: replica, options: options).run()
        #expect(freed.packsDeleted > 0)
        #expect(try Checker(repository: replica).run(readData: true).ok)

        // Site A still holds everything: the receiver counts what B pruned as held, so nothing
        // comes back, and a new backup replicates and checks at B.
        await receiver.stop()
        let again = try await RunningReceiver(root: dir.path + "/site-b")
        let resent = try await ReplicationFixtures.replicate(dir.path + "/repo", port: again.port)
        #expect(resent.filesSent == 0, "forgotten snapshots and freed packs are not sent again")
        #expect(try replica.backend.list(.snapshot).count == 1)
        try RetentionTests.evolve(dir, &rng, changed: 5)
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        let fresh = try await ReplicationFixtures.replicate(dir.path + "/repo", port: again.port)
        await again.stop()
        #expect(fresh.filesSent > 0)
        let reopened = try Repository.open(path: replicaPath, password: Fixtures.password)
        let check = try Checker(repository: reopened).run(readData: true)
        #expect(check.ok, "\(check.errors)")
        try Restorer(repository: reopened).restore(snapshotID: try reopened.resolveSnapshot("latest"), path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }
}
