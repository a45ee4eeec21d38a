import Foundation
import Logging
import ServiceLifecycle
import VaultlineCore
import VaultlineGraph

/// `vaultline m365 serve`'s pass loop (docs/OPERATIONS.md, "Continuous protection"). A pass is
/// one ``M365Backup`` run whose planner is this service's ``CollectionSchedule``: only the
/// collections that are due are polled, the others are carried forward from the parent
/// snapshot with their delta links, and a snapshot is stored only when something advanced.
/// Passes start when a collection falls due, but no sooner than the commit interval after the
/// last stored snapshot, so snapshots come at most once per interval.
///
/// On graceful shutdown (SIGTERM) the pass in flight runs to its end and stores its snapshot;
/// the next start carries on from that snapshot's delta links, downloading nothing again.
public final class M365Service: Service {
    public struct Configuration: Sendable {
        public var backup = M365Backup.Options()
        /// When collections are polled, and how often a snapshot may be stored.
        public var policy = CollectionSchedule.Policy()
        /// After a failed pass, the next starts this long after (seconds), doubling up to the cap.
        public var failureBackoffSeconds = 5.0
        public init() {}
    }

    let repository: Repository
    let client: GraphClient
    let configuration: Configuration
    let logger: Logger
    public let schedule: CollectionSchedule
    public let metrics: ServiceMetrics
    public let state: ServiceState
    let replicator: SiteBReplicator?
    let notifier: SystemdNotifier?
    /// Called after each pass with its result (nil: it failed), for tests and the demo.
    let onPass: (@Sendable (M365Backup.Result?) -> Void)?

    public init(repository: Repository, client: GraphClient, configuration: Configuration, replicator: SiteBReplicator? = nil,
                metrics: ServiceMetrics, state: ServiceState, notifier: SystemdNotifier? = SystemdNotifier.fromEnvironment(),
                logger: Logger, onPass: (@Sendable (M365Backup.Result?) -> Void)? = nil) {
        self.repository = repository
        self.client = client
        self.configuration = configuration
        self.schedule = CollectionSchedule(policy: configuration.policy)
        self.replicator = replicator
        self.metrics = metrics
        self.state = state
        self.notifier = notifier
        self.logger = logger
        self.onPass = onPass
    }

    public func run() async throws {
        var lastCommit: Date?
        var failures = 0
        var retryAt: Date?
        var readySent = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            notifier?.send("WATCHDOG=1")
            let now = Date()
            let start = nextStart(lastCommit: lastCommit, retryAt: retryAt)
            state.update { $0.nextRun = UTCTimestamp.rfc3339(start) }
            publishSchedule(now)
            if start > now {
                // Woken at least every second: the watchdog ping, and a pass marked due early.
                let wait = min(1.0, max(0.001, start.timeIntervalSince(now)))
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64((wait * 1000).rounded(.up)))) }
                continue
            }
            let outcome = await pass()
            if !readySent {
                notifier?.send("READY=1")
                readySent = true
            }
            if let result = outcome {
                failures = 0
                retryAt = nil
                if result.committed { lastCommit = result.snapshot.time }
            } else {
                failures += 1
                let backoff = min(configuration.policy.rpoSeconds / 4, configuration.failureBackoffSeconds * pow(2, Double(min(failures - 1, 10))))
                retryAt = Date().addingTimeInterval(backoff)
            }
        }
        notifier?.send("STOPPING=1")
        logger.info("continuous backup stopped")
    }

    /// When the next pass starts: the earliest due collection (now before the first pass), not
    /// before the commit interval since the last stored snapshot nor before a failure's retry.
    func nextStart(lastCommit: Date?, retryAt: Date?) -> Date {
        var start = schedule.nextDue ?? .distantPast
        if let lastCommit { start = max(start, lastCommit.addingTimeInterval(configuration.policy.commitIntervalSeconds)) }
        if let retryAt { start = max(start, retryAt) }
        return start
    }

    /// One pass; its result, nil when it failed (logged, in the status and the metrics).
    func pass() async -> M365Backup.Result? {
        let plan = schedule.beginPass()
        var options = configuration.backup
        options.planner = plan
        options.commitOnlyWhenAdvanced = true
        state.update { $0.lastStatus = "Running"; $0.lastRun = UTCTimestamp.rfc3339(plan.started) }
        let result: M365Backup.Result?
        do {
            let run = try await M365Backup(repository: repository, client: client, options: options, logger: logger).run()
            schedule.finish(plan, committed: true)
            result = run
        } catch {
            schedule.finish(plan, committed: false)
            logger.error("pass failed", metadata: ["error": "\(error)"])
            state.update { $0.lastStatus = "Failed"; $0.lastError = "\(error)" }
            state.setReady(false, "the last pass failed: \(error)")
            result = nil
        }
        let seconds = Date().timeIntervalSince(plan.started)
        metrics.recordPass(result, seconds: seconds)
        if let result {
            let polled = plan.outcomes
            logger.info("pass", metadata: [
                "seconds": "\(String(format: "%.2f", seconds))", "polled": "\(polled.count)",
                "changed": "\(polled.values.filter { $0 != .unchanged }.count)", "items": "\(result.itemsDownloaded)",
                "snapshot": "\(result.committed ? result.snapshotID.prefix(12) : "none (nothing new)")",
            ])
            state.update { s in
                s.passes += 1
                s.lastStatus = result.snapshot.partial ? "Warning" : "Success"
                s.lastError = result.snapshot.errors.first.map { "\($0.path): \($0.message)" }
                if result.committed {
                    s.snapshotsCommitted += 1
                    s.siteA.lastSnapshotID = result.snapshotID
                    s.siteA.lastSnapshotTime = UTCTimestamp.rfc3339(result.snapshot.time)
                }
            }
            state.setReady(true, "the last pass succeeded")
            if result.committed {
                metrics.snapshotLast.set(to: result.snapshot.time.timeIntervalSince1970)
                replicator?.signal(snapshotID: result.snapshotID, time: result.snapshot.time)
            }
        }
        publishSchedule(Date())
        onPass?(result)
        return result
    }

    /// The share of the RPO past which maintenance waits (``ServiceMaintenance``).
    public static let maintenanceYieldsAt = 0.8

    /// Whether some collection's newest copy is older than 80 % of the RPO: the passes are
    /// falling behind, and prune and scrub wait so as not to take their disk and CPU.
    public func isFallingBehind(now: Date = Date()) -> Bool {
        let limit = configuration.policy.rpoSeconds * Self.maintenanceYieldsAt
        return schedule.entries.values.contains { now.timeIntervalSince($0.lastSynced ?? $0.since) > limit }
    }

    /// The schedule's view in the status and the metrics.
    func publishSchedule(_ now: Date) {
        KindSummary.publish(KindSummary.of(schedule.entries), cap: schedule.capSeconds, rpoSeconds: configuration.policy.rpoSeconds,
                            now: now, metrics: metrics, state: state)
        state.update { $0.passSecondsP99 = schedule.passSecondsP99 }
    }
}
