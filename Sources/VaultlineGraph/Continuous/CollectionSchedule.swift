import Foundation
import Synchronization

/// When each collection of a tenant is next polled (docs/OPERATIONS.md, "Continuous
/// protection"). A collection that changed is polled again after a short debounce. A quiet
/// mailbox collection is polled at its interval (30 s: a 20-folder mailbox then costs 4 % of
/// Exchange's 10,000 requests per 10 minutes). A quiet drive is polled every 45 s or, when the
/// tenant has more drives than that fits in the drive poll budget (each delta poll costs one
/// resource unit of the tenant's 1,200 to 6,000 a minute), as often as the budget allows: every
/// drive once per `drives / budget` minutes. No interval exceeds the cap that
/// keeps the worst-case age under the RPO target: a change made just after a poll waits one
/// interval for the next poll, up to one commit interval for a pass to start, and one pass to be
/// stored, so the cap is the target less the commit interval and the 99th percentile of the
/// measured pass time.
///
/// A pass asks ``beginPass(at:)`` for a planner, runs the backup with it, and hands it back to
/// ``finish(_:at:committed:)``: outcomes count only once the pass's snapshot is stored (or the
/// pass found nothing to store), so a failed pass changes nothing but its retry time.
public final class CollectionSchedule: Sendable {
    public struct Policy: Sendable, Codable, Equatable {
        /// The recovery point objective: the oldest a collection's newest copy may be (seconds).
        public var rpoSeconds = 300.0
        /// A snapshot at most this often; a pass waits this long after the last stored one.
        public var commitIntervalSeconds = 60.0
        public var mailBaseSeconds = 30.0
        public var driveBaseSeconds = 45.0
        /// Delta polls of quiet drives a minute, in all (half the smallest tenant's 1,200
        /// resource units a minute): quiet drives are spread so as to stay under it.
        public var drivePollsPerMinute = 600.0
        /// Whether a quiet collection doubles its interval after each quiet poll (up to the cap)
        /// instead of keeping it.
        public var quietDoubles = false
        /// A collection that changed is polled again this long after its pass ends.
        public var debounceSeconds = 5.0
        /// A collection whose round failed is tried again this long after.
        public var retrySeconds = 30.0
        /// No interval is shorter than this, whatever the cap works out at.
        public var minimumSeconds = 1.0
        /// Collections whose delta link expired are listed in full only while a pass is younger
        /// than this (at least one a pass); the others wait for a later pass, carried as they
        /// were, so that a tenant-wide expiry does not make one pass of hours.
        public var fullListingSeconds = 30.0
        public init() {}
    }

    public struct Entry: Sendable, Codable, Equatable {
        /// When the collection was first seen (its age counts from here until its first poll).
        public var since: Date
        /// The start of the last pass whose round of this collection is stored.
        public var lastSynced: Date?
        public var lastChanged: Date?
        public var lastOutcome: CollectionOutcome?
        public var intervalSeconds: Double
        public var nextDue: Date
        public var resets = 0
    }

    public let policy: Policy
    private struct State {
        var entries: [CollectionKey: Entry] = [:]
        var keysByUser: [String: Set<CollectionKey>] = [:]
        /// The last 100 pass durations, oldest first.
        var passSeconds: [Double] = []
    }
    private let state = Mutex(State())

    public init(policy: Policy = Policy()) { self.policy = policy }

    // MARK: Passes

    public func beginPass(at now: Date = Date()) -> SchedulePass { SchedulePass(schedule: self, started: now) }

    /// Applies a pass's outcomes. `committed`: its snapshot was stored, or it had nothing to
    /// store; false when the pass failed, which leaves every collection as it was and due again
    /// after ``Policy/retrySeconds``.
    public func finish(_ pass: SchedulePass, at end: Date = Date(), committed: Bool) {
        let record = pass.record
        state.withLock { s in
            s.passSeconds.append(max(0, end.timeIntervalSince(pass.started)))
            if s.passSeconds.count > 100 { s.passSeconds.removeFirst(s.passSeconds.count - 100) }
            let cap = Self.cap(policy, s.passSeconds)
            let drives = s.entries.keys.lazy.filter(\.kind.isDrive).count
            let driveBase = max(policy.driveBaseSeconds, Double(drives) * 60 / max(1, policy.drivePollsPerMinute))
            guard committed else {
                for key in record.outcomes.keys { s.entries[key]?.nextDue = end.addingTimeInterval(policy.retrySeconds) }
                return
            }
            // Collections neither asked about nor carried with their user no longer exist.
            for (key, _) in s.entries where !record.asked.contains(key) && !(key.user.map(record.carriedUsers.contains) ?? false) {
                Self.remove(key, &s)
            }
            for (key, outcome) in record.outcomes {
                let base = key.kind.isDrive ? driveBase : policy.mailBaseSeconds
                var entry = s.entries[key] ?? Entry(since: pass.started, intervalSeconds: base, nextDue: end)
                entry.lastOutcome = outcome
                switch outcome {
                case .changed, .reset:
                    entry.lastSynced = pass.started
                    entry.lastChanged = pass.started
                    entry.intervalSeconds = min(base, cap)
                    entry.nextDue = end.addingTimeInterval(policy.debounceSeconds)
                    if outcome == .reset { entry.resets += 1 }
                case .unchanged:
                    let first = entry.lastSynced == nil || entry.lastChanged == entry.lastSynced
                    entry.lastSynced = pass.started
                    entry.intervalSeconds = max(policy.minimumSeconds, min(cap, first || !policy.quietDoubles ? base : entry.intervalSeconds * 2))
                    entry.nextDue = end.addingTimeInterval(entry.intervalSeconds)
                case .failed:
                    entry.nextDue = end.addingTimeInterval(policy.retrySeconds)
                case .deferred:
                    entry.nextDue = end  // listed in full by the next pass that has the time
                }
                s.entries[key] = entry
                if let user = key.user { s.keysByUser[user, default: []].insert(key) }
            }
        }
    }

