import ArgumentParser
import Foundation
import VaultlineCore

struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List snapshots.")

    @OptionGroup var repository: RepositoryOptions

    @Option(help: "Release a flagged snapshot after looking at it: forget stops holding the unflagged one before it.")
    var release: String?

    func run() throws {
        try reporting {
            let repo = try repository.open()
            if let release {
                let new = try repo.releaseFlag(release)
                print("released; the snapshot's id is now \(new.prefix(8))")
                return
            }
            let all = try repo.listSnapshots()
            if repository.json {
                try printJSON(all.map { SnapshotListing(id: $0.id, snapshot: $0.snapshot) })
                return
            }
            print("ID        Time                 Host            Tags        Size        Paths")
            for (id, s) in all {
                let tags = s.tags.joined(separator: ",")
                let flag = (s.partial ? " (partial)" : "") + (s.isFlagged ? " FLAGGED: \(s.signal?.reason ?? "possible ransomware")" : "")
                    + (s.released == true ? " (flag released)" : "")
                print("\(id.prefix(8))  \(formatDate(s.time))  \(s.host.padding(toLength: 14, withPad: " ", startingAt: 0))  \(tags.padding(toLength: 10, withPad: " ", startingAt: 0))  \(formatBytes(s.stats.totalBytes).padding(toLength: 10, withPad: " ", startingAt: 0))  \(s.paths.joined(separator: " "))\(flag)")
            }
            print("\(all.count) snapshots")
        }
    }
}

struct SnapshotListing: Encodable {
    var id: String
    var snapshot: Snapshot
}

/// Splits "SNAPSHOT[:PATH]".
func splitReference(_ ref: String) -> (snapshot: String, path: String) {
    guard let colon = ref.firstIndex(of: ":") else { return (ref, "/") }
    return (String(ref[..<colon]), String(ref[ref.index(after: colon)...]))
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the files of a snapshot: SNAPSHOT[:PATH].")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: "Snapshot id, prefix or 'latest', optionally followed by :PATH.")
    var reference: String

    @Flag(name: .long, help: "Recurse into subdirectories.")
    var recursive = false

    func run() throws {
        try reporting {
            let repo = try repository.open()
            try repo.loadIndex()
            let (ref, path) = splitReference(reference)
            let snapshot = try repo.loadSnapshot(try repo.resolveSnapshot(ref))
            let (tree, node) = try Restorer(repository: repo).resolve(snapshot: snapshot, path: path)
            var rows: [LsRow] = []
            let base = path.hasSuffix("/") ? String(path.dropLast()) : path
            func visit(_ tree: Tree, _ prefix: String) throws {
                for n in tree.nodes {
                    rows.append(LsRow(n, path: prefix + "/" + n.name))
                    if recursive, n.kind == .dir, let sub = n.subtree { try visit(try repo.loadTree(sub), prefix + "/" + n.name) }
                }
            }
            if let tree { try visit(tree, base) } else if let node { rows.append(LsRow(node, path: base)) }
            if repository.json { try printJSON(rows); return }
            for r in rows {
                let mode = String(r.mode ?? 0, radix: 8)
                let size = r.kind == "file" ? String(r.size ?? 0) : "-"
                print("\(r.kind.padding(toLength: 7, withPad: " ", startingAt: 0)) \(mode.padding(toLength: 5, withPad: " ", startingAt: 0)) \(size.padding(toLength: 12, withPad: " ", startingAt: 0)) \(r.path)\(r.linkTarget.map { " -> \($0)" } ?? "")")
            }
        }
    }
}

struct LsRow: Encodable {
    var path: String
    var kind: String
    var mode: UInt32?
    var size: UInt64?
    var mtime: Date?
    var linkTarget: String?
    var blobs: Int?

    init(_ n: TreeNode, path: String) {
        self.path = path
        kind = n.kind.rawValue
        mode = n.mode
        size = n.size
        mtime = n.mtimeNs.map { Date(timeIntervalSince1970: Double($0) / 1e9) }
        linkTarget = n.linkTarget
        blobs = n.content?.count
    }
}
