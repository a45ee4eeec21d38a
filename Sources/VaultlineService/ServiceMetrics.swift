import Foundation
import Prometheus
import VaultlineCore
import VaultlineGraph

/// The service's Prometheus series (docs/OPERATIONS.md lists them): timestamps rather than ages
/// (`time() − x` is computed when queried and survives a stuck updater), few labels (`kind`,
/// `result`, `site`), every series exported from the start (0 until it happens).
/// Its own registry, not swift-metrics' global one: two services in one process (the tests)
/// keep their numbers apart.
public final class ServiceMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    let snapshotLast: Gauge
    let oldestSync: [ReportedKind: Gauge]
    let dirty: [ReportedKind: Gauge]
    let collections: [ReportedKind: Gauge]
    let snapshots: [String: Counter]
    let passDuration: DurationHistogram
    let itemsDownloaded: Counter
    let itemErrors: Counter
    let graphRequests: Counter
    let graphThrottled: Counter
    let graphRetryAfter: Counter
    let driveUnits: Counter
    let driveBudgetWait: Counter
    let deltaResets: Counter
    let pollCap: Gauge
    let rpoAtRisk: Gauge
    let subscriptionsActive: Gauge
    let notificationsReceived: [String: Counter]
    let notificationsRefused: Counter
    /// Only when the service replicates: a site B timestamp of 0 would read as a lag of decades.
    let replicationLast: Gauge?
    let replicationBytes: Counter?
    let replicationFailures: Counter?
    let lastPassSuccess: Gauge
    let maintenanceLast: [String: Gauge]
    let maintenanceFailures: [String: Counter]
    let maintenancePaused: Gauge
    let forgetRemoved: Counter
    let pruneFreed: Counter
    let scrubFraction: Gauge
    let scrubBytes: Counter
    let scrubDamaged: Counter
    let scrubPassCompleted: Gauge

    public init(version: String, replicates: Bool = false) {
        let r = registry
        snapshotLast = r.makeGauge(descriptor: .named("vaultline_m365_snapshot_last_timestamp_seconds", "Time of the newest snapshot at site A (its pass's start)."))
        var oldest: [ReportedKind: Gauge] = [:], dirty: [ReportedKind: Gauge] = [:], count: [ReportedKind: Gauge] = [:]
        for kind in ReportedKind.allCases {
            oldest[kind] = r.makeGauge(descriptor: .named("vaultline_m365_oldest_sync_timestamp_seconds", "The oldest last sync of any collection of the kind: time() minus this is the live RPO."), labels: [("kind", kind.rawValue)])
            dirty[kind] = r.makeGauge(descriptor: .named("vaultline_m365_dirty_containers", "Collections whose last round listed changes."), labels: [("kind", kind.rawValue)])
            count[kind] = r.makeGauge(descriptor: .named("vaultline_m365_containers", "Collections known."), labels: [("kind", kind.rawValue)])
        }
        oldestSync = oldest
        self.dirty = dirty
        collections = count
        var snapshots: [String: Counter] = [:]
        for result in ["committed", "unchanged", "failed"] {
            snapshots[result] = r.makeCounter(descriptor: .named("vaultline_m365_snapshots_total", "Passes by outcome: a snapshot stored, nothing new to store, or the pass failed."), labels: [("result", result)])
        }
        self.snapshots = snapshots
        passDuration = r.makeDurationHistogram(
            descriptor: .named("vaultline_m365_snapshot_duration_seconds", "How long a pass takes, from its start to its snapshot stored."), buckets: [.milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30),
                      .seconds(60), .seconds(120), .seconds(300), .seconds(900)])
        itemsDownloaded = r.makeCounter(descriptor: .named("vaultline_m365_items_total", "Items downloaded and stored."))
        itemErrors = r.makeCounter(descriptor: .named("vaultline_item_errors_total", "Items a pass could not back up (retried next pass)."))
        graphRequests = r.makeCounter(descriptor: .named("vaultline_graph_requests_total", "Requests sent to Graph."))
        graphThrottled = r.makeCounter(descriptor: .named("vaultline_graph_throttled_total", "Graph answers 429 or 503."))
        graphRetryAfter = r.makeCounter(descriptor: .named("vaultline_graph_retry_after_seconds_total", "Seconds spent waiting on Retry-After and backoff."))
        driveUnits = r.makeCounter(descriptor: .named("vaultline_graph_drive_resource_units_total", "SharePoint and OneDrive resource units spent, as Microsoft prices requests."))
        driveBudgetWait = r.makeCounter(descriptor: .named("vaultline_graph_drive_budget_wait_seconds_total", "Seconds drive requests waited for the tenant's resource-unit budget or its pause after a 429."))
        deltaResets = r.makeCounter(descriptor: .named("vaultline_graph_delta_resets_total", "Collections listed in full because their delta link expired."))
        pollCap = r.makeGauge(descriptor: .named("vaultline_graph_poll_interval_cap_seconds", "The longest poll interval in force."))
        rpoAtRisk = r.makeGauge(descriptor: .named("vaultline_m365_rpo_at_risk", "1 when some collection's newest copy is older than the RPO allows."))
        subscriptionsActive = r.makeGauge(descriptor: .named("vaultline_graph_subscriptions", "Change-notification subscriptions kept alive (serve --notify-url)."))
        var received: [String: Counter] = [:]
        for kind in ["change", "lifecycle"] {
            received[kind] = r.makeCounter(descriptor: .named("vaultline_graph_notifications_total", "Change notifications and lifecycle events that checked out, by kind."), labels: [("kind", kind)])
        }
        notificationsReceived = received
        notificationsRefused = r.makeCounter(descriptor: .named("vaultline_graph_notifications_refused_total", "Notification entries refused: an unknown subscription or a wrong client state."))
        replicationLast = !replicates ? nil : r.makeGauge(descriptor: .named("vaultline_replication_last_snapshot_timestamp_seconds", "Time of the newest snapshot whose files site B acknowledged."), labels: [("site", "b")])
        replicationBytes = !replicates ? nil : r.makeCounter(descriptor: .named("vaultline_replication_bytes_total", "Bytes sent to site B."))
        replicationFailures = !replicates ? nil : r.makeCounter(descriptor: .named("vaultline_replication_failures_total", "Replication passes that failed."))
        lastPassSuccess = r.makeGauge(descriptor: .named("vaultline_m365_last_pass_success", "1 when the last pass succeeded."))
        var last: [String: Gauge] = [:], failures: [String: Counter] = [:]
        for job in ["forget", "prune", "scrub"] {
            last[job] = r.makeGauge(descriptor: .named("vaultline_maintenance_last_success_timestamp_seconds", "When each maintenance job (forget, prune, a scrub slice) last ended well; 0 until it has."), labels: [("job", job)])
            failures[job] = r.makeCounter(descriptor: .named("vaultline_maintenance_failures_total", "Maintenance jobs that failed (tried again at their next turn)."), labels: [("job", job)])
        }
        maintenanceLast = last
        maintenanceFailures = failures
        maintenancePaused = r.makeGauge(descriptor: .named("vaultline_maintenance_paused", "1 while maintenance waits: the RPO is at risk, or another worker holds it."))
        forgetRemoved = r.makeCounter(descriptor: .named("vaultline_forget_snapshots_removed_total", "Snapshots removed by the retention policy."))
        pruneFreed = r.makeCounter(descriptor: .named("vaultline_prune_freed_bytes_total", "Bytes of packs prune deleted."))
        scrubFraction = r.makeGauge(descriptor: .named("vaultline_scrub_pass_fraction", "How far the current scrub pass has come through the repository's files (0 to 1)."))
        scrubBytes = r.makeCounter(descriptor: .named("vaultline_scrub_read_bytes_total", "Bytes the scrub re-read and checked."))
        scrubDamaged = r.makeCounter(descriptor: .named("vaultline_scrub_damaged_files_total", "Files the scrub found damaged (repair them: docs/OPERATIONS.md, Repair)."))
        scrubPassCompleted = r.makeGauge(descriptor: .named("vaultline_scrub_last_pass_completed_timestamp_seconds", "When a scrub pass last reached the end of the repository; 0 until one has."))
        r.makeGauge(descriptor: .named("vaultline_build_info", "The running build."), labels: [("version", version)]).set(to: 1)
    }

    func recordPass(_ result: M365Backup.Result?, seconds: Double) {
        passDuration.recordSeconds(seconds)
        guard let result else {
            snapshots["failed"]?.increment()
            lastPassSuccess.set(to: 0)
            return
        }
        lastPassSuccess.set(to: 1)
        snapshots[result.committed ? "committed" : "unchanged"]?.increment()
        itemsDownloaded.increment(by: Int64(result.itemsDownloaded))
        itemErrors.increment(by: Int64(result.snapshot.errors.count))
        deltaResets.increment(by: Int64(result.deltaResets))
        graphRequests.increment(by: Int64(result.graph.requests))
        graphThrottled.increment(by: Int64(result.graph.throttled))
        graphRetryAfter.increment(by: result.graph.waitedSeconds)
        driveUnits.increment(by: Int64(result.graph.driveUnits))
        driveBudgetWait.increment(by: result.graph.driveBudgetSeconds)
    }

    func recordSchedule(_ kinds: [ReportedKind: KindSummary], cap: Double, atRisk: Bool, now: Date) {
        for kind in ReportedKind.allCases {
            let summary = kinds[kind] ?? KindSummary()
            // No collection of the kind: nothing is old (now, not 0, which would read as 1970).
            oldestSync[kind]?.set(to: (summary.oldestSync ?? now).timeIntervalSince1970)
            dirty[kind]?.set(to: Double(summary.dirty))
            collections[kind]?.set(to: Double(summary.count))
        }
        pollCap.set(to: cap)
        rpoAtRisk.set(to: atRisk ? 1 : 0)
    }

    func recordMaintenance(_ job: String, succeeded: Bool, at time: Date) {
        if succeeded { maintenanceLast[job]?.set(to: time.timeIntervalSince1970) } else { maintenanceFailures[job]?.increment() }
    }

    func recordScrub(_ report: Scrubber.Report) {
        scrubFraction.set(to: report.passCompleted ? 1 : report.passFraction)
        scrubBytes.increment(by: Int64(clamping: report.bytesRead))
        scrubDamaged.increment(by: Int64(report.damaged.count))
        if let completed = report.lastCompletedPass { scrubPassCompleted.set(to: completed.timeIntervalSince1970) }
    }

    public func text() -> String { registry.emitToString() }
}

extension MetricNameDescriptor {
    /// A whole name (the unit suffix already in it) and its help text.
    static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}

extension DurationHistogram {
    func recordSeconds(_ seconds: Double) {
        record(.nanoseconds(Int64((max(0, seconds) * 1e9).rounded())))
    }
}
