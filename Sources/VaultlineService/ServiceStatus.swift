import Foundation
import Synchronization
import VaultlineCore
import VaultlineGraph

/// What `/status` answers (JSON) and `vaultline m365 status` prints: the service's last pass,
/// its next one, its newest snapshot at each site and each kind of collection's oldest sync.
/// Times are RFC 3339 UTC strings, as in every stored JSON file.
public struct ServiceStatus: Codable, Sendable, Equatable {
    /// Starting (no pass finished yet), Running, Success, Warning (the last snapshot is
    /// partial) or Failed (the last pass failed).
    public var lastStatus = "Starting"
    public var lastRun: String?
    public var nextRun: String?
    public var lastError: String?
    public var rpoSeconds: Double
    /// The longest poll interval in force: the RPO less the 99th percentile pass time.
    public var pollCapSeconds: Double
    public var passSecondsP99: Double
    public var passes = 0
    public var snapshotsCommitted = 0
    public var siteA = Site()
    /// Absent when the service does not replicate.
    public var siteB: Site?
    public var collections: [String: Kind] = [:]
    /// True when some collection's newest copy is older than the RPO allows.
    public var rpoAtRisk = false
    /// Retention, prune and scrub in the service (absent when it runs none).
    public var maintenance: Maintenance?

    public struct Maintenance: Codable, Sendable, Equatable {
        /// When prune and scrub may run (`01:00-05:00 Europe/Paris`, `always`, `never`).
        public var window: String
        /// The job running now: forget, prune or scrub.
        public var running: String?
        /// Why nothing starts now (the RPO is at risk; another worker holds the maintenance).
        public var paused: String?
        public var lastForget: String?
        public var lastPrune: String?
        public var lastScrub: String?
        /// How far the current scrub pass has come (0…1), and when the last pass completed.
        public var scrubPassFraction: Double?
        public var lastCompletedScrubPass: String?
        /// Files the scrub found damaged since the service started (`vaultline repair`).
        public var scrubDamaged: [String] = []
        /// Each job's last failure, until it next succeeds.
        public var lastErrors: [String: String] = [:]
        public init(window: String) { self.window = window }
    }

    public struct Site: Codable, Sendable, Equatable {
        public var lastSnapshotID: String?
        /// The newest snapshot's time (its pass's start: the data is at least this fresh).
        public var lastSnapshotTime: String?
        public var lastError: String?
        public init() {}
    }

    public struct Kind: Codable, Sendable, Equatable {
        public var count = 0
        /// The oldest last sync of any collection of the kind (`time − this` is the live RPO).
        public var oldestSync: String?
        /// Collections whose last round listed changes (polled again after the debounce).
        public var dirty = 0
    }

    public init(rpoSeconds: Double) {
        self.rpoSeconds = rpoSeconds
        pollCapSeconds = rpoSeconds
        passSecondsP99 = 0
    }
}

/// The kinds reported, by their metric label (a mailbox's folder hierarchy counts as mail).
enum ReportedKind: String, CaseIterable {
    case mail, calendar, contacts, onedrive, library

    init(_ kind: CollectionKey.Kind) {
        switch kind {
        case .mailFolder, .mailFolders: self = .mail
        case .calendar: self = .calendar
        case .contacts: self = .contacts
        case .onedrive: self = .onedrive
        case .library: self = .library
        }
    }
}

/// Per kind: collections, the oldest sync and the dirty ones, from the schedule's entries.
struct KindSummary {
    var count = 0
    var oldestSync: Date?
    var dirty = 0

    /// Puts the kinds, the poll cap and whether some kind's oldest copy is older than the RPO
    /// in the metrics and the status (either may be absent); returns whether the RPO is at risk.
    @discardableResult
    static func publish(_ kinds: [ReportedKind: KindSummary], cap: Double, rpoSeconds: Double, now: Date,
                        metrics: ServiceMetrics?, state: ServiceState?) -> Bool {
        let atRisk = kinds.values.contains { ($0.oldestSync.map { now.timeIntervalSince($0) } ?? 0) > rpoSeconds }
        metrics?.recordSchedule(kinds, cap: cap, atRisk: atRisk, now: now)
        state?.update { s in
            s.pollCapSeconds = cap
            s.rpoAtRisk = atRisk
            s.collections = Dictionary(uniqueKeysWithValues: kinds.map { kind, summary in
                (kind.rawValue, ServiceStatus.Kind(count: summary.count, oldestSync: summary.oldestSync.map { UTCTimestamp.rfc3339($0) }, dirty: summary.dirty))
            })
        }
        return atRisk
    }

    static func of(_ entries: [CollectionKey: CollectionSchedule.Entry]) -> [ReportedKind: KindSummary] {
        var out: [ReportedKind: KindSummary] = [:]
        for (key, entry) in entries {
            var summary = out[ReportedKind(key.kind)] ?? KindSummary()
            summary.count += 1
            let synced = entry.lastSynced ?? entry.since
            summary.oldestSync = min(summary.oldestSync ?? synced, synced)
            if [.changed, .reset, .deferred].contains(entry.lastOutcome) { summary.dirty += 1 }
            out[ReportedKind(key.kind)] = summary
        }
        return out
    }
}

/// The service's shared view of itself, written by its loops and read by the HTTP routes.
public final class ServiceState: Sendable {
    private let status: Mutex<ServiceStatus>
    /// Whether a pass succeeded last (readiness), and why not.
    private let readiness = Mutex<(ready: Bool, reason: String)>((false, "no pass has finished yet"))

    public init(rpoSeconds: Double, replicates: Bool) {
        var s = ServiceStatus(rpoSeconds: rpoSeconds)
        if replicates { s.siteB = .init() }
        status = Mutex(s)
    }

    public var current: ServiceStatus { status.withLock { $0 } }
    public var ready: (ready: Bool, reason: String) { readiness.withLock { $0 } }

    func update(_ body: (inout ServiceStatus) -> Void) { status.withLock { body(&$0) } }
    func setReady(_ ready: Bool, _ reason: String) { readiness.withLock { $0 = (ready, reason) } }
}
