import Foundation
import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// forget's policy, the ransomware rule, and prune: what it frees, what it never touches.
@Suite struct RetentionTests {
    static func snapshot(_ time: String, tags: [String] = [], paths: [String] = ["/data"], flagged: Bool = false) -> Snapshot {
        var s = Snapshot(time: ISO8601DateFormatter().date(from: time)!, sourceKind: "local", paths: paths, tags: tags, parent: nil, tree: "", stats: .init())
        if flagged {
            s.signal = .init(changedItems: 9, changedShare: 0.9, changedBytes: 1, newBytes: 1, incompressibleShare: 1, flagged: true, reason: "test")
        }
        return s
    }

    @Test func policyKeepsByRule() {
        // One snapshot every 6 hours for 60 days, newest 2026-11-25T18:00Z.
        var all: [(id: String, snapshot: Snapshot)] = []
        let end = ISO8601DateFormatter().date(from: "2026-11-25T18:00:00Z")!
        for i in 0..<240 {
            let t = end.addingTimeInterval(-Double(i) * 6 * 3600)
            var s = Self.snapshot("2026-01-01T00:00:00Z", tags: i == 200 ? ["keep-forever"] : [])
            s.time = t
            all.append((String(format: "%064x", i), s))
        }
        var p = ForgetPolicy()
        p.last = 3
        p.daily = 7
        p.weekly = 4
        p.tags = ["keep-forever"]
        let kept = Set(p.apply(all, grouping: .source).filter(\.keep).map(\.id))
        // Last 3 (i 0..2), the newest of each of 7 days (i 0, 3, 7, 11, ... as days start at 00:00),
        // the newest of 4 ISO weeks, and the tagged one.
        #expect(kept.contains(String(format: "%064x", 0)) && kept.contains(String(format: "%064x", 2)))
        #expect(kept.contains(String(format: "%064x", 200)))
        let days = Set(all.filter { kept.contains($0.id) }.map { Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: $0.snapshot.time).day! })
        #expect(days.count >= 7)
        #expect(kept.count <= 3 + 7 + 4 + 1)
        var within = ForgetPolicy()
        within.within = 2 * 86400
        #expect(within.apply(all, grouping: .none).filter(\.keep).count == 9)  // 0, 6, …, 48 hours
    }

    @Test func withinBucketsHoldWhateverTheGaps() {
        // Every 10 minutes for 3 days, then a 5-day gap, then every 10 minutes for 1 day (newest
        // 2026-11-25T23:50Z): hourly-within 2 days reaches only the newest day and the gap.
        var all: [(id: String, snapshot: Snapshot)] = []
        let end = ISO8601DateFormatter().date(from: "2026-11-25T23:50:00Z")!
        for i in 0..<(4 * 144) {
            let minutes = Double(i) * 10 + (i >= 144 ? 5 * 1440 : 0)
            var s = Self.snapshot("2026-01-01T00:00:00Z")
            s.time = end.addingTimeInterval(-minutes * 60)
            all.append((String(format: "%064x", i), s))
        }
        var p = ForgetPolicy()
        p.within = 3_600
        p.withinHourly = 2 * 86_400
        p.withinDaily = 10 * 86_400
        let kept = p.apply(all, grouping: .source).filter(\.keep)
        // within 1 h: 7 (0…60 minutes); hourly within 2 days: the newest day's 24 hours (the
        // newest of 23h and 22h already kept by `within`); daily within 10 days: 1 + 3 older days.
        let hourlyOnly = kept.filter { $0.reasons.contains { $0.hasPrefix("hourly") } }
        #expect(hourlyOnly.count == 24)
        let daily = kept.filter { $0.reasons.contains { $0.hasPrefix("daily") } }
        #expect(daily.count == 4)
        #expect(kept.count == 7 + 22 + 3)
        #expect(!p.isEmpty)
    }

    @Test func pathGroupingKeepsASnapshotWhenAnyOfItsPathsDoes() {
        // Batches holding different users: b1 {ann, bob} then b2 {bob} then b3 {ann}.
        let base = "https://graph/v1.0"
        let all: [(id: String, snapshot: Snapshot)] = [
            ("b1", Self.snapshot("2026-11-20T00:00:00Z", paths: [base + "/users/ann", base + "/users/bob"])),
            ("b2", Self.snapshot("2026-11-21T00:00:00Z", paths: [base + "/users/bob"])),
            ("b3", Self.snapshot("2026-11-22T00:00:00Z", paths: [base + "/users/ann"])),
            ("b4", Self.snapshot("2026-11-22T06:00:00Z", paths: [base + "/users/bob"])),
        ]
        var p = ForgetPolicy()
        p.last = 1
        let byPath = p.apply(all, grouping: .path)
        #expect(byPath.count == 4)
        #expect(Set(byPath.filter(\.keep).map(\.id)) == ["b3", "b4"])
        p.last = 2
        // ann: b3, b1; bob: b4, b2 — b1 is kept for ann alone.
        let two = p.apply(all, grouping: .path)
        #expect(Set(two.filter(\.keep).map(\.id)) == ["b1", "b2", "b3", "b4"])
        #expect(two.first { $0.id == "b1" }?.group.hasSuffix("/users/ann") == true)
        // By source each batch is its own group: nothing is ever thinned.
        p.last = 1
        #expect(p.apply(all, grouping: .source).filter(\.keep).count == 3)
    }

    @Test func flaggedSnapshotHoldsTheLastGoodOneUntilReleased() {
        let all: [(id: String, snapshot: Snapshot)] = [
            ("a", Self.snapshot("2026-11-20T00:00:00Z")),
            ("b", Self.snapshot("2026-11-21T00:00:00Z")),
            ("c", Self.snapshot("2026-11-22T00:00:00Z", flagged: true)),
            ("d", Self.snapshot("2026-11-23T00:00:00Z", flagged: true)),
        ]
        var p = ForgetPolicy()
        p.last = 1
        let kept = p.apply(all, grouping: .source).filter(\.keep)
        #expect(Set(kept.map(\.id)) == ["d", "b"])
        #expect(kept.first { $0.id == "b" }?.reasons.first?.hasPrefix("last unflagged before flagged") == true)
        var released = all
        released[2].snapshot.released = true
        released[3].snapshot.released = true
        #expect(Set(p.apply(released, grouping: .source).filter(\.keep).map(\.id)) == ["d"])
    }

    /// Text that compresses, as documents and mail do.
    static func text(_ rng: inout SplitMix64, _ count: Int) -> [UInt8] {
        let words = ["backup", "mailbox", "tenant", "restore", "quarterly", "report", "invoice", "meeting", "the", "and", "of"]
        var out: [UInt8] = []
        while out.count < count { out += Array((words[Int(rng.next() % UInt64(words.count))] + (rng.next() % 9 == 0 ? ".\n" : " ")).utf8) }
        return Array(out.prefix(count))
    }

    @Test func encryptedFilesAreFlaggedAndEditsAreNot() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 3)
        try FileSystem.makeDirectories(dir.path + "/src")
        for i in 0..<20 { try Fixtures.writeFile(dir.path + "/src/doc-\(i).txt", Self.text(&rng, 200_000)) }
        let first = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(first.snapshot.signal == nil)
        // Ordinary edits: five documents get a new paragraph.
        for i in 0..<5 { try Fixtures.writeFile(dir.path + "/src/doc-\(i).txt", try FileSystem.readFile(dir.path + "/src/doc-\(i).txt") + Self.text(&rng, 50_000)) }
        let edited = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(edited.snapshot.signal?.changedItems == 5 && !edited.snapshot.isFlagged)
        // Ransomware: 15 documents encrypted in place (random bytes, same size).
        for i in 5..<20 { try Fixtures.writeFile(dir.path + "/src/doc-\(i).txt", rng.bytes(200_000)) }
        let hit = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(hit.snapshot.isFlagged, "\(String(describing: hit.snapshot.signal))")
        #expect((hit.snapshot.signal?.incompressibleShare ?? 0) > 0.9)

        // forget --keep-last 1 keeps the flagged one and the last good one before it.
        var policy = ForgetPolicy()
        policy.last = 1
        let decisions = try repo.forget(policy: policy, grouping: .source, dryRun: false)
        #expect(Set(decisions.filter(\.keep).map(\.id)) == [hit.snapshotID, edited.snapshotID])
        // Released by an administrator, the flagged one no longer holds it.
        let released = try repo.releaseFlag(hit.snapshotID)
        #expect(try !repo.loadSnapshot(released).isFlagged)
        _ = try repo.forget(policy: policy, grouping: .source, dryRun: false)
        #expect(try repo.backend.list(.snapshot) == [released])
    }

    /// 30 text files (compressible, so no snapshot is flagged); each call rewrites `changed` of them.
    static func evolve(_ dir: TemporaryDirectory, _ rng: inout SplitMix64, changed: Int) throws {
        try FileSystem.makeDirectories(dir.path + "/src")
        for _ in 0..<changed {
            let name = dir.path + "/src/f-\(rng.next() % 30).txt"
            try Fixtures.writeFile(name, text(&rng, 200_000 + Int(rng.next() % 300_000)))
        }
    }

    static func repositoryBytes(_ path: String) throws -> UInt64 {
        let backend = LocalBackend(root: path)
        return try backend.list(.pack).reduce(0) { $0 + UInt64(try backend.stat(.pack, $1) ?? 0) }
    }

    @Test func pruneFreesWhatForgottenSnapshotsAloneUsed() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 8)
        try Self.evolve(dir, &rng, changed: 60)
        for _ in 0..<6 {
            try Self.evolve(dir, &rng, changed: 12)
            _ = try Fixtures.backup(repo, [dir.path + "/src"])
        }
        let before = try Self.repositoryBytes(dir.path + "/repo")
        var policy = ForgetPolicy()
        policy.last = 2
        _ = try repo.forget(policy: policy, grouping: .source, dryRun: false)
        var options = Pruner.Options()
        options.grace = 0
        let mark = try Pruner(repository: repo, options: options).run()
        #expect(mark.packsMarked > 0 && mark.packsDeleted == 0, "the first run only marks: \(mark)")
        #expect(try Checker(repository: repo).run(readData: true).ok)
        let delete = try Pruner(repository: repo, options: options).run()
        #expect(delete.packsDeleted == mark.packsMarked && delete.bytesFreed > 0)
        let after = try Self.repositoryBytes(dir.path + "/repo")
        #expect(after < before * 2 / 3, "\(after) of \(before) bytes left")
        let check = try Checker(repository: repo).run(readData: true)
        #expect(check.ok && check.warnings.isEmpty, "\(check.errors) \(check.warnings)")
        let latest = try repo.resolveSnapshot("latest")
        try Restorer(repository: repo).restore(snapshotID: latest, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        // Nothing left to do.
        let idle = try Pruner(repository: repo, options: options).run()
        #expect(idle.packsMarked == 0 && idle.packsDeleted == 0)
    }

    @Test(.timeLimit(.minutes(2)))
    func aBackupRunningDuringPruneCompletesAndRestores() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 10)
        try Self.evolve(dir, &rng, changed: 60)
        let old = try Fixtures.backup(repo, [dir.path + "/src"])
        // Its only snapshot forgotten: every pack is unreferenced, but a backup of the same data
        // that starts now deduplicates against all of them.
        try repo.backend.delete(.snapshot, old.snapshotID)
        let backupRepo = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
        let entered = DispatchSemaphore(value: 0), proceed = DispatchSemaphore(value: 0)
        let first = Locked(true)
        var options = DirectoryBackup.Options(paths: [dir.path + "/src"])
        options.noParent = true
        options.readers = 1
        let job = DirectoryBackup(repository: backupRepo, options: options) { _ in
            if first.withLock({ f in defer { f = false }; return f }) {
                entered.signal()
                proceed.wait()
            }
        }
        let result = Locked<Result<DirectoryBackup.Result, any Error>?>(nil)
        let thread = Thread { result.withLock { $0 = Result { try job.run() } } }
        thread.start()
        entered.wait()
        var pruneOptions = Pruner.Options()
        pruneOptions.grace = 0
        let marked = try Pruner(repository: repo, options: pruneOptions).run()
        #expect(marked.packsMarked > 0, "the prune marks the packs the backup is deduplicating against")
        proceed.signal()
        while result.withLock({ $0 == nil }) { usleep(10_000) }
        let snap = try #require(try result.withLock { $0 }?.get()).snapshotID
        #expect(try Checker(repository: repo).run(readData: true).ok, "the finished backup put its packs back in the index")
        // The next prune deletes nothing the new snapshot uses.
        _ = try Pruner(repository: repo, options: pruneOptions).run()
        _ = try Pruner(repository: repo, options: pruneOptions).run()
        #expect(try Checker(repository: repo).run(readData: true).ok)
        try Restorer(repository: repo).restore(snapshotID: snap, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    @Test func pruneWaitsForBackupsOlderThanItsPlan() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 11)
        try Self.evolve(dir, &rng, changed: 40)
        let old = try Fixtures.backup(repo, [dir.path + "/src"])
        try repo.backend.delete(.snapshot, old.snapshotID)
        let lock = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "backup")
        var options = Pruner.Options()
        options.grace = 0
        let mark = try Pruner(repository: repo, options: options).run()
        let wait = try Pruner(repository: repo, options: options).run()
        #expect(mark.packsMarked > 0 && wait.packsDeleted == 0 && wait.plansWaiting.count == 1)
        #expect(wait.plansWaiting.first?.contains("started before it") == true)
        lock.release()
        let done = try Pruner(repository: repo, options: options).run()
        #expect(done.packsDeleted == mark.packsMarked)
        options.grace = 3600
        #expect(try Pruner(repository: repo, options: options).run().plansWaiting.isEmpty)
    }

    @Test(.timeLimit(.minutes(4)))
    func pruneKilledAtRandomPointsLosesNothing() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: UInt64(time(nil)))
        try Self.evolve(dir, &rng, changed: 60)
        let trials = Int(ProcessInfo.processInfo.environment["VAULTLINE_PRUNE_TRIALS"] ?? "") ?? 20
        var killed = 0
        var policy = ForgetPolicy()
        policy.last = 2
        for trial in 0..<trials {
            try Self.evolve(dir, &rng, changed: 10)
            _ = try Fixtures.backup(repo, [dir.path + "/src"])
            _ = try repo.forget(policy: policy, grouping: .source, dryRun: false)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
            p.arguments = ["prune", "--repo", dir.path + "/repo", "--grace", "0", "--repack-below", "0.9"]
            var env = ProcessInfo.processInfo.environment
            env["VAULTLINE_PASSWORD"] = String(decoding: Fixtures.password, as: UTF8.self)
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(useconds_t(rng.next() % 120_000))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                killed += 1
            }
            p.waitUntilExit()
            let reopened = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
            let report = try Checker(repository: reopened).run(readData: trial % 5 == 4)
            #expect(report.ok, "trial \(trial): \(report.errors)")
            if trial % 5 == 4 {
                let out = dir.path + "/out-\(trial)"
                try Restorer(repository: reopened).restore(snapshotID: try reopened.resolveSnapshot("latest"), path: "/", target: out)
                try DirectoryComparison.compare(dir.path + "/src", out + "/src")
            }
        }
        #expect(killed >= trials / 4, "only \(killed) of \(trials) prunes were still running when killed")
        // Two complete runs leave only what the kept snapshots use.
        var options = Pruner.Options()
        options.grace = 0
        _ = try Pruner(repository: repo, options: options).run()
        _ = try Pruner(repository: repo, options: options).run()
        let final = try Checker(repository: repo).run(readData: true)
        #expect(final.ok && final.warnings.isEmpty, "\(final.errors) \(final.warnings)")
    }
}
