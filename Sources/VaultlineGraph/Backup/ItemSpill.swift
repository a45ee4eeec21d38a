import Foundation
import VaultlineCore

/// One collection's items (a mail folder's messages, a calendar's events, a drive's files and
/// folders) while a run applies a delta round to them: the parent snapshot's nodes, then the
/// round's changes, in a ``SpillTable`` that keeps a small cache in memory and the rest on disk.
/// What a run holds of a collection therefore does not grow with the collection; its tree is
/// written from here in name order (``TreeWriter``), a part at a time.
struct ItemSpill: Sendable {
    /// A parent snapshot's item whose data was lost at every site: fetched again.
    static let lost = 1
    /// Listed by a full enumeration (after an expired delta link): the others are gone.
    static let listed = 2

    struct Item: Sendable {
        var id: String
        var parent: String
        var name: String
        var tag: String
        var isFolder: Bool
        var flags: Int
        var node: TreeNode?
    }

    let table: SpillTable

    init(what: String) throws {
        table = try SpillTable(what: what)
    }

    func put(_ item: Item) throws {
        try table.put(.init(id: item.id, parent: item.parent, name: item.name, tag: item.tag, isFolder: item.isFolder,
                            flags: item.flags, body: item.node.map(Self.encode)))
    }

    func get(_ id: String) throws -> Item? {
        try table.get(id).map(Self.item)
    }

    func remove(_ id: String) throws { try table.remove(id) }

    func mark(_ id: String, _ flags: Int) throws { try table.addFlags(flags, to: id) }

    /// After a full enumeration: drops every item it did not list.
    func removeUnlisted() throws { try table.removeAll(without: Self.listed) }

    func ids(with flag: Int) throws -> [String] { try table.ids(with: flag) }

    /// Every item under `parent`, in name order.
    func children(of parent: String, _ body: (Item) throws -> Void) throws {
        try table.children(of: parent) { try body(try Self.item($0)) }
    }

    private static func item(_ row: SpillTable.Row) throws -> Item {
        Item(id: row.id, parent: row.parent, name: row.name, tag: row.tag, isFolder: row.isFolder, flags: row.flags,
             node: try row.body.map { body in
                 do { return try NodeCoding.decode(body) } catch {
                     throw VaultlineError(.corrupt, "a spilled item does not decode", object: row.id)
                 }
             })
    }

    private static func encode(_ node: TreeNode) -> [UInt8] { NodeCoding.encode(node) }
}

extension M365Backup {
    /// Puts the file nodes of a parent snapshot's directory (read a part at a time) into
    /// `items`, as children of `parent` (nil: the parent each node names), keyed by their Graph
    /// id. `tagKey`: the metadata that holds the item's version. Returns the directory's
    /// subdirectory nodes.
    @discardableResult
    func spillParentFiles(tree id: String, parent: String? = "", tagKey: String, into items: ItemSpill) throws -> [TreeNode] {
        var dirs: [TreeNode] = []
        try forEachParentTreePart(id) { tree in
            for node in tree.nodes {
                if node.kind == .dir { dirs.append(node); continue }
                guard node.kind == .file, let gid = node.metadata?["graph.id"] else { continue }
                try items.put(.init(id: gid, parent: parent ?? node.metadata?["graph.parentId"] ?? "", name: node.name, tag: node.metadata?[tagKey] ?? "", isFolder: false,
                                    flags: isIntact(node) ? 0 : ItemSpill.lost, node: node))
            }
        }
        return dirs
    }

    /// The parent snapshot's directory `tree` as this run's, when a delta round changed nothing
    /// in it: every file intact (nothing to fetch again) and its subdirectories exactly `extra`
    /// (stored by this run, unchanged). Nil when anything differs. An untouched folder costs a
    /// read of its tree, not a spill and a tree written again.
    func unchangedParent(tree id: String, extra: [String: DirBuilder], metadata: [String: String]?) throws -> DirBuilder? {
        guard let treeID = Bytes32(hex: id) else { return nil }
        let (extraNodes, extraItems, extraBytes) = Self.directoryNodes(extra)
        var files = 0
        var bytes: UInt64 = 0
        var dirs: [TreeNode] = []
        var intact = true
        try forEachParentTreePart(id) { tree in
            for node in tree.nodes where intact {
                if node.kind == .dir { dirs.append(node); continue }
                intact = isIntact(node)
                files += 1
                bytes += node.size ?? 0
            }
        }
        guard intact, dirs == extraNodes else { return nil }
        collectionCounts.withLock { $0.kept += 1 }
        var out = DirBuilder(metadata: metadata)
        out.stored = (treeID, files + extraItems, bytes + extraBytes)
        return out
    }

