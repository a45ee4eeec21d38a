import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineGraph

/// `serve --notify-url`: keeps the tenant's change-notification subscriptions alive and turns
/// each notification into an early poll of what it names (docs/OPERATIONS.md, "Change
/// notifications"). The subscriptions follow what is backed up: every `reconcileSeconds`, and
/// as soon as that changes (the first pass found the collections), each mailbox workload and
/// each drive gets one and those no longer backed up are deleted. One process reconciles (with
/// a coordinator, the holder of the tenant's maintenance lease); every process answers posts.
public final class ChangeNotifications: Service {
    let subscriptions: ChangeSubscriptions
    let wanted: @Sendable () async throws -> Set<ChangeSubscriptions.Target>
    let mayReconcile: @Sendable () async -> Bool
    let markDue: @Sendable (Set<ChangeSubscriptions.Target>) async -> Int
    let metrics: ServiceMetrics
    let logger: Logger
    let reconcileSeconds: Double

    /// `wanted`: the targets to keep (those backed up); `mayReconcile`: whether this process
    /// keeps them now; `markDue`: makes what the targets cover due, returns how many units.
    public init(subscriptions: ChangeSubscriptions, metrics: ServiceMetrics, logger: Logger, reconcileSeconds: Double = 300,
                wanted: @escaping @Sendable () async throws -> Set<ChangeSubscriptions.Target>,
                mayReconcile: @escaping @Sendable () async -> Bool = { true },
                markDue: @escaping @Sendable (Set<ChangeSubscriptions.Target>) async -> Int) {
        self.subscriptions = subscriptions
        self.wanted = wanted
        self.mayReconcile = mayReconcile
        self.markDue = markDue
        self.metrics = metrics
        self.logger = logger
        self.reconcileSeconds = reconcileSeconds
    }

    /// One `serve`: the targets are the schedule's collections, and a notification marks the
    /// collections it covers due.
    public convenience init(subscriptions: ChangeSubscriptions, schedule: CollectionSchedule, metrics: ServiceMetrics, logger: Logger,
                            reconcileSeconds: Double = 300) {
        self.init(subscriptions: subscriptions, metrics: metrics, logger: logger, reconcileSeconds: reconcileSeconds,
                  wanted: { Set(schedule.entries.keys.compactMap(ChangeSubscriptions.Target.of)) },
                  markDue: { targets in targets.reduce(0) { $0 + schedule.markDue(where: $1.covers) } })
    }

    public func run() async throws {
        var last: Date?
        var lastWanted: Set<ChangeSubscriptions.Target> = []
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await round(last: &last, lastWanted: &lastWanted)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }

    private func round(last: inout Date?, lastWanted: inout Set<ChangeSubscriptions.Target>) async {
        let wanted: Set<ChangeSubscriptions.Target>
        do { wanted = try await self.wanted() } catch {
            logger.warning("could not list what to subscribe to", metadata: ["error": "\(error)"])
            return
        }
        // At once when what is backed up changed, else every reconcileSeconds.
        guard !wanted.isEmpty, wanted != lastWanted || last.map({ Date().timeIntervalSince($0) >= reconcileSeconds }) ?? true else { return }
        guard await mayReconcile() else {
            // Another process keeps them; look again at the next interval.
            last = Date()
            lastWanted = wanted
            return
        }
        let summary = await subscriptions.reconcile(wanted)
        metrics.subscriptionsActive.record(Int64(summary.active))
        if summary.created + summary.renewed + summary.deleted + summary.failed > 0 {
            logger.info("change subscriptions", metadata: [
                "active": "\(summary.active)", "created": "\(summary.created)", "renewed": "\(summary.renewed)",
                "deleted": "\(summary.deleted)", "failed": "\(summary.failed)",
            ])
        }
        last = Date()
        lastWanted = wanted
    }

    /// A notification post: marks what it names due. Throws on a body that is not Graph's
    /// shape (answered 400).
    public func notified(_ body: [UInt8]) async throws {
        await record(try await subscriptions.received(body), lifecycle: false)
    }

    /// A lifecycle post.
    public func lifecycle(_ body: [UInt8]) async throws {
        await record(try await subscriptions.lifecycle(body), lifecycle: true)
    }

    private func record(_ received: ChangeSubscriptions.Received, lifecycle: Bool) async {
        let marked = await markDue(received.targets)
        metrics.notificationsReceived[lifecycle ? "lifecycle" : "change"]?.increment(by: Int64(received.targets.count))
        if received.refused > 0 {
            metrics.notificationsRefused.increment(by: Int64(received.refused))
            logger.warning("notifications refused: unknown subscription or wrong client state", metadata: ["count": "\(received.refused)"])
        }
        logger.debug("notified", metadata: ["targets": "\(received.targets.count)", "marked": "\(marked)"])
    }
}
