import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineGraph

/// `serve --notify-url`: keeps the tenant's change-notification subscriptions alive and turns
/// each notification into an early poll of the collections it names (docs/OPERATIONS.md,
/// "Change notifications"). The subscriptions follow the schedule's collections: every
/// `reconcileSeconds` (and after the first pass has found them) each mailbox workload and
/// each drive the schedule holds gets one, and those no longer in it are deleted.
public final class ChangeNotifications: Service {
    let subscriptions: ChangeSubscriptions
    let schedule: CollectionSchedule
    let metrics: ServiceMetrics
    let logger: Logger
    let reconcileSeconds: Double

    public init(subscriptions: ChangeSubscriptions, schedule: CollectionSchedule, metrics: ServiceMetrics, logger: Logger,
                reconcileSeconds: Double = 300) {
        self.subscriptions = subscriptions
        self.schedule = schedule
        self.metrics = metrics
        self.logger = logger
        self.reconcileSeconds = reconcileSeconds
    }

    public func run() async throws {
        var last: Date?
        var lastWanted: Set<ChangeSubscriptions.Target> = []
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let wanted = Set(schedule.entries.keys.compactMap(ChangeSubscriptions.Target.of))
            // At once when the schedule's collections changed (the first pass found them), else
            // every reconcileSeconds.
            if !wanted.isEmpty, wanted != lastWanted || last.map({ Date().timeIntervalSince($0) >= reconcileSeconds }) ?? true {
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
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
        }
    }

    /// A notification post: marks the named collections due. Throws on a body that is not
    /// Graph's shape (answered 400).
    public func notified(_ body: [UInt8]) throws {
        record(try subscriptions.received(body), lifecycle: false)
    }

    /// A lifecycle post.
    public func lifecycle(_ body: [UInt8]) throws {
        record(try subscriptions.lifecycle(body), lifecycle: true)
    }

    private func record(_ received: ChangeSubscriptions.Received, lifecycle: Bool) {
        var marked = 0
        for target in received.targets { marked += schedule.markDue(where: target.covers) }
        metrics.notificationsReceived[lifecycle ? "lifecycle" : "change"]?.increment(by: Int64(received.targets.count))
        if received.refused > 0 {
            metrics.notificationsRefused.increment(by: Int64(received.refused))
            logger.warning("notifications refused: unknown subscription or wrong client state", metadata: ["count": "\(received.refused)"])
        }
        logger.debug("notified", metadata: ["targets": "\(received.targets.count)", "collections": "\(marked)"])
    }
}
