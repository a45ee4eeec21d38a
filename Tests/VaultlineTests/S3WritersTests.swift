import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineS3

/// Many writers into one repository on a bucket: backups and a prune at once, one prune at a
/// time, and index files that do not pile up.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3WritersTests {
    static func prune(_ repo: Repository) throws -> Pruner.Report {
        var options = Pruner.Options()
        options.grace = 0
        return try Pruner(repository: repo, options: options).run()
    }

    @Test(.timeLimit(.minutes(3)))
    func twoWritersAndAPruneAtOnceLeaveACleanRepository() throws {
        let backend = try S3TestServer.freshBackend("writers")
        let first = try Repository.initialize(backend: backend, name: "writers", password: Fixtures.password, options: Fixtures.options)
        let dir = TemporaryDirectory()
        // Something for the prune to do: a forgotten snapshot's packs.
        try Fixtures.makeTree(at: dir.path + "/old", seed: 3)
        let old = try Fixtures.backup(first, [dir.path + "/old"])
        try backend.delete(.snapshot, old.snapshotID)
        try Fixtures.makeTree(at: dir.path + "/a", seed: 4, scale: 2)
        try Fixtures.makeTree(at: dir.path + "/b", seed: 5, scale: 2)
        // Three processes' worth of repositories, each opened on its own.
        let writers = try (0..<3).map { _ in try Repository.open(backend: backend, password: Fixtures.password, name: "writers") }
        let jobs: [@Sendable () throws -> String] = [
            { try Fixtures.backup(writers[0], [dir.path + "/a"]).snapshotID },
            { try Fixtures.backup(writers[1], [dir.path + "/b"]).snapshotID },
            { _ = try Self.prune(writers[2]); return "" },
        ]
        let outcomes = ConcurrentMap.run(Array(0..<3), width: 3) { try jobs[$0]() }
        let snapshotA = try outcomes[0].get(), snapshotB = try outcomes[1].get()
        _ = try outcomes[2].get()
        // Later prunes delete what the first marked, once no backup from before it runs.
        let after = try Repository.open(backend: backend, password: Fixtures.password, name: "writers")
        _ = try Self.prune(after)
        _ = try Self.prune(after)
        let checked = try Repository.open(backend: backend, password: Fixtures.password, name: "writers")
        #expect(try Checker(repository: checked).run(readData: true).ok)
        try Restorer(repository: checked).restore(snapshotID: snapshotA, path: "/", target: dir.path + "/out-a")
        try Restorer(repository: checked).restore(snapshotID: snapshotB, path: "/", target: dir.path + "/out-b")
        try DirectoryComparison.compare(dir.path + "/a", dir.path + "/out-a/a")
        try DirectoryComparison.compare(dir.path + "/b", dir.path + "/out-b/b")
    }

    @Test(.timeLimit(.minutes(2)))
    func onlyOnePruneRunsAtATime() throws {
        let backend = try S3TestServer.freshBackend("prunes")
        _ = try Repository.initialize(backend: backend, name: "prunes", password: Fixtures.password, options: Fixtures.options)
        // Six processes' maintenance locks taken at the same instant, each held for a while:
        // the intervals in which a lock was held never overlap.
        var heldAtAll = 0
        for round in 0..<3 {
            let start = Date(timeIntervalSinceNow: 0.2)
            let held = ConcurrentMap.run(Array(0..<6), width: 6) { _ -> (Date, Date) in
                Thread.sleep(until: start)
                let lock = try RepositoryLock.acquire(backend, mode: .maintenance, command: "prune")
                let acquired = Date()
                Thread.sleep(forTimeInterval: 0.3)
                let released = Date()
                lock.release()
                return (acquired, released)
            }
            var intervals: [(Date, Date)] = []
            for outcome in held {
                switch outcome {
                case .success(let interval): intervals.append(interval)
                case .failure(let error): #expect((error as? VaultlineError)?.code == .locked, "round \(round): \(error)")
                }
            }
            heldAtAll += intervals.count
            intervals.sort { $0.0 < $1.0 }
            for (earlier, later) in zip(intervals, intervals.dropFirst()) {
                #expect(earlier.1 <= later.0, "round \(round): two maintenance locks held at once")
            }
        }
        #expect(heldAtAll > 0, "some lock was held, or nothing was tested")
        // Prunes themselves, four at once: each either ran or was refused as locked.
        let repos = try (0..<4).map { _ in try Repository.open(backend: backend, password: Fixtures.password, name: "prunes") }
        for outcome in ConcurrentMap.run(repos, width: 4, { try Self.prune($0) }) {
            if case .failure(let error) = outcome { #expect((error as? VaultlineError)?.code == .locked, "\(error)") }
        }
        // None left a lock behind.
        #expect(try backend.list(.lock).isEmpty)
    }

    @Test(.timeLimit(.minutes(2)))
    func indexFilesOfManyBackupsAreMergedByPrune() throws {
        let backend = try S3TestServer.freshBackend("merge")
        let repo = try Repository.initialize(backend: backend, name: "merge", password: Fixtures.password, options: Fixtures.options)
        let dir = TemporaryDirectory()
        for index in 0..<14 {
            try Fixtures.writeFile(dir.path + "/f\(index)", Array("file \(index) of a small backup".utf8))
            _ = try Fixtures.backup(repo, [dir.path + "/f\(index)"])
        }
        let before = try Repository.open(backend: backend, password: Fixtures.password, name: "merge")
        try before.loadIndex()
        #expect(before.indexFiles.count >= 14)
        let report = try Self.prune(before)
        #expect(report.indexFilesRemoved == before.indexFiles.count)
        let after = try Repository.open(backend: backend, password: Fixtures.password, name: "merge")
        try after.loadIndex()
        #expect(after.indexFiles.count == 1)
        #expect(try Checker(repository: after).run(readData: true).ok)
        // Below the bound, a prune with nothing to free leaves the index files alone.
        #expect(try Self.prune(after).indexFilesWritten == 0)
    }
}