    private static func remove(_ key: CollectionKey, _ s: inout State) {
        s.entries[key] = nil
        if let user = key.user {
            s.keysByUser[user]?.remove(key)
            if s.keysByUser[user]?.isEmpty == true { s.keysByUser[user] = nil }
        }
    }

    /// The longest interval: the RPO target less the commit interval and the 99th percentile of
    /// the pass time.
    static func cap(_ policy: Policy, _ passes: [Double]) -> Double {
        max(policy.minimumSeconds, policy.rpoSeconds - policy.commitIntervalSeconds - percentile(passes, 0.99))
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(sorted.count - 1, max(0, rank))]
    }

    // MARK: Questions

    /// Whether the collection would be polled by a pass starting `now` (unknown ones are).
    func isDue(_ key: CollectionKey, at now: Date) -> Bool {
        state.withLock { s in s.entries[key].map { $0.nextDue <= now } ?? true }
    }

    func anyDue(user: String, at now: Date) -> Bool {
        state.withLock { s in
            guard let keys = s.keysByUser[user], !keys.isEmpty else { return true }
            return keys.contains { s.entries[$0].map { $0.nextDue <= now } ?? true }
        }
    }

    /// When the next pass should start: the earliest due time (nil before the first pass).
    public var nextDue: Date? {
        state.withLock { s in s.entries.values.lazy.map(\.nextDue).min() }
    }

    /// Marks collections due now: every collection, or those of one user (a change notification,
    /// an operator's request).
    public func markDue(user: String? = nil, at now: Date = Date()) {
        state.withLock { s in
            let keys = user.map { Array(s.keysByUser[$0] ?? []) } ?? Array(s.entries.keys)
            for key in keys { s.entries[key]?.nextDue = now }
        }
    }

    /// Marks the collections `matches` picks due now (a change notification's target); returns
    /// how many.
    @discardableResult
    public func markDue(at now: Date = Date(), where matches: (CollectionKey) -> Bool) -> Int {
        state.withLock { s in
            var count = 0
            for key in Array(s.entries.keys) where matches(key) {
                if let due = s.entries[key]?.nextDue, due > now { s.entries[key]?.nextDue = now }
                count += 1
            }
            return count
        }
    }

    public var entries: [CollectionKey: Entry] { state.withLock { $0.entries } }

    /// The interval cap in force, from the passes measured so far.
    public var capSeconds: Double { state.withLock { Self.cap(policy, $0.passSeconds) } }

    public var passSecondsP99: Double { state.withLock { Self.percentile($0.passSeconds, 0.99) } }
}

/// One pass's planner: due-ness is judged at the pass's start, outcomes are kept until the pass
/// is finished (``CollectionSchedule/finish(_:at:committed:)``).
public final class SchedulePass: CollectionPlanner {
    struct Record {
        var asked: Set<CollectionKey> = []
        var carriedUsers: Set<String> = []
        var outcomes: [CollectionKey: CollectionOutcome] = [:]
        /// Collections given a full listing in this pass (a user's contact folders are one
        /// collection with a link each: once granted, all of them).
        var fullListings: Set<CollectionKey> = []
    }
    let schedule: CollectionSchedule
    public let started: Date
    private let state = Mutex(Record())

    init(schedule: CollectionSchedule, started: Date) {
        self.schedule = schedule
        self.started = started
    }

    var record: Record { state.withLock { $0 } }

    public func isDue(_ key: CollectionKey) -> Bool {
        state.withLock { _ = $0.asked.insert(key) }
        return schedule.isDue(key, at: started)
    }

    public func anyDue(user: String) -> Bool {
        let due = schedule.anyDue(user: user, at: started)
        if !due { state.withLock { _ = $0.carriedUsers.insert(user) } }
        return due
    }

    public func polled(_ key: CollectionKey, _ outcome: CollectionOutcome) {
        // A key polled twice in a pass (a user's default and other calendars) keeps the
        // weightier outcome.
        func weight(_ o: CollectionOutcome?) -> Int { o.map { [.unchanged: 1, .changed: 2, .reset: 3, .deferred: 4, .failed: 5][$0] ?? 0 } ?? 0 }
        state.withLock {
            $0.asked.insert(key)
            if weight(outcome) > weight($0.outcomes[key]) { $0.outcomes[key] = outcome }
        }
    }

    public func mayListInFull(_ key: CollectionKey) -> Bool {
        let young = Date().timeIntervalSince(started) < schedule.policy.fullListingSeconds
        return state.withLock { r in
            guard r.fullListings.contains(key) || young || r.fullListings.isEmpty else { return false }
            r.fullListings.insert(key)
            return true
        }
    }

    /// Collections polled in this pass, by outcome.
    public var outcomes: [CollectionKey: CollectionOutcome] { state.withLock { $0.outcomes } }
}
