import Foundation

/// Which snapshots `forget` keeps (docs/OPERATIONS.md, "Retention").
///
/// Within each group (by default one group per source: kind and paths, so one tenant, one set
/// of users, one set of directories), snapshots are considered newest first. A snapshot is kept
/// when any rule keeps it: the newest `last`; the newest of each of the newest `hourly` hours,
/// `daily` days, … (calendar periods in UTC); the newest of each hour, day, … among the
/// snapshots within `withinHourly`, `withinDaily`, … of the group's newest (so "hourly for 14
/// days" holds whatever the gaps); everything within `within` of the group's newest snapshot; every
/// snapshot with one of `tags`. The ransomware rule is not optional: for every
/// flagged, unreleased snapshot, the newest unflagged snapshot older than it is kept.
public struct ForgetPolicy: Sendable, Codable, Equatable {
    public var last = 0
    public var hourly = 0
    public var daily = 0
    public var weekly = 0
    public var monthly = 0
    public var yearly = 0
    public var within: TimeInterval?
    public var withinHourly: TimeInterval?
    public var withinDaily: TimeInterval?
    public var withinWeekly: TimeInterval?
    public var withinMonthly: TimeInterval?
    public var withinYearly: TimeInterval?
    public var tags: [String] = []

    public init() {}

    public var isEmpty: Bool {
        last == 0 && hourly == 0 && daily == 0 && weekly == 0 && monthly == 0 && yearly == 0 && within == nil
            && withinHourly == nil && withinDaily == nil && withinWeekly == nil && withinMonthly == nil && withinYearly == nil
            && tags.isEmpty
    }

    /// `path`: every path of a snapshot is a group of its own, and a snapshot is kept when any
    /// of its groups keeps it — for snapshots that hold different sets of a tenant's users
    /// (`m365 serve --coordinator` batches), so each user's history is thinned on its own.
    public enum Grouping: String, Sendable, Codable { case source, host, none, path }

    public struct Decision: Sendable, Codable {
        public var id: String
        public var time: Date
        public var group: String
        public var keep: Bool
        /// Why it is kept ("last", "daily 2026-11-25", "tag weekly", "unflagged before flagged …").
        public var reasons: [String]
        /// Set when the policy would remove it but site B's retention lock refuses: why.
        public var refused: String?
    }

    /// The groups a snapshot belongs to: one, except by `path` (one per path).
    public static func groups(of snapshot: Snapshot, by grouping: Grouping) -> [String] {
        switch grouping {
        case .source: ["\(snapshot.sourceKind) \(snapshot.paths.joined(separator: ","))"]
        case .host: [snapshot.host]
        case .none: ["all"]
        case .path: snapshot.paths.isEmpty ? ["\(snapshot.sourceKind)"] : snapshot.paths.map { "\(snapshot.sourceKind) \($0)" }
        }
    }

    /// Decides for every snapshot (one decision each); the input order does not matter. A
    /// snapshot in several groups is kept when any keeps it, with every group's reasons; its
    /// decision names the first group that keeps it (else its first group).
    public func apply(_ snapshots: [(id: String, snapshot: Snapshot)], grouping: Grouping) -> [Decision] {
        var groups: [String: [(id: String, snapshot: Snapshot)]] = [:]
        for s in snapshots {
            for group in Set(Self.groups(of: s.snapshot, by: grouping)) { groups[group, default: []].append(s) }
        }
        var out: [Decision] = []
        var position: [String: Int] = [:]
        for (group, members) in groups.sorted(by: { $0.key < $1.key }) {
            for decision in decide(members.sorted { ($0.snapshot.time, $0.id) > ($1.snapshot.time, $1.id) }, group: group) {
                guard let at = position[decision.id] else {
                    position[decision.id] = out.count
                    out.append(decision)
                    continue
                }
                if decision.keep && !out[at].keep { out[at].group = decision.group }
                out[at].keep = out[at].keep || decision.keep
                out[at].reasons += decision.reasons.map { "\($0) (\(decision.group))" }
            }
        }
        return out
    }

