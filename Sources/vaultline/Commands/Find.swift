import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineGraph

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find items in snapshots by subject, sender, recipient, date, name or path.",
        discussion: """
            Every criterion given must hold; text matches ignore case. Searches the latest snapshot \
            unless --snapshot or --all says otherwise. An item unchanged across snapshots is listed \
            once, with the newest snapshot holding it: SNAPSHOT:PATH is what restore and \
            m365 restore take.
            Example: vaultline find --all --from megan --subject "Q3 budget" --after 2026-10-01
            """)

    @OptionGroup var repository: RepositoryOptions

    @Option(help: "Search this snapshot (id, prefix or 'latest'; repeatable).")
    var snapshot: [String] = []

    @Flag(help: "Search every snapshot.")
    var all = false

    @Option(help: "Search the tenant as it was at TIME (ISO 8601 or YYYY-MM-DD, UTC): each part from the newest snapshot at or before TIME holding it, whichever worker wrote it.")
    var at: String?

    @Option(help: "Only this user's items (UPN).")
    var user: String?

    @Option(help: "Subject (mail, events) or display name (contacts) containing TEXT.")
    var subject: String?

    @Option(help: "Sender (mail) or organizer (events) whose address or name contains ADDR.")
    var from: String?

    @Option(help: "A recipient (to, cc, bcc) or attendee whose address or name contains ADDR.")
    var to: String?

    @Option(help: "Dated on or after DATE (YYYY-MM-DD or ISO 8601; mail: received, events: start, files: modified).")
    var after: String?

    @Option(help: "Dated before DATE.")
    var before: String?

    @Option(help: "Name (file name, subject, display name) matching a glob (*, ?, [...]).")
    var name: String?

    @Option(help: "Stored path matching a glob; * also matches /.")
    var path: String?

    @Option(help: "Only items of this kind: mail, event, contact or file (repeatable).")
    var kind: [String] = []

    func run() throws {
        try reporting {
            let query = try makeQuery()
            let repo = try repository.open()
            try repo.loadIndex()
            let everything = try repo.listSnapshots()
            let chosen: [(id: String, snapshot: Snapshot)]
            var view: TenantView?
            if let at {
                guard !all, snapshot.isEmpty else { throw VaultlineError(.invalidArgument, "give --at, --all or --snapshot, one of them") }
                view = try TenantView(at: try Self.pointInTime(at), snapshots: everything)
                chosen = everything
            } else if all {
                guard snapshot.isEmpty else { throw VaultlineError(.invalidArgument, "give --all or --snapshot, not both") }
                chosen = everything
            } else {
                let ids = Set(try (snapshot.isEmpty ? ["latest"] : snapshot).map { try repo.resolveSnapshot($0) })
                chosen = everything.filter { ids.contains($0.id) }
            }
            let finder = ItemFinder(repository: repo, query: query)
            let result = try view.map { try finder.run(at: $0, snapshots: chosen) } ?? finder.run(snapshots: chosen)
            if repository.json {
                try printJSON(FindListing(result))
                return
            }
            for m in result.matches {
                let item = m.item
                let date = item.date.map(Self.utc) ?? "-"
                let who = item.from.map { "  from \($0)" } ?? ""
                print("\(date)  \(item.kind.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0))  \(item.title)\(who)  \(formatBytes(item.size))")
                let span = m.snapshots.count == 1 ? "" : "  (in \(m.snapshots.count) snapshots, \(Self.utc(m.oldest)) to \(Self.utc(m.newest)))"
                print("    \(m.snapshots[0].prefix(8)):\(item.path)\(span)")
            }
            print("\(result.matches.count) items in \(result.snapshotsSearched) snapshots (\(result.itemsExamined) looked at, \(result.treesRead) trees read) in \(String(format: "%.2f", result.seconds)) s")
        }
    }

    func makeQuery() throws -> ItemQuery {
        var q = ItemQuery()
        q.user = user
        q.subject = subject
        q.from = from
        q.to = to
        q.name = name
        q.path = path
        if let after {
            guard let date = ItemQuery.parseDate(after) else { throw VaultlineError(.invalidArgument, "--after: not a date (YYYY-MM-DD or ISO 8601)", object: after) }
            q.after = date
        }
        if let before {
            guard let date = ItemQuery.parseDate(before) else { throw VaultlineError(.invalidArgument, "--before: not a date (YYYY-MM-DD or ISO 8601)", object: before) }
            q.before = date
        }
        if !kind.isEmpty {
            q.kinds = Set(try kind.map { k in
                guard let parsed = ItemQuery.Kind(rawValue: k) else {
                    throw VaultlineError(.invalidArgument, "unknown kind (mail, event, contact, file)", object: k)
                }
                return parsed
            })
        }
        return q
    }

    /// `--at`'s TIME: ISO 8601, or a date (its midnight, UTC).
    static func pointInTime(_ text: String) throws -> Date {
        guard let date = ItemQuery.parseDate(text) else { throw VaultlineError(.invalidArgument, "--at: not a time (ISO 8601 or YYYY-MM-DD)", object: text) }
        return date
    }

    /// `2026-11-03 14:00Z`: item dates are the tenant's, not this machine's zone.
    static func utc(_ date: Date) -> String {
        let text = GraphDate.format(date)
        return text.prefix(10) + " " + text.dropFirst(11).prefix(5) + "Z"
    }
}

/// `find --json`: the matches, each with the snapshots that hold it, and the work done.
struct FindListing: Encodable {
    struct Entry: Encodable {
        var snapshot: String
        var path: String
        var kind: String
        var title: String
        var from: String?
        var to: [String]
        var date: Date?
        var size: UInt64
        var snapshots: [String]
    }

    var matches: [Entry]
    var snapshotsSearched: Int
    var itemsExamined: Int
    var treesRead: Int
    var contentsRead: Int
    var seconds: Double

    init(_ r: ItemFinder.Result) {
        matches = r.matches.map { m in
            Entry(snapshot: m.snapshots[0], path: m.item.path, kind: m.item.kind.rawValue, title: m.item.title, from: m.item.from,
                  to: m.item.to, date: m.item.date, size: m.item.size, snapshots: m.snapshots)
        }
        snapshotsSearched = r.snapshotsSearched
        itemsExamined = r.itemsExamined
        treesRead = r.treesRead
        contentsRead = r.contentsRead
        seconds = r.seconds
    }
}
