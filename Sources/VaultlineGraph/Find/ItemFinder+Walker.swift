import Foundation
import VaultlineCore

extension ItemFinder {
    /// One thread's share of a search: the units of work it took, through every snapshot.
    /// Not thread-safe (its ``BlobOpener`` is its own).
    struct Walker {
        /// An item version that matched, and the snapshots (indexes, newest first) holding it.
        struct Found: Sendable {
            var item: FoundItem
            var snapshots: [Int]
        }

        struct Result: Sendable {
            var matches: [Found]
            var treesRead: Int
            var itemsExamined: Int
            var contentsRead: Int
        }

        let repository: Repository
        let query: ItemQuery
        let opener: BlobOpener
        private var matches: [Found] = []
        /// Items already looked at, by path and version: matched (index into `matches`) or not.
        private var matchIndex: [String: Int] = [:]
        private var rejected: Set<String> = []
        /// Matches found under a directory, by path and tree id: the same tree at the same path
        /// in another snapshot holds the same items.
        private var searched: [String: [Int]] = [:]
        private var treesRead = 0
        private var itemsExamined = 0
        private var contentsRead = 0

        init(repository: Repository, query: ItemQuery, opener: BlobOpener) {
            self.repository = repository
            self.query = query
            self.opener = opener
        }

        var result: Result { Result(matches: matches, treesRead: treesRead, itemsExamined: itemsExamined, contentsRead: contentsRead) }

        /// Reads a snapshot's first two levels: items there are searched here, and each
        /// directory two levels down is handed to `unit` (path, tree) to be walked later.
        mutating func walkTop(tree: String, snapshot: Int, unit: (String, String) -> Void) throws {
            try forEachNode(tree) { walker, node in
                let path = "/" + node.name
                if node.kind == .file {
                    try walker.examine(node, path: path, kind: .file).map { walker.matches[$0].snapshots.append(snapshot) }
                }
                guard node.kind == .dir, let sub = node.subtree, walker.admits(directory: path) else { return }
                try walker.forEachNode(sub) { walker, child in
                    let childPath = path + "/" + child.name
                    if child.kind == .file {
                        try walker.examine(child, path: childPath, kind: .file).map { walker.matches[$0].snapshots.append(snapshot) }
                    } else if child.kind == .dir, let childTree = child.subtree, walker.admits(directory: childPath) {
                        unit(childPath, childTree)
                    }
                }
            }
        }

        /// Searches one unit of work (a directory two levels down) in one snapshot.
        mutating func walk(tree: String, path: String, snapshot: Int) throws {
            for index in try search(tree: tree, path: path, kind: nil) { matches[index].snapshots.append(snapshot) }
        }

        private mutating func forEachNode(_ tree: String, _ body: (inout Walker, TreeNode) throws -> Void) throws {
            try repository.forEachTreePart(tree, using: opener) { part in
                treesRead += 1
                for node in part.nodes { try body(&self, node) }
            }
        }

        /// The matches under directory `path` (stored as tree `tree`), as indexes into `matches`.
        /// `kind`: what the files below hold, once known (below `/users/<upn>/<service>`).
        private mutating func search(tree: String, path: String, kind: ItemQuery.Kind?) throws -> [Int] {
            let key = path + "\u{0}" + tree
            if let known = searched[key] { return known }
            let kind = kind ?? Self.kind(ofDirectory: path)
            var found: [Int] = []
            try forEachNode(tree) { walker, node in
                switch node.kind {
                case .dir:
                    let child = path + "/" + node.name
                    guard let sub = node.subtree, kind != nil || walker.admits(directory: child) else { return }
                    found += try walker.search(tree: sub, path: child, kind: kind)
                case .file:
                    if let index = try walker.examine(node, path: path + "/" + node.name, kind: kind ?? .file) { found.append(index) }
                case .symlink:
                    return
                }
            }
            searched[key] = found
            return found
        }

        /// Whether a file matches: its index in `matches`, or nil. An item version seen before is
        /// not described again.
        private mutating func examine(_ node: TreeNode, path: String, kind: ItemQuery.Kind) throws -> Int? {
            guard query.admits(kind) else { return nil }
            itemsExamined += 1
            let version = node.metadata?["graph.changeKey"] ?? ItemFinder.contentVersion(node)
            let key = path + "\u{0}" + version
            if let index = matchIndex[key] { return index }
            if rejected.contains(key) { return nil }
            guard let item = try describe(node, path: path, kind: kind, version: version), query.matches(item) else {
                rejected.insert(key)
                return nil
            }
            matches.append(Found(item: item, snapshots: []))
            matchIndex[key] = matches.count - 1
            return matches.count - 1
        }

        /// What a stored file is, from its kind and its metadata (or content); nil for an
        /// occurrence of a series, which is its master's (the calendar view's delta gives it as
        /// a stub without a subject).
        private mutating func describe(_ node: TreeNode, path: String, kind: ItemQuery.Kind, version: String) throws -> FoundItem? {
            var item = FoundItem(path: path, kind: kind, title: node.name, from: nil, to: [], size: node.size ?? 0, version: version)
            item.date = node.mtimeNs.map { Date(timeIntervalSince1970: Double($0) / 1e9) }
            switch kind {
            case .mail where node.name.hasSuffix(".eml"):
                guard let text = node.metadata?["graph.item"], let json = try? JSONValue.parse(Array(text.utf8)) else { break }
                ItemFinder.describeMessage(json, into: &item)
            case .event, .contact:
                guard node.name.hasSuffix(".json"), node.damaged == nil else { break }
                contentsRead += 1
                var bytes: [UInt8] = []
                for id in node.content ?? [] {
                    guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree", object: path) }
                    bytes += try repository.readBlob(blob, using: opener)
                }
                guard let json = try? JSONValue.parse(bytes) else { break }
                if kind == .event, json["type"]?.string == "occurrence", json["seriesMasterId"] != nil { return nil }
                if kind == .event { ItemFinder.describeEvent(json, into: &item) } else { ItemFinder.describeContact(json, into: &item) }
            default:
                break
            }
            return item
        }

        /// Whether anything under a directory can match: other users' mailboxes and services
        /// holding only kinds that cannot match are not read.
        func admits(directory path: String) -> Bool {
            let parts = path.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: true)
            if parts.first == "sites" { return query.user == nil && query.admits(.file) }
            guard parts.first == "users", parts.count >= 2 else { return true }
            guard query.admitsUser(String(parts[1])) else { return false }
            guard parts.count >= 3 else { return true }
            return ItemFinder.kind(service: parts[2]).map { query.admits($0) } ?? true
        }

        /// The kind of everything below `/users/<upn>/<service>`; nil above it.
        static func kind(ofDirectory path: String) -> ItemQuery.Kind? {
            let parts = path.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: true)
            guard parts.count >= 3, parts[0] == "users" else { return parts.first == "sites" && parts.count >= 2 ? .file : nil }
            return ItemFinder.kind(service: parts[2]) ?? .file
        }
    }
}
