import Foundation
import GraphSimulator
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// `m365 serve` as it ships, a subprocess: SIGTERM and restarts, and the RPO bench's short run
/// with every fault in it.
@Suite("Continuous protection: the CLI")
struct ContinuousCLITests {
    /// The RPO bench (tools/bench/rpo) at test scale: 1 to 2 s intervals, a 20 s RPO, and in
    /// one 20 s run a throttling storm, expired delta tokens, a kill -9 of the service and a cut
    /// to site B. No change may be lost, and each must reach both sites within the RPO.
    @Test(.timeLimit(.minutes(10)))
    func everyChangeReachesBothSitesThroughFaultsWithinTheRPO() throws {
        let dir = TemporaryDirectory()
        let run = try Fixtures.cli(["debug", "rpo", "--seconds", "20", "--rate", "5", "--users", "4", "--messages", "12", "--files", "4",
                                    "--rpo", "20", "--commit-interval", "2", "--mail-interval", "1", "--drive-interval", "2",
                                    "--debounce", "0.5", "--faults", "--json", "--dir", dir.path + "/bench"])
        #expect(run.status == 0, "\(run.out)")
        struct Spread: Decodable { var count: Int; var p99: Double; var max: Double }
        struct Report: Decodable { var changes: Int; var lost: Int; var faults: [String]; var siteA: Spread; var siteB: Spread }
        let report = try JSONDecoder().decode(Report.self, from: Data(run.out.utf8))
        #expect(report.changes >= 50, "5 a second for 20 s")
        #expect(report.lost == 0)
        #expect(report.faults.count == 4)
        #expect(report.siteA.count == report.changes)
        #expect(report.siteA.max <= 20, "the slowest change took \(report.siteA.max) s to site A")
        #expect(report.siteB.max <= 20 + 10, "the slowest change took \(report.siteB.max) s to site B (it was stopped for 2 s)")
    }

    @Test(.timeLimit(.minutes(10)))
    func sigtermStoresThePassInFlightAndARestartDownloadsNothingAgain() async throws {
        let f = try await GraphFixture()
        let port = try freeLoopbackPort()
        func start() throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
            p.arguments = ["m365", "serve", "--repo", f.dir.path + "/repo", "--graph-url", f.sim.graphURL, "--authority", f.sim.authorityURL,
                           "--listen", "127.0.0.1:\(port)", "--commit-interval", "1", "--mail-interval", "1", "--drive-interval", "1",
                           "--debounce", "0.2", "--maintenance-window", "always", "--log-level", "critical"]
            p.environment = ["VAULTLINE_PASSWORD": String(decoding: Fixtures.password, as: UTF8.self), "HOME": f.dir.path,
                             "VAULTLINE_GRAPH_TENANT": f.sim.tenantId, "VAULTLINE_GRAPH_CLIENT_ID": f.sim.clientId, "VAULTLINE_GRAPH_SECRET": "test-secret"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        let base = "http://127.0.0.1:\(port)"
        var service = try start()
        defer { if service.isRunning { service.terminate() } }
        #expect(try await ContinuousServiceTests.poll(seconds: 180) { (try? await ServiceStatus.fetch(from: base, timeout: 2))?.snapshotsCommitted ?? 0 >= 1 })
        // Its maintenance runs in the window (always here): retention, prune, a scrub slice.
        #expect(try await ContinuousServiceTests.poll(seconds: 180) {
            guard let m = (try? await ServiceStatus.fetch(from: base, timeout: 2))?.maintenance else { return false }
            return m.window == "always" && m.lastForget != nil && m.lastPrune != nil && m.lastScrub != nil && m.lastErrors.isEmpty
        })
        // A change, then SIGTERM while the service is at work: it ends the pass and exits 0.
        let upn = f.sim.tenant.users[0].upn
        let message = try #require(f.sim.tenant.mailbox(upn: upn).first)
        f.sim.tenant.deleteMessage(upn: upn, id: message.id)
        try await Task.sleep(for: .seconds(3))
        service.terminate()
        let stopped = try await ContinuousServiceTests.poll(seconds: 180) { !service.isRunning }
        #expect(stopped)
        #expect(service.terminationStatus == 0 && service.terminationReason == .exit)
        let snapshots = try f.repo.listSnapshots()
        let newest = try #require(snapshots.last)
        #expect(try !f.restore(newest.id, "/users/\(upn)/mail").keys.contains { $0.hasSuffix(itemFileName(message.id, ext: ".eml")) })

        // Restarted: every collection is polled once, nothing is downloaded or stored again.
        service = try start()
        #expect(try await ContinuousServiceTests.poll(seconds: 180) { (try? await ServiceStatus.fetch(from: base, timeout: 2))?.passes ?? 0 >= 2 })
        let metrics = PrometheusText.values(try await ContinuousServiceTests.get(base + "/metrics").body)
        #expect(metrics["vaultline_m365_items_total"] == 0)
        #expect(metrics["vaultline_m365_snapshots_total{result=\"committed\"}"] == 0)
        #expect(try f.repo.listSnapshots().count == snapshots.count)
        // What maintenance did is remembered: not forgotten and pruned again at once.
        #expect(try await ServiceStatus.fetch(from: base, timeout: 2).maintenance?.lastPrune != nil)
        service.terminate()
        service.waitUntilExit()
        await f.close()
    }
}
