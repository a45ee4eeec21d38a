import Foundation
import Logging
import Testing
@testable import VaultlineCore
@testable import VaultlineService
import VaultlineGraph

/// `m365 serve`'s retention, prune and scrub: what runs in the window, what it removes, and
/// that nothing runs while the passes fall behind.
@Suite struct ServiceMaintenanceTests {
    static let base = "https://graph.test/v1.0"

    /// A repository holding an old and a new snapshot of the tenant (each its own data), and an
    /// old one of another tenant; returns their ids.
    static func repository(_ dir: TemporaryDirectory) throws -> (repo: Repository, old: String, new: String, foreign: String) {
        let repo = try Fixtures.repository(in: dir)
        var trees: [String] = []
        for seed in [UInt64(1), 2] {
            try Fixtures.makeTree(at: dir.path + "/src\(seed)", seed: seed)
            let local = try Fixtures.backup(repo, [dir.path + "/src\(seed)"])
            trees.append(local.snapshot.tree)
            try repo.backend.delete(.snapshot, local.snapshotID)
        }
        func m365(_ tree: String, _ base: String, age: TimeInterval) throws -> String {
            try repo.saveSnapshot(Snapshot(time: Date().addingTimeInterval(-age), sourceKind: M365Backup.sourceKind, paths: [base],
                                           tags: [], parent: nil, tree: tree, stats: .init()))
        }
        let old = try m365(trees[0], base, age: 3 * 86_400)
        let new = try m365(trees[1], base, age: 60)
        let foreign = try m365(trees[1], "https://graph.other/v1.0", age: 3 * 86_400)
        return (repo, old, new, foreign)
    }

    static func configuration(_ dir: TemporaryDirectory) -> ServiceMaintenance.Configuration {
        var configuration = ServiceMaintenance.Configuration()
        var policy = ForgetPolicy()
        policy.within = 3_600
        configuration.retention = policy
        configuration.window = .always
        configuration.prune.grace = 0
        configuration.pruneEverySeconds = 0.2
        configuration.scrubEverySeconds = 0.2
        configuration.scrubPeriod = 0.001
        configuration.checkEverySeconds = 0.05
        configuration.stateDirectory = dir.path + "/state"
        return configuration
    }

    @Test func thinsPrunesAndScrubsTheTenantInTheWindow() async throws {
        let dir = TemporaryDirectory()
        let (repo, old, new, foreign) = try Self.repository(dir)
        func packBytes() throws -> Int64 { try repo.backend.list(.pack).reduce(0) { $0 + (try repo.backend.stat(.pack, $1) ?? 0) } }
        let packsBefore = try packBytes()
        let metrics = ServiceMetrics(version: "test")
        let state = ServiceState(rpoSeconds: 300, replicates: false)
        let jobs = Locked<[String]>([])
        let maintenance = ServiceMaintenance(repository: repo, graphBase: Self.base, configuration: Self.configuration(dir), metrics: metrics,
                                             state: state, logger: Logger(label: "test"), atRisk: { false },
                                             onJob: { job in jobs.withLock { $0.append(job) } })
        let running = Task { try await maintenance.run() }
        defer { running.cancel() }
        // Prune marks in one run and deletes in a later one (grace 0); the scrub reads a pass.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let done = jobs.withLock { $0 }
            if done.filter({ $0 == "prune" }).count >= 2, done.contains("scrub"), state.current.maintenance?.scrubPassFraction == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        running.cancel()
        _ = try? await running.value
        let snapshots = Set(try repo.backend.list(.snapshot))
        #expect(snapshots == [new, foreign], "the tenant's old snapshot goes; its newest and another tenant's stay")
        #expect(!snapshots.contains(old))
        #expect(try packBytes() < packsBefore, "prune deleted the old snapshot's data")
        let status = try #require(state.current.maintenance)
        #expect(status.lastForget != nil && status.lastPrune != nil && status.lastScrub != nil)
        #expect(status.scrubPassFraction == 1 && status.scrubDamaged.isEmpty && status.lastErrors.isEmpty)
        let text = metrics.text()
        #expect(text.contains("vaultline_forget_snapshots_removed_total 1"))
        #expect(!text.contains("vaultline_prune_freed_bytes_total 0\n"))
        #expect(!text.contains("vaultline_maintenance_last_success_timestamp_seconds{job=\"scrub\"} 0.0"))
        // What ran is kept: a restart does not forget or prune again before its interval.
        #expect(FileSystem.exists(maintenance.statePath))
        #expect(maintenance.load().lastPrune != nil)
        // Every remaining snapshot restores whole after the prune.
        #expect(try Checker(repository: try Repository.open(path: dir.path + "/repo", password: Fixtures.password)).run(readData: true).ok)
    }

