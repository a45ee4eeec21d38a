import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineCore
import VaultlineGraph

/// One of several `m365 serve --coordinator` processes sharing a tenant (docs/OPERATIONS.md,
/// "Many workers"). It registers the tenant's mailboxes, OneDrives and sites as tasks, takes
/// due ones under a lease, and runs each batch as one ``M365Backup`` (mailboxes together,
/// OneDrives together, a site alone) whose users each start from their own task's snapshot
/// (``M365Backup/Options/userParents``). The batch's snapshot is recorded for its tasks when
/// the leases are given back; a worker killed mid-batch records nothing, its leases run out,
/// and another worker runs those tasks from their last recorded snapshots.
public final class CoordinatedWorker: Service {
    public struct Configuration: Sendable {
        /// What is backed up (services, users) and how; the scope of each run is its batch's.
        public var backup = M365Backup.Options()
        /// The mail and drive intervals and the debounce after a change.
        public var policy = CollectionSchedule.Policy()
        /// Tasks taken at once: as many as one backup works on at once (its 64 users), so that
        /// a batch's slowest mailbox holds back few others. Batches of 16 took 2.7 times as long
        /// as 64 for 500 mailboxes (tools/bench/workers, 2026-12-02).
        public var batchSize = 64
        /// A lease lasts this long (seconds, on the server's clock) and is renewed every third of it.
        public var leaseSeconds = 60.0
        /// The tenant's users and sites are listed again this often, for new tasks.
        public var discoverySeconds = 300.0
        /// A failed task is due again after this long.
        public var retrySeconds = 30.0
        /// With nothing due, the next claim waits this long.
        public var idleSeconds = 1.0
        public init() {}
    }

    /// A batch's end, for tests and the status: its tasks and its snapshot (nil: none stored,
    /// or the run failed).
    public struct BatchReport: Sendable {
        public var tasks: [WorkTask]
        public var snapshotID: String?
        public var recorded: Int
        public var failed: String?
    }

    public let coordinator: PostgresCoordinator
    let repository: Repository
    let client: GraphClient
    let configuration: Configuration
    let logger: Logger
    let state: ServiceState?
    let metrics: ServiceMetrics?
    let replicator: SiteBReplicator?
    let onBatch: (@Sendable (BatchReport) -> Void)?
    /// Tasks this worker holds now (their leases are renewed).
    let held = Mutex<Set<WorkTask>>([])
    /// The users in scope as the last discovery listed them: Graph id to UPN (lower case).
    let discoveredUsers = Mutex<[String: String]>([:])

    public init(coordinator: PostgresCoordinator, repository: Repository, client: GraphClient, configuration: Configuration,
                state: ServiceState? = nil, metrics: ServiceMetrics? = nil, replicator: SiteBReplicator? = nil, logger: Logger,
                onBatch: (@Sendable (BatchReport) -> Void)? = nil) {
        self.coordinator = coordinator
        self.repository = repository
        self.client = client
        self.configuration = configuration
        self.state = state
        self.metrics = metrics
        self.replicator = replicator
        self.logger = logger
        self.onBatch = onBatch
    }