    private func decide(_ newestFirst: [(id: String, snapshot: Snapshot)], group: String) -> [Decision] {
        var decisions = newestFirst.map { Decision(id: $0.id, time: $0.snapshot.time, group: group, keep: false, reasons: []) }
        func keep(_ i: Int, _ why: String) {
            decisions[i].keep = true
            decisions[i].reasons.append(why)
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let buckets: [(count: Int, within: TimeInterval?, name: String, key: (Date) -> String)] = [
            (hourly, withinHourly, "hourly", { d in let c = calendar.dateComponents([.year, .month, .day, .hour], from: d); return "\(c.year ?? 0)-\(c.month ?? 0)-\(c.day ?? 0) \(c.hour ?? 0)h" }),
            (daily, withinDaily, "daily", { d in let c = calendar.dateComponents([.year, .month, .day], from: d); return "\(c.year ?? 0)-\(c.month ?? 0)-\(c.day ?? 0)" }),
            (weekly, withinWeekly, "weekly", { d in let c = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: d); return "\(c.yearForWeekOfYear ?? 0)-W\(c.weekOfYear ?? 0)" }),
            (monthly, withinMonthly, "monthly", { d in let c = calendar.dateComponents([.year, .month], from: d); return "\(c.year ?? 0)-\(c.month ?? 0)" }),
            (yearly, withinYearly, "yearly", { d in "\(calendar.component(.year, from: d))" }),
        ]
        for (i, _) in newestFirst.enumerated() where i < last { keep(i, "last") }
        for bucket in buckets where bucket.count > 0 {
            var seen = Set<String>()
            for (i, s) in newestFirst.enumerated() {
                let key = bucket.key(s.snapshot.time)
                guard !seen.contains(key) else { continue }
                seen.insert(key)
                guard seen.count <= bucket.count else { break }
                keep(i, "\(bucket.name) \(key)")
            }
        }
        if let newest = newestFirst.first?.snapshot.time {
            for bucket in buckets {
                guard let span = bucket.within else { continue }
                var seen = Set<String>()
                for (i, s) in newestFirst.enumerated() {
                    guard newest.timeIntervalSince(s.snapshot.time) <= span else { break }
                    let key = bucket.key(s.snapshot.time)
                    guard !seen.contains(key) else { continue }
                    seen.insert(key)
                    keep(i, "\(bucket.name) \(key) (within)")
                }
            }
        }
        if let within, let newest = newestFirst.first?.snapshot.time {
            for (i, s) in newestFirst.enumerated() where newest.timeIntervalSince(s.snapshot.time) <= within { keep(i, "within") }
        }
        if !tags.isEmpty {
            for (i, s) in newestFirst.enumerated() {
                if let tag = s.snapshot.tags.first(where: { tags.contains($0) }) { keep(i, "tag \(tag)") }
            }
        }
        // Ransomware: the last good copy before a flagged snapshot stays until it is released.
        for (i, s) in newestFirst.enumerated() where s.snapshot.isFlagged {
            if let j = newestFirst[(i + 1)...].firstIndex(where: { !$0.snapshot.isFlagged }) {
                keep(j, "last unflagged before flagged \(s.id.prefix(8))")
            }
        }
        return decisions
    }
}

extension Repository {
    /// Removes the snapshots the policy does not keep (unless `dryRun`); returns every decision.
    /// Only snapshot files are removed: the data they alone used is freed by `prune`.
    ///
    /// At site B (`replicaPath` set): a snapshot under the `retention` lock is kept and its
    /// decision says why (`refused`); removed names are recorded first (``PrunedNames``).
    public func forget(
        policy: ForgetPolicy, grouping: ForgetPolicy.Grouping, only filter: (Snapshot) -> Bool = { _ in true }, dryRun: Bool,
        retention: RetentionLock? = nil, replicaPath: String? = nil
    ) throws -> [ForgetPolicy.Decision] {
        guard !policy.isEmpty else {
            throw VaultlineError(.invalidArgument, "no keep rule given: refusing to forget every snapshot (give --keep-last, --keep-daily, … or --keep-within)")
        }
        let lock = try RepositoryLock.acquire(backend, exclusive: false, command: "forget")
        defer { lock.release() }
        var decisions = policy.apply(try listSnapshots().filter { filter($0.snapshot) }, grouping: grouping)
        if let retention {
            for i in decisions.indices where !decisions[i].keep {
                let arrival = try backend.modified(.snapshot, decisions[i].id)
                if retention.holds(arrival: arrival, time: decisions[i].time) {
                    decisions[i].keep = true
                    decisions[i].refused = "refused: the retention lock keeps everything younger than \(retention.days) days at this site (taken \(StoredJSON.iso8601(decisions[i].time)), arrived \(arrival.map(StoredJSON.iso8601) ?? "?"))"
                }
            }
        }
        let removed = decisions.filter { !$0.keep }.map(\.id)
        if !dryRun {
            if let replicaPath { try PrunedNames.append(repository: replicaPath, .snapshot, removed) }
            for id in removed { try backend.delete(.snapshot, id) }
        }
        return decisions
    }

    /// Releases a flagged snapshot after an administrator has looked at it: writes it again with
    /// `released` set (a new id) and removes the old file. Returns the new id.
    public func releaseFlag(_ ref: String) throws -> String {
        let id = try resolveSnapshot(ref)
        var snapshot = try loadSnapshot(id)
        guard snapshot.isFlagged else {
            throw VaultlineError(.invalidArgument, "snapshot is not flagged", object: id)
        }
        snapshot.released = true
        let new = try saveSnapshot(snapshot)
        try backend.delete(.snapshot, id)
        return new
    }
}
