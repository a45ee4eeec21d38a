import Foundation
import GraphSimulator
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// Several workers on one tenant through a real PostgreSQL server (Debian's, started by the
/// test support on loopback).
@Suite("Many workers through PostgreSQL", .enabled(if: PostgresTestServer.isAvailable, "\(PostgresTestServer.skipReason)"))
struct CoordinatorTests {
    static func coordinator(tenant: String, worker: String) throws -> PostgresCoordinator {
        try PostgresCoordinator(url: try PostgresTestServer.url, tenant: tenant, worker: worker, logger: Logger(label: "test.pg") { _ in SwiftLogNoOpLogHandler() })
    }

    static var spec: TenantSpec {
        var spec = GraphFixture.smallSpec
        spec.users = 6
        spec.messagesPerUser = 12
        spec.filesPerUser = 3
        return spec
    }

    @Test(.timeLimit(.minutes(5)))
    func oneWorkerHoldsTheMaintenanceAndNoneWhileTasksWait() async throws {
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        let (a, b) = (try Self.coordinator(tenant: tenant, worker: "a"), try Self.coordinator(tenant: tenant, worker: "b"))
        defer { a.close(); b.close() }
        try await a.migrate()
        #expect(try await a.holdMaintenance(leaseSeconds: 600))
        #expect(try await !b.holdMaintenance(leaseSeconds: 600), "another worker holds it")
        #expect(try await a.holdMaintenance(leaseSeconds: 600), "its holder renews it")
        try await a.releaseMaintenance()
        #expect(try await b.holdMaintenance(leaseSeconds: 600), "given back, another takes it")
        #expect(try await !a.holdMaintenance(leaseSeconds: 600))
        // Tasks due (not_before = now at registration) count as overdue once older than the bound.
        try await a.register([WorkTask(.mailbox, "ann@contoso.com"), WorkTask(.mailbox, "bob@contoso.com")])
        #expect(try await a.overdueTasks(olderThanSeconds: 3_600) == 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await a.overdueTasks(olderThanSeconds: 0.1) == 2)
        _ = try await a.claim(limit: 1, leaseSeconds: 60)
        #expect(try await a.overdueTasks(olderThanSeconds: 0.1) == 1, "a task held by a worker is not waiting")
        try await a.deleteTenant()
    }

