import Foundation

/// `vaultline repair snapshots`: when data is lost at every site, replaces each snapshot that
/// references lost blobs by one that marks exactly which items are damaged.
///
/// A file with a lost content blob keeps its name, size and metadata but loses its content
/// list and gets `damaged` set (what was lost); a directory whose tree blob is lost gets
/// `damaged` and no subtree. Nothing is zero-filled: restore lists damaged items and does not
/// write them. The new snapshot records the old id in `repairedFrom`, carries the tag
/// `repaired` and one error per damaged item, is marked partial, and is written before the old
/// one is removed (a crash between the two leaves both; running again finishes the job).
public enum SnapshotRepair {
    public struct Rewritten: Codable, Sendable {
        public var old: String
        public var new: String?
        public var damagedItems: [String]
    }

    public struct Result: Codable, Sendable {
        public var indexRebuilt = false
        public var rewritten: [Rewritten] = []
        public var damagedBlobs = 0
        public var readData = false
    }

    /// `readData` also reads every pack, so that damaged (not only missing) data is found;
    /// run `repair --from` first: this is for data no site has any more.
    public static func run(_ repository: Repository, readData: Bool, dryRun: Bool) throws -> Result {
        let lock = try RepositoryLock.acquire(repository.backend, exclusive: true, command: "repair snapshots")
        defer { lock.release() }
        let checker = Checker(repository: repository)
        let report = try checker.run(Checker.Options(readData: readData))
        let damage = checker.damage
        var result = Result()
        result.readData = readData
        result.damagedBlobs = damage.count
        guard !damage.isEmpty else { return result }
        let session = dryRun ? nil : try BackupSession(repository: repository, workers: 1)
        var memo: [String: (id: String, damaged: [String])] = [:]
        var replaced: [(old: String, new: Snapshot)] = []
        for (name, snapshot) in try repository.listSnapshots() {
            let (tree, items) = try rewrite(tree: snapshot.tree, damage: damage, repository: repository, session: session, memo: &memo)
            guard !items.isEmpty else { continue }
            var fresh = snapshot
            fresh.tree = tree
            fresh.repairedFrom = name
            fresh.partial = true
            if !fresh.tags.contains("repaired") { fresh.tags.append("repaired") }
            fresh.errors += items.map { Snapshot.ItemError(path: $0, message: "data lost at every site (repair snapshots)") }
            replaced.append((name, fresh))
            result.rewritten.append(Rewritten(old: name, new: nil, damagedItems: items))
        }
        guard let session else { return result }
        _ = try session.finish()
        for (i, (old, fresh)) in replaced.enumerated() {
            let new = try session.commit(fresh)
            result.rewritten[i].new = new
            try repository.backend.delete(.snapshot, old)
        }
        // The index still names the lost packs: rebuild it from the packs that are there.
        if report.errors.contains(where: { $0.hasPrefix("packs/") || $0.hasPrefix("index/") }) {
            _ = try IndexRepair.rebuild(repository)
            result.indexRebuilt = true
            try repository.loadIndex()
        }
        return result
    }

    /// The id of the rewritten tree (the same id when nothing below it is damaged) and the
    /// damaged items below it, as paths relative to it.
    private static func rewrite(
        tree id: String, damage: DamageMap, repository: Repository, session: BackupSession?,
        memo: inout [String: (id: String, damaged: [String])]
    ) throws -> (String, [String]) {
        if let known = memo[id] { return known }
        let tree = try repository.loadTree(id)
        var nodes: [TreeNode] = []
        var damaged: [String] = []
        for var node in tree.nodes {
            let path = "/" + node.name
            if let content = node.content {
                let lost = content.filter { damage.contains(hex: $0) }.count
                if lost > 0 {
                    node.content = nil
                    node.damaged = "\(lost) of \(content.count) content blobs lost"
                    damaged.append(path)
                }
            }
            if let sub = node.subtree {
                var readable = !damage.contains(hex: sub)
                if readable {
                    do {
                        let (newSub, below) = try rewrite(tree: sub, damage: damage, repository: repository, session: session, memo: &memo)
                        node.subtree = newSub
                        damaged += below.map { path + $0 }
                    } catch {
                        readable = false
                    }
                }
                if !readable {
                    node.subtree = nil
                    node.damaged = "directory contents lost (its tree blob is damaged)"
                    damaged.append(path + "/")
                }
            }
            nodes.append(node)
        }
        var newID = id
        if !damaged.isEmpty, let session {
            newID = try TreeWriter.write(nodes, store: session.store).hex
        }
        memo[id] = (newID, damaged)
        return (newID, damaged)
    }
}