    @Test func nothingRunsWhileThePassesFallBehind() async throws {
        let dir = TemporaryDirectory()
        let (repo, _, _, _) = try Self.repository(dir)
        let before = Set(try repo.backend.list(.snapshot))
        let metrics = ServiceMetrics(version: "test")
        let state = ServiceState(rpoSeconds: 300, replicates: false)
        let jobs = Locked<[String]>([])
        let stops = Locked(0)
        let maintenance = ServiceMaintenance(repository: repo, graphBase: Self.base, configuration: Self.configuration(dir), metrics: metrics,
                                             state: state, logger: Logger(label: "test"), atRisk: { true },
                                             onStop: { stops.withLock { $0 += 1 } }, onJob: { job in jobs.withLock { $0.append(job) } })
        let running = Task { try await maintenance.run() }
        // Beside the suite the loop may start late: wait for its first rounds, then a few more.
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, state.current.maintenance?.paused == nil { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .milliseconds(500))
        #expect(state.current.maintenance?.paused?.contains("RPO") == true)
        #expect(metrics.text().contains("vaultline_maintenance_paused 1"))
        running.cancel()
        _ = try? await running.value
        #expect(stops.withLock { $0 } == 1, "a stopping service gives its maintenance lease back")
        #expect(jobs.withLock { $0 }.isEmpty)
        #expect(Set(try repo.backend.list(.snapshot)) == before)
    }

    @Test func windowsParseAndContain() throws {
        let utc = try #require(TimeZone(identifier: "UTC"))
        func at(_ time: String) -> Date { ISO8601DateFormatter().date(from: "2026-12-03T\(time):00Z")! }
        let night = try MaintenanceWindow(parsing: "01:00-05:00", timeZone: utc)
        #expect(night.contains(at("01:00")) && night.contains(at("04:59")))
        #expect(!night.contains(at("05:00")) && !night.contains(at("00:59")) && !night.contains(at("13:00")))
        let crossing = try MaintenanceWindow(parsing: "22:30-02:00", timeZone: utc)
        #expect(crossing.contains(at("23:00")) && crossing.contains(at("01:59")) && crossing.contains(at("22:30")))
        #expect(!crossing.contains(at("02:00")) && !crossing.contains(at("12:00")))
        #expect(try MaintenanceWindow(parsing: "always").contains(at("12:00")))
        #expect(try !MaintenanceWindow(parsing: "never").contains(at("12:00")))
        #expect(try !MaintenanceWindow(parsing: "03:00-03:00", timeZone: utc).contains(at("03:00")))
        #expect(try MaintenanceWindow(parsing: "00:00-24:00", timeZone: utc).contains(at("23:59")))
        for bad in ["1:00-5:00", "01:00", "25:00-01:00", "01:60-02:00", "01:00-24:30", "", "soon"] {
            expectError(VaultlineError.self, .invalidArgument) { try MaintenanceWindow(parsing: bad) }
        }
        #expect(night.description.hasPrefix("01:00-05:00 "))
    }
}