    @Test(.timeLimit(.minutes(5)))
    func workersSpendOneDriveBudgetAndWaitOutEachOthersPause() async throws {
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        let (a, b, c) = (try Self.coordinator(tenant: tenant, worker: "a"), try Self.coordinator(tenant: tenant, worker: "b"),
                         try Self.coordinator(tenant: tenant, worker: "c"))
        defer { a.close(); b.close(); c.close() }
        try await a.migrate()
        // 6,000 units a minute for the tenant (100 a second, drawn 50 at a time): two workers
        // spending 150 each spend 300 together, which takes 2.5 s after the first batch; each
        // with a budget of its own would be done in 1 s.
        let (first, second) = (SharedDriveBudget(coordinator: a, unitsPerMinute: 6_000), SharedDriveBudget(coordinator: b, unitsPerMinute: 6_000))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for budget in [first, second] {
                group.addTask { for _ in 0..<150 { try await budget.admit(units: 1) } }
            }
            try await group.waitForAll()
        }
        let spent = ContinuousClock.now - started
        #expect(spent >= .milliseconds(2_400), "\(spent)")
        // A 429 one worker got holds another's drive requests, one without a budget too. The
        // clock starts before the pause is stored: storing it took 0.28 s once beside the release
        // suite, and the pause runs from the server's time of the write, not from its answer.
        let paused = ContinuousClock.now
        await first.pause(seconds: 1.5)
        let unbudgeted = SharedDriveBudget(coordinator: c, unitsPerMinute: 0)
        try await unbudgeted.admit(units: 1)
        #expect(ContinuousClock.now - paused >= .milliseconds(1_300))
        // A shorter pause asked later does not shorten it; the grant reports what is left.
        try await b.pauseDrives(seconds: 0.1)
        let grant = try await c.drawDriveUnits(0, unitsPerSecond: 0, burstSeconds: 0)
        #expect(grant.startsIn == 0 && grant.pausedFor < 0.3)
        try await a.pauseDrives(seconds: 30)
        #expect(try await c.drawDriveUnits(0, unitsPerSecond: 0, burstSeconds: 0).pausedFor > 25)
        try await a.deleteTenant()
    }

    /// With a coordinator, one worker keeps the subscriptions (in the database) and a
    /// notification reaching any other worker makes its task due for all of them.
    @Test(.timeLimit(.minutes(5)))
    func aNotificationReachingAnyWorkerMakesItsTaskDue() async throws {
        let f = try await GraphFixture(spec: Self.spec)
        f.sim.faults.withLock { $0.plainNotificationURLs = true; $0.notificationDelay = 0.05 }
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        let quiet = Logger(label: "test.notify") { _ in SwiftLogNoOpLogHandler() }
        func worker(_ name: String) throws -> CoordinatedWorker {
            CoordinatedWorker(coordinator: try Self.coordinator(tenant: tenant, worker: name),
                              repository: try Repository.open(path: f.dir.path + "/repo", password: Fixtures.password), client: f.client,
                              configuration: CoordinatedWorker.Configuration(), logger: quiet)
        }
        let (owner, other) = (try worker("owner"), try worker("other"))
        let observer = try Self.coordinator(tenant: tenant, worker: "observer")
        defer { owner.coordinator.close(); other.coordinator.close(); observer.close() }
        try await observer.migrate()
        // Every task registered and run, none due for an hour.
        try await observer.register(try await owner.discover())
        _ = try await other.discover()
        for claimed in try await observer.claim(limit: 1_000, leaseSeconds: 60) {
            #expect(try await observer.complete(claimed.task, snapshotID: nil, changed: false, nextDueSeconds: 3_600))
        }
        // Graph posts to the other worker (the proxy's choice); the owner keeps the subscriptions.
        let port = try freeLoopbackPort()
        let options = ChangeSubscriptions.Options(notificationURL: "http://127.0.0.1:\(port)/graph/notify",
                                                  lifecycleURL: "http://127.0.0.1:\(port)/graph/lifecycle")
        func notifications(_ worker: CoordinatedWorker) throws -> ChangeNotifications {
            let subscriptions = try ChangeSubscriptions(client: f.client, options: options, store: PostgresSubscriptionStore(coordinator: worker.coordinator), logger: quiet)
            return ChangeNotifications(subscriptions: subscriptions, metrics: ServiceMetrics(version: "test"), logger: quiet,
                                       wanted: { worker.subscriptionTargets() }, markDue: { await worker.markDue($0) })
        }
        let (ownerNotifications, otherNotifications) = (try notifications(owner), try notifications(other))
        let http = StatusServer.application(host: "127.0.0.1", port: port, metrics: ServiceMetrics(version: "test"),
                                            state: ServiceState(rpoSeconds: 300, replicates: false), logger: quiet, notifications: otherNotifications)
        let serving = Task { try await http.run() }
        defer { serving.cancel() }
        try await ChangeNotificationTests.waitForListener(port)
        let wanted = owner.subscriptionTargets()
        #expect(wanted.count == f.sim.tenant.users.count * 4)
        let made = await ownerNotifications.subscriptions.reconcile(wanted)
        #expect(made.created == wanted.count && made.failed == 0, "\(made)")
        #expect(try await PostgresSubscriptionStore(coordinator: observer).load()?.subscriptions.count == wanted.count)

        let user = f.sim.tenant.users[2]
        let message = try #require(f.sim.tenant.mailbox(upn: user.upn).first)
        f.sim.tenant.deleteMessage(upn: user.upn, id: message.id)
        var due: [WorkTask] = []
        _ = try await ContinuousServiceTests.poll(seconds: 120) {
            due += try await observer.claim(limit: 1_000, leaseSeconds: 60).map(\.task)
            return !due.isEmpty
        }
        #expect(due == [WorkTask(.mailbox, user.upn.lowercased())], "\(due)")
        serving.cancel()
        try await observer.deleteTenant()
        await f.close()
    }

    @Test(.timeLimit(.minutes(5)))
    func leasesAreExclusiveAndRunOutOnTheServersClock() async throws {
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        let (a, b) = (try Self.coordinator(tenant: tenant, worker: "a"), try Self.coordinator(tenant: tenant, worker: "b"))
        defer { a.close(); b.close() }
        try await a.migrate()
        try await b.migrate()
        let tasks = (0..<5).map { WorkTask(.mailbox, "user\($0)@contoso.com") } + [WorkTask(.site, "marketing")]
        try await a.register(tasks)
        try await b.register(tasks)  // known tasks are left as they are
        let takenByA = try await a.claim(limit: 4, leaseSeconds: 2)
        let takenByB = try await b.claim(limit: 10, leaseSeconds: 30)
        #expect(takenByA.count == 4 && takenByB.count == 2)
        #expect(Set(takenByA.map(\.task)).isDisjoint(with: takenByB.map(\.task)), "a task is held by one worker")
        #expect(takenByA.allSatisfy { $0.attempts == 1 && $0.snapshotID == nil })
        #expect(try await b.claim(limit: 10, leaseSeconds: 30).isEmpty)
        // A's leases run out (it stopped renewing): B takes them, and A can no longer record.
        try await Task.sleep(for: .milliseconds(2_500))
        let retaken = try await b.claim(limit: 10, leaseSeconds: 30)
        #expect(Set(retaken.map(\.task)) == Set(takenByA.map(\.task)))
        #expect(retaken.allSatisfy { $0.attempts == 2 })
        let first = try #require(takenByA.first?.task)
        #expect(try await a.complete(first, snapshotID: "feed", changed: true, nextDueSeconds: 0) == false)
        #expect(try await a.renew([first], leaseSeconds: 30) == [first])
        #expect(try await b.complete(first, snapshotID: "beef", changed: true, nextDueSeconds: 3_600))
        #expect(try await b.snapshots()[first] == "beef")
        // Not due for an hour; marked due, it is taken again, with its snapshot.
        #expect(try await b.claim(limit: 10, leaseSeconds: 30).isEmpty)
        try await b.markDue([first])
        let again = try await a.claim(limit: 10, leaseSeconds: 30)
        #expect(again.map(\.task) == [first] && again.first?.snapshotID == "beef" && again.first?.attempts == 1)
        let summary = try await b.summary()
        #expect(summary.first { $0.kind == .mailbox }?.tasks == 5 && summary.first { $0.kind == .site }?.neverSynced == 1)
    }

    @Test(.timeLimit(.minutes(10)))
    func twoWorkersShareATenantAndADeadWorkersTasksAreFinishedElsewhere() async throws {
        let f = try await GraphFixture(spec: Self.spec)
        let tenant = "t-\(UUID().uuidString.prefix(8))"
        var configuration = CoordinatedWorker.Configuration()
        configuration.batchSize = 3
        // The workers' own leases are long (beside the suite a renewal can wait minutes for a
        // thread); the dead worker's are 3 s.
        configuration.leaseSeconds = 300
        let deadLease = 3.0
        configuration.idleSeconds = 0.2
        configuration.policy.mailBaseSeconds = 3_600
        configuration.policy.driveBaseSeconds = 3_600
        configuration.policy.debounceSeconds = 3_600
        let reports = Mutex<[(worker: String, report: CoordinatedWorker.BatchReport, at: Date)]>([])
        // Each worker with its own Repository object, as separate processes have.
        let started = Date()
        func worker(_ name: String, metrics: ServiceMetrics? = nil) throws -> CoordinatedWorker {
            let repository = try Repository.open(path: f.dir.path + "/repo", password: Fixtures.password)
            return CoordinatedWorker(coordinator: try Self.coordinator(tenant: tenant, worker: name), repository: repository, client: f.client,
                              configuration: configuration, metrics: metrics, logger: Logger(label: "test.worker") { _ in SwiftLogNoOpLogHandler() }) { report in
                reports.withLock { $0.append((name, report, Date())) }
            }
        }
        let (metricsB, metricsC) = (ServiceMetrics(version: "test"), ServiceMetrics(version: "test"))
        let (b, c) = (try worker("b", metrics: metricsB), try worker("c", metrics: metricsC))
        // A dead worker: it took two mailboxes and stopped (no renewal, no record).
        let dead = try Self.coordinator(tenant: tenant, worker: "dead")
        defer { dead.close(); b.coordinator.close(); c.coordinator.close() }
        try await dead.migrate()
        try await dead.register(try await b.discover())
        let deadTasks = try await dead.claim(limit: 2, leaseSeconds: deadLease).map(\.task)
        let deadAt = Date()
        #expect(deadTasks.count == 2)

        let groupB = ServiceGroup(configuration: .init(services: [.init(service: b)], logger: Logger(label: "test.group") { _ in SwiftLogNoOpLogHandler() }))
        let runningB = Task { try await groupB.run() }
        let all = try await b.discover()
        let everyTaskDone = try await ContinuousServiceTests.poll(seconds: 240) {
            let summary = (try? await dead.summary()) ?? []
            return summary.reduce(0) { $0 + $1.tasks } == all.count && summary.allSatisfy { $0.neverSynced == 0 }
        }
        #expect(everyTaskDone)
        let done = reports.withLock { $0 }
        #expect(done.allSatisfy { $0.report.failed == nil }, "\(done.compactMap(\.report.failed))")
        // Each task ran once (intervals of an hour): no duplicates.
        let ran = done.flatMap(\.report.tasks)
        #expect(ran.count == all.count && Set(ran) == Set(all))
        // The dead worker's tasks were run only after their leases ran out.
        for task in deadTasks {
            let at = try #require(done.first { $0.report.tasks.contains(task) }?.at)
            #expect(at.timeIntervalSince(deadAt) >= deadLease)
        }

        // The tenant as the coordinator's snapshots hold it is what a backup of it all sees.
        try f.repo.loadIndex()
        let snapshots = try f.repo.listSnapshots()
        let view = try TenantView(at: Date(), snapshots: snapshots)
        let full = try await f.backup { $0.noParent = true }
        try f.repo.loadIndex()
        let fullTree = try f.repo.loadTree(full.snapshot.tree)
        let fullUsers = try f.repo.loadTree(try #require(fullTree.node(named: "users")?.subtree))
        for user in f.sim.tenant.users {
            let fullUser = try f.repo.loadTree(try #require(fullUsers.node(named: user.upn)?.subtree))
            for service in ["mail", "calendar", "contacts", "onedrive"] {
                let holder = try view.holder(of: "/users/\(user.upn)/\(service)")
                #expect(holder.snapshotID != full.snapshotID)
                let held = try Self.subtree(f.repo, holder.snapshotID, ["users", user.upn, service])
                #expect(held == fullUser.node(named: service)?.subtree, "\(user.upn) \(service)")
            }
        }

        // A second worker joins; a message is deleted and its mailbox marked due: the worker
        // that takes it downloads nothing (it starts from the mailbox's own snapshot).
        let groupC = ServiceGroup(configuration: .init(services: [.init(service: c)], logger: Logger(label: "test.group") { _ in SwiftLogNoOpLogHandler() }))
        let runningC = Task { try await groupC.run() }
        let upn = f.sim.tenant.users[0].upn
        let message = try #require(f.sim.tenant.mailbox(upn: upn).first)
        f.sim.tenant.deleteMessage(upn: upn, id: message.id)
        // Marks the mailbox due and waits for the next batch that runs it.
        func rerunMailbox() async throws -> CoordinatedWorker.BatchReport? {
            let task = WorkTask(.mailbox, upn)
            let before = reports.withLock { $0.count }
            try await dead.markDue([task])
            func next() -> CoordinatedWorker.BatchReport? {
                reports.withLock { $0.dropFirst(before).first { $0.report.tasks.contains(task) }?.report }
            }
            _ = try await ContinuousServiceTests.poll(seconds: 120) { next() != nil }
            return next()
        }
        let second = try #require(try await rerunMailbox())
        let snapshotID = try #require(second.snapshotID)
        // The joining worker's metrics speak for the whole tenant, which the other worker synced:
        // its oldest copy per kind is from this run (not 0, which would read as 56 years old).
        let text = metricsC.text()
        for kind in ["mail", "calendar", "contacts", "onedrive"] {
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("vaultline_m365_oldest_sync_timestamp_seconds{kind=\"\(kind)\"}") })
            let value = try #require(line.split(separator: " ").last.flatMap { Double($0) })
            #expect(value >= started.timeIntervalSince1970 - 1 && value <= Date().timeIntervalSince1970, "\(line)")
        }
        // Each batch is one pass of the worker that ran it, whichever of the two that was.
        func committed(_ metrics: ServiceMetrics) -> Int {
            metrics.text().split(separator: "\n").first { $0.hasPrefix("vaultline_m365_snapshots_total{result=\"committed\"}") }
                .flatMap { $0.split(separator: " ").last }.flatMap { Int(Double($0) ?? -1) } ?? -1
        }
        let stored = reports.withLock { $0.filter { $0.report.snapshotID != nil }.count }
        #expect(committed(metricsB) + committed(metricsC) == stored)
        let snapshot = try f.repo.loadSnapshot(snapshotID)
        #expect(snapshot.stats.filesRead == 0, "a deletion downloads nothing")
        try f.repo.loadIndex()
        let now = try TenantView(at: Date(), snapshots: try f.repo.listSnapshots())
        #expect(try now.holder(of: "/users/\(upn)/mail").snapshotID == snapshotID)
        let mail = try f.restore(snapshotID, "/users/\(upn)/mail")
        #expect(!mail.keys.contains { $0.hasSuffix(itemFileName(message.id, ext: ".eml")) })
        #expect(mail.count == f.sim.tenant.mailbox(upn: upn).count)

        // That snapshot forgotten (retention): the mailbox's next run starts from the newest
        // snapshot still holding it, and nothing fails.
        try f.repo.backend.delete(.snapshot, snapshotID)
        let third = try #require(try await rerunMailbox())
        #expect(third.failed == nil && third.recorded == third.tasks.count)
        let held = try TenantView(at: Date(), snapshots: try f.repo.listSnapshots()).holder(of: "/users/\(upn)/mail")
        #expect(!(try f.restore(held.snapshotID, "/users/\(upn)/mail")).keys.contains { $0.hasSuffix(itemFileName(message.id, ext: ".eml")) })

        await groupB.triggerGracefulShutdown()
        await groupC.triggerGracefulShutdown()
        try await runningB.value
        try await runningC.value
        #expect(try Checker(repository: f.repo).run(readData: true).ok)
        await f.close()
    }

    /// `m365 serve --coordinator` as it ships: one worker is killed with SIGKILL holding
    /// leases, another finishes its tasks; `find --at` then sees every message once and
    /// `check --read-data` is clean.
    @Test(.timeLimit(.minutes(10)))
    func aWorkerKilledMidBatchLeavesNoGapAndNoDuplicate() async throws {
        let f = try await GraphFixture(spec: Self.spec)
        // Slow requests while the first worker runs: its first batch holds its leases for many
        // seconds, so it is caught holding them however long this test waits for a thread.
        f.sim.faults.withLock { $0.latency = 2 }
        let tenant = f.sim.tenantId
        let url = try PostgresTestServer.url
        // Each test process's server is its own; the simulator's tenant id is the same in every
        // test, so the rows of an earlier test on this server are cleared first.
        let observer = try Self.coordinator(tenant: tenant, worker: "observer")
        defer { observer.close() }
        try await observer.migrate()
        try await observer.deleteTenant()
        func start(_ name: String, lease: Int) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
            p.arguments = ["m365", "serve", "--repo", f.dir.path + "/repo", "--graph-url", f.sim.graphURL, "--authority", f.sim.authorityURL,
                           "--listen", "127.0.0.1:0", "--coordinator", url, "--worker", name, "--batch-size", "2", "--lease", "\(lease)",
                           "--mail-interval", "3600", "--drive-interval", "3600", "--debounce", "3600", "--log-level", "critical"]
            p.environment = ["VAULTLINE_PASSWORD": String(decoding: Fixtures.password, as: UTF8.self), "HOME": f.dir.path + "/home-" + name,
                             "VAULTLINE_GRAPH_TENANT": f.sim.tenantId, "VAULTLINE_GRAPH_CLIENT_ID": f.sim.clientId, "VAULTLINE_GRAPH_SECRET": "test-secret"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        // The killed worker's leases are 3 s; the survivor's long (its renewals can wait).
        let first = try start("w1", lease: 3)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let holding = try await ContinuousServiceTests.poll(seconds: 180) {
            ((try? await observer.summary()) ?? []).contains { $0.leased > 0 }
        }
        #expect(holding)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        f.sim.faults.withLock { $0.latency = 0.01 }
        #expect(first.terminationReason == .uncaughtSignal)
        let second = try start("w2", lease: 300)
        defer { if second.isRunning { second.terminate(); second.waitUntilExit() } }
        let done = try await ContinuousServiceTests.poll(seconds: 240) {
            let summary = (try? await observer.summary()) ?? []
            return summary.count == 3 && summary.allSatisfy { $0.neverSynced == 0 && $0.leased == 0 }
        }
        let summary = (try? await observer.summary()) ?? []
        #expect(done, "\(summary)")
        second.terminate()
        second.waitUntilExit()
        #expect(second.terminationStatus == 0)

        let found = try Fixtures.cli(["find", "--repo", f.dir.path + "/repo", "--at", UTCTimestamp.rfc3339(Date()), "--kind", "mail", "--json"])
        #expect(found.status == 0)
        struct Listing: Decodable { struct Entry: Decodable { var path: String }; var matches: [Entry] }
        let paths = try JSONDecoder().decode(Listing.self, from: Data(found.out.utf8)).matches.map(\.path)
        let messages = f.sim.tenant.users.reduce(0) { $0 + f.sim.tenant.mailbox(upn: $1.upn).count }
        #expect(paths.count == messages && Set(paths).count == messages, "every message once")
        let checked = try Fixtures.cli(["check", "--repo", f.dir.path + "/repo", "--read-data"])
        #expect(checked.status == 0, "\(checked.out)")
        await f.close()
    }

    /// The tree id at `path` in a snapshot.
    static func subtree(_ repo: Repository, _ snapshotID: String, _ path: [String]) throws -> String? {
        var tree = try repo.loadTree(try repo.loadSnapshot(snapshotID).tree)
        var id: String?
        for name in path {
            guard let node = tree.node(named: name), let sub = node.subtree else { return nil }
            id = sub
            if name != path.last { tree = try repo.loadTree(sub) }
        }
        return id
    }
}