    public func run() async throws {
        try await coordinator.migrate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.renewLeases() }
            defer { group.cancelAll() }
            try await work()
        }
    }

    func work() async throws {
        var discovered: Date?
        var published: Date?
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                if discovered.map({ Date().timeIntervalSince($0) >= configuration.discoverySeconds }) ?? true {
                    try await coordinator.register(try await discover())
                    discovered = Date()
                }
                if published.map({ Date().timeIntervalSince($0) >= 5 }) ?? true {
                    try await publishTenant(Date())
                    published = Date()
                }
                let claimed = try await coordinator.claim(limit: configuration.batchSize, leaseSeconds: configuration.leaseSeconds)
                state?.setReady(true, "the coordinator answers")
                if claimed.isEmpty {
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(self.configuration.idleSeconds * 1000))) }
                    continue
                }
                held.withLock { $0.formUnion(claimed.map(\.task)) }
                // One kind at a time: mailboxes together, OneDrives together, each site alone.
                let byKind = Dictionary(grouping: claimed, by: \.task.kind)
                for kind in WorkTask.Kind.allCases {
                    let batches = kind == .site ? (byKind[kind] ?? []).map { [$0] } : [byKind[kind] ?? []]
                    for batch in batches where !batch.isEmpty { await runBatch(batch) }
                }
            } catch {
                state?.setReady(false, "the coordinator: \(error)")
                logger.error("coordinator round failed", metadata: ["error": "\(error)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(self.configuration.retrySeconds * 1000))) }
            }
        }
    }

    /// The whole tenant's state, from the task rows, in this worker's metrics and status: every
    /// worker reports the same oldest copy per kind, so the RPO alert and `m365 status` read
    /// the tenant whichever worker they ask (`min` over the workers is the tenant's).
    func publishTenant(_ now: Date) async throws {
        guard metrics != nil || state != nil else { return }
        var kinds: [ReportedKind: KindSummary] = [:]
        let options = configuration.backup
        for summary in try await coordinator.summary() {
            let reported = KindSummary(count: summary.tasks, oldestSync: summary.oldestCopy, dirty: summary.changing)
            switch summary.kind {
            case .mailbox:
                if options.mail { kinds[.mail] = reported }
                if options.calendar { kinds[.calendar] = reported }
                if options.contacts { kinds[.contacts] = reported }
            case .onedrive: kinds[.onedrive] = reported
            case .site: kinds[.library] = reported
            }
        }
        KindSummary.publish(kinds, cap: max(configuration.policy.mailBaseSeconds, configuration.policy.driveBaseSeconds),
                            rpoSeconds: configuration.policy.rpoSeconds, now: now, metrics: metrics, state: state)
    }

    /// The tenant's tasks as Graph lists them now, within the configured scope.
    func discover() async throws -> [WorkTask] {
        let options = configuration.backup
        var tasks: [WorkTask] = []
        var users: [String: String] = [:]
        let wanted = options.users.map { Set($0.map { $0.lowercased() }) }
        _ = try await client.pages(client.url("users") + "?$select=id,userPrincipalName") { page in
            for user in page {
                guard let upn = user["userPrincipalName"]?.string?.lowercased(), wanted?.contains(upn) ?? true else { continue }
                if let id = user["id"]?.string { users[id] = upn }
                if options.mail || options.calendar || options.contacts { tasks.append(WorkTask(.mailbox, upn)) }
                if options.onedrive { tasks.append(WorkTask(.onedrive, upn)) }
            }
        }
        if options.sites {
            let sites = options.siteNames.map { Set($0.map { $0.lowercased() }) }
            _ = try await client.pages(client.url("sites") + "?search=*") { page in
                for site in page {
                    guard let name = (site["name"]?.string ?? site["displayName"]?.string ?? site["id"]?.string).map(M365Backup.treeName),
                          sites?.contains(name) ?? true else { continue }
                    tasks.append(WorkTask(.site, name))
                }
            }
        }
        discoveredUsers.withLock { $0 = users }
        return tasks
    }

    // MARK: Change notifications

    /// What `--notify-url` subscribes to with a coordinator: each user's mailbox workloads and
    /// OneDrive in scope (by Graph id), as the last discovery listed them. Sites are left to
    /// polling: their libraries are known only to the worker that last backed them up.
    public func subscriptionTargets() -> Set<ChangeSubscriptions.Target> {
        let options = configuration.backup
        var out: Set<ChangeSubscriptions.Target> = []
        for id in discoveredUsers.withLock({ Array($0.keys) }) {
            if options.mail { out.insert(.mail(user: id)) }
            if options.calendar { out.insert(.calendar(user: id)) }
            if options.contacts { out.insert(.contacts(user: id)) }
            if options.onedrive { out.insert(.onedrive(user: id)) }
        }
        return out
    }

    /// Makes the tasks the targets cover due now, in the database (any worker may take them);
    /// returns how many.
    public func markDue(_ targets: Set<ChangeSubscriptions.Target>) async -> Int {
        let users = discoveredUsers.withLock { $0 }
        var tasks: Set<WorkTask> = []
        for target in targets {
            switch target {
            case .mail(let id), .calendar(let id), .contacts(let id):
                if let upn = users[id] { tasks.insert(WorkTask(.mailbox, upn)) }
            case .onedrive(let id):
                if let upn = users[id] { tasks.insert(WorkTask(.onedrive, upn)) }
            case .drive: break
            }
        }
        guard !tasks.isEmpty else { return 0 }
        do { try await coordinator.markDue(Array(tasks)) } catch {
            logger.warning("could not mark notified tasks due; they are polled at their interval", metadata: ["error": "\(error)"])
            return 0
        }
        return tasks.count
    }

    /// Runs one batch and gives its leases back with what it stored.
    func runBatch(_ batch: [PostgresCoordinator.Claimed]) async {
        let tasks = batch.map(\.task)
        defer { held.withLock { $0.subtract(tasks) } }
        var report = BatchReport(tasks: tasks, snapshotID: nil, recorded: 0, failed: nil)
        let started = Date()
        do {
            let options = try scoped(batch)
            let result = try await M365Backup(repository: repository, client: client, options: options, logger: logger).run()
            metrics?.recordPass(result, seconds: Date().timeIntervalSince(started))
            report.snapshotID = result.committed ? result.snapshotID : nil
            if result.committed {
                replicator?.signal(snapshotID: result.snapshotID, time: result.snapshot.time)
                state?.update { s in
                    s.snapshotsCommitted += 1
                    s.siteA.lastSnapshotID = result.snapshotID
                    s.siteA.lastSnapshotTime = UTCTimestamp.rfc3339(result.snapshot.time)
                }
            }
            for claimed in batch {
                let changed = result.committed && (result.advancedUsers.map { $0.contains(claimed.task.name) } ?? true)
                let next = changed ? configuration.policy.debounceSeconds : claimed.task.baseInterval(configuration.policy)
                if try await coordinator.complete(claimed.task, snapshotID: report.snapshotID, changed: changed, nextDueSeconds: next) {
                    report.recorded += 1
                } else {
                    logger.warning("lease lost before the task was recorded; another worker runs it", metadata: ["task": "\(claimed.task)"])
                }
            }
        } catch {
            metrics?.recordPass(nil, seconds: Date().timeIntervalSince(started))
            report.failed = "\(error)"
            logger.error("batch failed", metadata: ["tasks": "\(tasks.map(\.id).joined(separator: ","))", "error": "\(error)"])
            for claimed in batch {
                try? await coordinator.fail(claimed.task, error: "\(error)", retrySeconds: configuration.retrySeconds)
            }
        }
        onBatch?(report)
    }

    /// The backup options of a batch: its scope, and each task's parent. A task with no
    /// snapshot recorded yet starts from the newest snapshot that holds its part of the tenant
    /// (a single `serve` or `m365 backup` before the coordinator), else from nothing.
    func scoped(_ batch: [PostgresCoordinator.Claimed]) throws -> M365Backup.Options {
        guard let first = batch.first else { return configuration.backup }
        var options = first.task.scope(configuration.backup)
        options.commitOnlyWhenAdvanced = true
        options.planner = nil
        // A recorded snapshot that `forget` has since removed is not a parent: the task starts
        // from the newest snapshot still holding its part, as a new one does.
        let stored = Set(try repository.backend.list(.snapshot))
        var parents: [WorkTask: String] = [:]
        for claimed in batch {
            guard let id = claimed.snapshotID else { continue }
            if stored.contains(id) { parents[claimed.task] = id } else {
                logger.warning("the task's snapshot is gone (forgotten); starting from the newest that holds it",
                               metadata: ["task": "\(claimed.task)", "snapshot": "\(id)"])
            }
        }
        if parents.count < batch.count, let view = try? TenantView(at: Date(), snapshots: try repository.listSnapshots()) {
            for claimed in batch where parents[claimed.task] == nil {
                if let owner = view.owner(of: Self.treePath(claimed.task)) { parents[claimed.task] = owner.snapshotID }
            }
        }
        switch first.task.kind {
        case .mailbox, .onedrive:
            options.users = batch.map(\.task.name)
            options.userParents = Dictionary(uniqueKeysWithValues: parents.map { ($0.key.name, $0.value) })
        case .site:
            if let parent = parents[first.task] { options.parent = parent } else { options.noParent = true }
        }
        return options
    }

    /// A tree path the task's part of the tenant lies below, for the snapshot that holds it.
    static func treePath(_ task: WorkTask) -> String {
        switch task.kind {
        case .mailbox: "/users/\(task.name)/mail"
        case .onedrive: "/users/\(task.name)/onedrive"
        case .site: "/sites/\(task.name)"
        }
    }

    /// Renews this worker's leases every third of a lease until cancelled.
    func renewLeases() async {
        let every = max(0.2, configuration.leaseSeconds / 3)
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int64(every * 1000)))
            let tasks = Array(held.withLock { $0 })
            guard !tasks.isEmpty else { continue }
            do {
                let lost = try await coordinator.renew(tasks, leaseSeconds: configuration.leaseSeconds)
                if !lost.isEmpty { logger.warning("leases lost", metadata: ["tasks": "\(lost.map(\.id).sorted().joined(separator: ","))"]) }
            } catch {
                logger.warning("lease renewal failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
