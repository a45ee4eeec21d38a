import AsyncHTTPClient
import Foundation
import GraphSimulator
import Logging
import NIOCore
import ServiceLifecycle
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// The service against the simulator, in-process: what a pass polls, what it carries, what it
/// stores, and what its HTTP endpoints say.
@Suite("Continuous protection: the service")
struct ContinuousServiceTests {
    static func service(_ f: GraphFixture, configure: (inout M365Service.Configuration) -> Void = { _ in }) -> M365Service {
        var configuration = M365Service.Configuration()
        configure(&configuration)
        var logger = Logger(label: "test.serve")
        logger.logLevel = ProcessInfo.processInfo.environment["VAULTLINE_TEST_LOG"] != nil ? .debug : .critical
        return M365Service(repository: f.repo, client: f.client, configuration: configuration, metrics: ServiceMetrics(version: "test"),
                           state: ServiceState(rpoSeconds: configuration.policy.rpoSeconds, replicates: false), notifier: nil, logger: logger)
    }

    @Test(.timeLimit(.minutes(10)))
    func aPassPollsWhatIsDueAndCarriesTheRestExactlyAsAFullBackupWouldSee() async throws {
        let f = try await GraphFixture()
        let service = Self.service(f) { $0.policy.mailBaseSeconds = 3_600; $0.policy.driveBaseSeconds = 3_600; $0.policy.debounceSeconds = 3_600 }
        let first = try #require(await service.pass())
        #expect(first.committed && first.itemsDownloaded > 0)
        // Nothing due: no collection polled, nothing stored.
        let requestsBefore = f.sim.stats.requests
        let idle = try #require(await service.pass())
        #expect(!idle.committed && idle.itemsDownloaded == 0 && idle.snapshotID == first.snapshotID)
        #expect(f.sim.stats.requests - requestsBefore <= 6, "an idle pass lists users, sites and drives only")

        // One user's mailbox and OneDrive change; only that user is made due.
        let users = f.sim.tenant.users
        let (changed, quiet) = (users[0], users[1])
        let message = try #require(f.sim.tenant.mailbox(upn: changed.upn).first)
        f.sim.tenant.deleteMessage(upn: changed.upn, id: message.id)
        let file = try #require(f.sim.tenant.driveFiles(upn: changed.upn).keys.sorted().first)
        #expect(f.sim.tenant.deleteFile(upn: changed.upn, path: file))
        service.schedule.markDue(user: changed.id)
        let plan = service.schedule.beginPass()
        var options = M365Backup.Options()
        options.planner = plan
        options.commitOnlyWhenAdvanced = true
        let second = try await M365Backup(repository: f.repo, client: f.client, options: options).run()
        service.schedule.finish(plan, committed: true)
        #expect(second.committed)
        #expect(plan.outcomes.keys.allSatisfy { $0.user == changed.id }, "only the user made due is polled")
        #expect(plan.outcomes.keys.contains { $0.user == quiet.id } == false)
        #expect(plan.outcomes[CollectionKey(.onedrive, user: changed.id)] == .changed)
        #expect(plan.outcomes.values.filter { $0 == .changed }.count == 2, "the inbox and the drive, nothing else")

        // What the pass stored is what a backup of everything from scratch sees, tree for tree.
        let full = try await f.backup { $0.noParent = true }
        #expect(full.snapshot.tree == second.snapshot.tree)
        await f.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func expiredDeltaLinksAreListedInFullAFewAPassWhileTheRestIsPolled() async throws {
        let f = try await GraphFixture()
        // No time for full listings: one a pass.
        let service = Self.service(f) { $0.policy.fullListingSeconds = 0 }
        let first = try #require(await service.pass())
        let collections = service.schedule.entries.count
        f.sim.expireDeltaTokens()
        let upn = f.sim.tenant.users[0].upn
        let message = try #require(f.sim.tenant.mailbox(upn: upn).first)
        f.sim.tenant.deleteMessage(upn: upn, id: message.id)
        var resets = 0, passes = 0
        var last = first
        while passes < 3 * collections {
            service.schedule.markDue()
            let plan = service.schedule.beginPass()
            var options = M365Backup.Options()
            options.planner = plan
            options.commitOnlyWhenAdvanced = true
            last = try await M365Backup(repository: f.repo, client: f.client, options: options).run()
            service.schedule.finish(plan, committed: true)
            passes += 1
            let outcomes = plan.outcomes.values
            #expect(outcomes.filter { $0 == .reset }.count <= 1, "one full listing a pass")
            resets += outcomes.filter { $0 == .reset }.count
            if !outcomes.contains(.deferred) { break }
            #expect(last.committed, "a reset's new link is kept")
        }
        // Every collection with a delta link was listed in full once (other calendars have
        // none), in about as many passes, and the result is what a full backup sees.
        #expect(resets >= collections - 2 && resets <= collections)
        #expect(passes <= collections + 1)
        let full = try await f.backup { $0.noParent = true }
        #expect(full.snapshot.tree == last.snapshot.tree)
        await f.close()
    }

    @Test(.timeLimit(.minutes(10)))
    func theServiceKeepsUpAnswersOverHTTPAndStopsGracefully() async throws {
        let f = try await GraphFixture()
        let service = Self.service(f) {
            $0.policy.commitIntervalSeconds = 1
            $0.policy.mailBaseSeconds = 1
            $0.policy.driveBaseSeconds = 1
            $0.policy.debounceSeconds = 0.5
            $0.policy.rpoSeconds = 30
        }
        let ports = AsyncStream<Int>.makeStream()
        let http = StatusServer.application(host: "127.0.0.1", port: 0, metrics: service.metrics, state: service.state, logger: Logger(label: "test.http")) {
            ports.continuation.yield($0)
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: http), .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)], logger: Logger(label: "test.group")))
        let started = Date()
        let running = Task { try await group.run() }
        var portIterator = ports.stream.makeAsyncIterator()
        let port = try #require(await portIterator.next())
        let base = "http://127.0.0.1:\(port)"

        // Ready once the first pass is stored.
        // (Waits are long: beside the whole suite this test's tasks can wait a minute or two for
        // a thread of the two-thread cooperative pool.)
        let ready = try await Self.poll(seconds: 180) { (try? await Self.get(base + "/readyz"))?.status == 200 }
        #expect(ready)
        #expect(try await Self.get(base + "/livez").status == 200)
        let before = try await ServiceStatus.fetch(from: base, timeout: 60)
        #expect(before.snapshotsCommitted >= 1 && before.lastStatus == "Success")

        // A change reaches a snapshot within a few seconds (intervals of 1 s here).
        let upn = f.sim.tenant.users[0].upn
        let message = try #require(f.sim.tenant.mailbox(upn: upn).first)
        f.sim.tenant.deleteMessage(upn: upn, id: message.id)
        // A snapshot's time is its pass's start: a pass already running when the message was
        // deleted may list the mailbox after it and store the delete under an earlier time, and
        // then nothing advances again. So: the newest snapshot lacks the message, whatever its time.
        let captured = try await Self.poll(seconds: 180) {
            guard let status = try? await ServiceStatus.fetch(from: base) else { return false }
            guard let id = status.siteA.lastSnapshotID, id != before.siteA.lastSnapshotID else { return false }
            let snapshot = try f.repo.loadSnapshot(id)
            return try !f.restore(id, "/users/\(upn)/mail").keys.contains { $0.hasSuffix(itemFileName(message.id, ext: ".eml")) } && snapshot.paths.count == 1
        }
        #expect(captured, "the deleted message is gone from a snapshot taken after it was deleted")

        // The metrics, in Prometheus' text format.
        let metrics = try await Self.get(base + "/metrics")
        #expect(metrics.contentType.hasPrefix("text/plain; version=0.0.4"))
        let values = PrometheusText.values(metrics.body)
        #expect((values["vaultline_m365_snapshots_total{result=\"committed\"}"] ?? 0) >= 2)
        let firstSnapshotTime = try #require(before.siteA.lastSnapshotTime.flatMap(UTCTimestamp.parseRFC3339))
        #expect((values["vaultline_m365_snapshot_last_timestamp_seconds"] ?? 0) > firstSnapshotTime.timeIntervalSince1970)
        // Every mail collection synced since the service started (how recently depends on the
        // machine's load beside the suite: no bound in seconds here; tools/bench/rpo measures).
        let oldestMail = try #require(values["vaultline_m365_oldest_sync_timestamp_seconds{kind=\"mail\"}"])
        #expect(oldestMail >= started.timeIntervalSince1970)
        #expect(values["vaultline_m365_rpo_at_risk"] != nil)

        // SIGTERM's path: the pass in flight ends, then the group.
        await group.triggerGracefulShutdown()
        try await running.value
        await f.close()
    }

    @Test(.timeLimit(.minutes(5)))
    func aServiceThatCannotSignInIsNotReadyAndSaysWhy() async throws {
        let f = try await GraphFixture()
        let client = GraphClient(credentials: GraphFixture.credentials(f.sim, secret: "wrong"), options: GraphFixture.fastRetries)
        let state = ServiceState(rpoSeconds: 300, replicates: false)
        let service = M365Service(repository: f.repo, client: client, configuration: .init(), metrics: ServiceMetrics(version: "test"),
                                  state: state, notifier: nil, logger: Logger(label: "test.serve") { _ in SwiftLogNoOpLogHandler() })
        #expect(state.ready.ready == false)
        #expect(await service.pass() == nil)
        #expect(state.ready.ready == false && state.ready.reason.contains("sign-in"))
        #expect(state.current.lastStatus == "Failed")
        #expect(service.metrics.text().contains("vaultline_m365_snapshots_total{result=\"failed\"} 1"))
        try? await client.shutdown()
        await f.close()
    }

    struct Answer {
        var status: Int
        var contentType: String
        var body: String
    }

    static func get(_ url: String) async throws -> Answer {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 1 << 20)
        return Answer(status: Int(response.status.code), contentType: response.headers.first(name: "content-type") ?? "",
                      body: String(buffer: body))
    }

    /// Asks `condition` every 200 ms until it holds or `seconds` have passed.
    static func poll(seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }
}

/// Reads samples of Prometheus' text format: `name{labels} value` lines (comments skipped).
enum PrometheusText {
    static func values(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }
}
