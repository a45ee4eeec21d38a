import Foundation
import Synchronization
import VaultlineCore

/// Searches snapshots for items by what an administrator knows of them (subject, sender,
/// recipient, date, name, path), not by Graph id: mail is stored under ids, so this is how
/// "the message from Megan about the Q3 budget" is found. `vaultline find`.
///
/// What an item is follows from where it is stored (docs/GRAPH.md, "The tree"): `.eml` under
/// `/users/<upn>/mail/`, events under `calendar/` and `calendars/`, contacts under `contacts/`;
/// everything else (OneDrive, libraries, a directory backup) is a file. Mail is described by the
/// Graph JSON in its node's metadata, so no message is read; an event or contact is read (its
/// content is its JSON) only when events or contacts can match.
///
/// Across snapshots, a directory whose tree is the one already searched at the same path in
/// another snapshot is not read again: its results are the same. Ten snapshots of a tenant that
/// changes by a percent a day cost little more than one.
public final class ItemFinder {
    /// One item version and the snapshots that hold it.
    public struct Match: Sendable {
        public var item: FoundItem
        /// Ids of the snapshots holding this version at this path, newest first.
        public var snapshots: [String]
        /// Time of the newest and the oldest of them.
        public var newest: Date
        public var oldest: Date
    }

    public struct Result: Sendable {
        public var matches: [Match]
        public var snapshotsSearched: Int
        /// Tree blobs read, items looked at and event or contact contents read (the work done).
        public var treesRead: Int
        public var itemsExamined: Int
        public var contentsRead: Int
        public var seconds: Double
    }

    let repository: Repository
    let query: ItemQuery
    /// Threads searching at once (one per core by default).
    public var workers = ProcessInfo.processInfo.activeProcessorCount

    public init(repository: Repository, query: ItemQuery) {
        self.repository = repository
        self.query = query
    }

    /// Searches the given snapshots. Matches are ordered by date, newest first (items without a
    /// date last), then by path.
    ///
    /// The work is split by mailbox and site (each `/users/<upn>` and `/sites/<site>`, or each
    /// directory two levels down in a directory backup): one walker takes one of them through
    /// every snapshot, newest first, so that what it found in one snapshot is not looked at again
    /// in the next; walkers run on `workers` threads.
    public func run(snapshots: [(id: String, snapshot: Snapshot)]) throws -> Result {
        let start = Date()
        let ordered = snapshots.sorted { $0.snapshot.time > $1.snapshot.time }
        // The top two levels, read here; below them, units of work.
        var top = Walker(repository: repository, query: query, opener: BlobOpener(key: repository.key))
        var unitTrees: [String: [(snapshot: Int, tree: String)]] = [:]
        var unitPaths: [String] = []
        for (index, entry) in ordered.enumerated() {
            try top.walkTop(tree: entry.snapshot.tree, snapshot: index) { path, tree in
                if unitTrees[path] == nil { unitPaths.append(path) }
                unitTrees[path, default: []].append((index, tree))
            }
        }
        var results = [top.result]
        let shared = Mutex<(next: Int, results: [Walker.Result], failure: (any Error)?)>((0, [], nil))
        let threads = max(1, min(workers, unitPaths.count))
        let repository = repository, query = query, units = unitTrees, unitOrder = unitPaths
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            var walker = Walker(repository: repository, query: query, opener: BlobOpener(key: repository.key))
            while true {
                let next: Int? = shared.withLock { state in
                    guard state.failure == nil, state.next < unitOrder.count else { return nil }
                    state.next += 1
                    return state.next - 1
                }
                guard let next else { break }
                let path = unitOrder[next]
                do {
                    for (snapshot, tree) in units[path] ?? [] { try walker.walk(tree: tree, path: path, snapshot: snapshot) }
                } catch {
                    shared.withLock { if $0.failure == nil { $0.failure = error } }
                    break
                }
            }
            let result = walker.result
            shared.withLock { $0.results.append(result) }
        }
        let (_, finished, failure) = shared.withLock { $0 }
        if let failure { throw failure }
        results += finished

        var matches: [Match] = []
        for result in results {
            for found in result.matches {
                let held = found.snapshots.map { ordered[$0] }
                matches.append(Match(item: found.item, snapshots: held.map(\.id), newest: held.map(\.snapshot.time).max() ?? .distantPast,
                                     oldest: held.map(\.snapshot.time).min() ?? .distantPast))
            }
        }
        matches.sort { a, b in
            switch (a.item.date, b.item.date) {
            case let (x?, y?) where x != y: return x > y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return (a.item.path, a.newest) < (b.item.path, b.newest)
            }
        }
        return Result(matches: matches, snapshotsSearched: snapshots.count, treesRead: results.reduce(0) { $0 + $1.treesRead },
                      itemsExamined: results.reduce(0) { $0 + $1.itemsExamined }, contentsRead: results.reduce(0) { $0 + $1.contentsRead },
                      seconds: Date().timeIntervalSince(start))
    }

    /// The kind of item a service folder under `/users/<upn>/` holds.
    static func kind(service: Substring) -> ItemQuery.Kind? {
        switch service {
        case "mail": .mail
        case "calendar", "calendars": .event
        case "contacts": .contact
        case "onedrive": .file
        default: nil
        }
    }

    static func describeMessage(_ json: JSONValue, into item: inout FoundItem) {
        if let subject = json["subject"]?.string { item.title = subject }
        item.from = address(json["from"]) ?? address(json["sender"])
        for field in ["toRecipients", "ccRecipients", "bccRecipients"] {
            item.to += (json[field]?.array ?? []).compactMap(address)
        }
        if let received = json["receivedDateTime"]?.string.flatMap({ GraphDate.parse($0) }) { item.date = received }
    }

    static func describeEvent(_ json: JSONValue, into item: inout FoundItem) {
        if let subject = json["subject"]?.string { item.title = subject }
        item.from = address(json["organizer"])
        item.to = (json["attendees"]?.array ?? []).compactMap(address)
        if let start = json["start"]?["dateTime"]?.string.flatMap({ GraphDate.parse($0) }) { item.date = start }
    }

    static func describeContact(_ json: JSONValue, into item: inout FoundItem) {
        if let name = json["displayName"]?.string, !name.isEmpty { item.title = name }
        item.to = (json["emailAddresses"]?.array ?? []).compactMap { entry in
            entry["address"]?.string.map { address in entry["name"]?.string.map { "\($0) <\(address)>" } ?? address }
        }
        item.date = nil
    }

    /// "Name <address>" of a Graph recipient (`{"emailAddress": {"name", "address"}}`).
    static func address(_ recipient: JSONValue?) -> String? {
        guard let email = recipient?["emailAddress"], let address = email["address"]?.string else { return nil }
        guard let name = email["name"]?.string, !name.isEmpty, name != address else { return address }
        return "\(name) <\(address)>"
    }

    /// A file's version: a digest of its content blob ids (equal content, equal version).
    static func contentVersion(_ node: TreeNode) -> String {
        let ids = node.content ?? []
        guard ids.count > 1 else { return "\(node.size ?? 0):" + (ids.first ?? "") }
        return "\(node.size ?? 0):" + SHA256.hash(Array(ids.joined(separator: ",").utf8)).hex
    }
}
