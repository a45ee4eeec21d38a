import ArgumentParser
import Foundation
import VaultlineCore

struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the snapshots a retention policy does not keep (then run `prune` to free their data).",
        discussion: """
            Per group (default: per source — a tenant, a set of users, a set of directories; \
            --group-by none for the whole repository), the newest --keep-last, the newest of each \
            of the last --keep-hourly hours, --keep-daily days, … (UTC), everything --keep-within \
            of the group's newest, and every snapshot with a --keep-tag are kept. Whatever the \
            policy, the last unflagged snapshot before a flagged one (possible ransomware) is kept \
            until `vaultline snapshots --release` releases the flagged one.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var keep: KeepOptions
    @Flag(help: "Only show what would be removed.") var dryRun = false

    func run() throws {
        try reporting {
            let repo = try repository.open()
            let decisions = try repo.forget(policy: try keep.policy(), grouping: try keep.grouping(), only: keep.filter, dryRun: dryRun)
            try printDecisions(decisions, dryRun: dryRun, json: repository.json)
        }
    }
}

/// The keep rules and filters of `forget` and `replica prune`.
struct KeepOptions: ParsableArguments {
    @Option(help: "Keep the newest N snapshots.") var keepLast = 0
    @Option(help: "Keep the newest snapshot of each of the last N hours.") var keepHourly = 0
    @Option(help: "… of each of the last N days.") var keepDaily = 0
    @Option(help: "… of each of the last N ISO weeks.") var keepWeekly = 0
    @Option(help: "… of each of the last N months.") var keepMonthly = 0
    @Option(help: "… of each of the last N years.") var keepYearly = 0
    @Option(help: "Keep everything this recent relative to the newest snapshot: 14d, 12h.") var keepWithin: String?
    @Option(help: "Keep the newest snapshot of each hour among those this recent relative to the newest: 14d.") var keepWithinHourly: String?
    @Option(help: "… of each day: 1y, 365d.") var keepWithinDaily: String?
    @Option(help: "… of each ISO week.") var keepWithinWeekly: String?
    @Option(help: "… of each month.") var keepWithinMonthly: String?
    @Option(help: "… of each year.") var keepWithinYearly: String?
    @Option(help: "Keep snapshots with this tag (repeatable).") var keepTag: [String] = []
    @Option(help: "Group by source (kind and paths), host, none (the whole repository), or path (each path on its own; a snapshot is kept when any of its paths keeps it).")
    var groupBy = "source"
    @Option(help: "Only consider snapshots whose paths include this one (a tenant's Graph URL, a user, a directory; repeatable).")
    var path: [String] = []
    @Option(help: "Only consider snapshots with this tag (repeatable).") var tag: [String] = []

    func policy() throws -> ForgetPolicy {
        var policy = ForgetPolicy()
        policy.last = keepLast
        policy.hourly = keepHourly
        policy.daily = keepDaily
        policy.weekly = keepWeekly
        policy.monthly = keepMonthly
        policy.yearly = keepYearly
        policy.within = try keepWithin.map { try parseDuration($0, option: "--keep-within") }
        policy.withinHourly = try keepWithinHourly.map { try parseDuration($0, option: "--keep-within-hourly") }
        policy.withinDaily = try keepWithinDaily.map { try parseDuration($0, option: "--keep-within-daily") }
        policy.withinWeekly = try keepWithinWeekly.map { try parseDuration($0, option: "--keep-within-weekly") }
        policy.withinMonthly = try keepWithinMonthly.map { try parseDuration($0, option: "--keep-within-monthly") }
        policy.withinYearly = try keepWithinYearly.map { try parseDuration($0, option: "--keep-within-yearly") }
        policy.tags = keepTag
        return policy
    }

    func grouping() throws -> ForgetPolicy.Grouping {
        guard let grouping = ForgetPolicy.Grouping(rawValue: groupBy) else {
            throw VaultlineError(.invalidArgument, "--group-by must be source, host, none or path, not \(groupBy)")
        }
        return grouping
    }

    var filter: (Snapshot) -> Bool {
        let paths = path, tags = tag
        return { s in
            (paths.isEmpty || s.paths.contains { p in paths.contains { p == $0 || p.hasPrefix($0 + "/") } })
                && (tags.isEmpty || s.tags.contains { tags.contains($0) })
        }
    }
}

func printDecisions(_ decisions: [ForgetPolicy.Decision], dryRun: Bool, json: Bool) throws {
    if json { try printJSON(decisions); return }
    var lastGroup: String?
    for d in decisions {
        if d.group != lastGroup { print("group \(d.group):"); lastGroup = d.group }
        print("  \(d.keep ? "keep  " : (dryRun ? "would remove" : "remove")) \(d.id.prefix(8))  \(formatDate(d.time))  \(d.refused ?? d.reasons.joined(separator: ", "))")
    }
    let removed = decisions.filter { !$0.keep }.count
    let refused = decisions.filter { $0.refused != nil }.count
    if refused > 0 { print("\(refused) snapshots the policy would remove are kept by the retention lock") }
    print(dryRun ? "\(removed) snapshots would be removed" : "\(removed) snapshots removed; run prune to free their data")
}