    /// The parent snapshot's directory `tree` and everything below it as this run's, when a
    /// delta round listed nothing in it (a drive): every file at every depth intact. Nil when
    /// one is not. Costs a read of the trees, not a spill and every tree written again.
    func unchangedParentTree(_ id: String, metadata: [String: String]?) throws -> DirBuilder? {
        guard let treeID = Bytes32(hex: id), let totals = try parentTreeTotals(id, requireIntact: true) else { return nil }
        collectionCounts.withLock { $0.kept += 1 }
        var out = DirBuilder(metadata: metadata)
        out.stored = (treeID, totals.files, totals.bytes)
        return out
    }

    /// Files and bytes below the parent snapshot's directory `id`; nil if `requireIntact` and a
    /// file there is not.
    func parentTreeTotals(_ id: String, requireIntact: Bool, depth: Int = 0) throws -> (files: Int, bytes: UInt64)? {
        guard depth < 256 else { return nil }
        var files = 0
        var bytes: UInt64 = 0
        var intact = true
        var subtrees: [String] = []
        try forEachParentTreePart(id) { tree in
            for node in tree.nodes where intact {
                if node.kind == .dir {
                    guard let sub = node.subtree else { intact = false; continue }
                    subtrees.append(sub)
                    continue
                }
                intact = !requireIntact || isIntact(node)
                files += 1
                bytes += node.size ?? 0
            }
        }
        guard intact else { return nil }
        for sub in subtrees {
            guard let below = try parentTreeTotals(sub, requireIntact: requireIntact, depth: depth + 1) else { return nil }
            files += below.files
            bytes += below.bytes
        }
        return (files, bytes)
    }

    /// Directory nodes for stored subdirectories, in name order, and the items and bytes below.
    static func directoryNodes(_ dirs: [String: DirBuilder]) -> (nodes: [TreeNode], items: Int, bytes: UInt64) {
        var nodes: [TreeNode] = []
        var items = 0
        var bytes: UInt64 = 0
        for (name, d) in dirs {
            guard let stored = d.stored else { continue }
            var node = TreeNode(name: name, kind: .dir)
            node.subtree = stored.tree.hex
            node.metadata = d.metadata
            node.mode = 0o755
            nodes.append(node)
            items += stored.items
            bytes += stored.bytes
        }
        return (Tree(nodes: nodes).nodes, items, bytes)
    }

    /// A parent snapshot's directory, a tree part at a time (``Repository/forEachTreePart``).
    func forEachParentTreePart(_ id: String, _ body: (Tree) throws -> Void) throws {
        try withOpener { try repository.forEachTreePart(id, using: $0, body) }
    }

    /// Stores the directory of the items under `parent` (and `extra` nodes beside them, stored
    /// subfolders), a part at a time on a pool thread; returns it sealed. Folder items (a
    /// drive's) become directories of their own children, written depth first.
    func writeSpilled(_ items: ItemSpill, parent: String = "", extra: [String: DirBuilder] = [:], metadata: [String: String]?,
                      _ ctx: RunContext) async throws -> DirBuilder {
        let session = ctx.session
        let (sortedExtra, count, bytes) = Self.directoryNodes(extra)
        let written = try await ctx.pool.run { _ in
            try Self.writeDirectory(items, parent: parent, extra: sortedExtra, depth: 0, store: session.store)
        }
        var out = DirBuilder(metadata: metadata)
        out.stored = (written.tree, written.items + count, written.bytes + bytes)
        return out
    }

    /// Writes the directory of `parent`'s items, with `extra` (sorted) merged in by name; a
    /// folder item is written first as a directory of its own children.
    private static func writeDirectory(_ items: ItemSpill, parent: String, extra: [TreeNode], depth: Int,
                                       store: @escaping (Tree) throws -> Bytes32) throws -> (tree: Bytes32, items: Int, bytes: UInt64) {
        var writer = TreeWriter(store: store)
        var extra = extra[...]
        var count = 0
        var bytes: UInt64 = 0
        var last: String?
        try items.children(of: parent) { item in
            // Two items of one name (Graph allows none, but a rename between pages can): the
            // second gets the end of its id.
            let name = item.name == last ? item.name + "~" + safeName(String(item.id.suffix(12))) : item.name
            last = item.name
            var node: TreeNode
            if item.isFolder {
                guard depth < 256 else { return }
                let sub = try writeDirectory(items, parent: item.id, extra: [], depth: depth + 1, store: store)
                node = TreeNode(name: name, kind: .dir)
                node.subtree = sub.tree.hex
                node.metadata = ["graph.id": item.id, "graph.parentId": item.parent]
                node.mode = 0o755
                count += sub.items
                bytes += sub.bytes
            } else {
                guard let file = item.node else { return }
                node = file
                node.name = name
                count += 1
                bytes += file.size ?? 0
            }
            while let e = extra.first, e.name.utf8.lexicographicallyPrecedes(node.name.utf8) {
                try writer.add(e)
                extra.removeFirst()
            }
            try writer.add(node)
        }
        for e in extra { try writer.add(e) }
        return (try writer.finish(), count, bytes)
    }
}
