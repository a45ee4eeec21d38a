import Foundation
import NIOCore
import VaultlineCore

/// OneDrive and SharePoint document libraries: drive delta from the root, content streamed from
/// each file's download URL into the chunker.
extension M365Backup {
    struct DriveEntry: Sendable {
        var name: String
        var parentId: String?
        var isFolder: Bool
        var node: TreeNode?
    }

    func backupSites(state: M365State, _ ctx: RunContext) async throws -> (DirBuilder, [String: String]) {
        var dir = DirBuilder()
        var links: [String: String] = [:]
        var sites: [(id: String, name: String)] = []
        _ = try await client.pages(client.url("sites") + "?search=*") { page in
            for s in page { if let id = s["id"]?.string { sites.append((id, s["name"]?.string ?? s["displayName"]?.string ?? id)) } }
        }
        for site in sites {
            var siteDir = DirBuilder()
            var drives: [(String, String)] = []
            _ = try await client.pages(client.url("sites", site.id, "drives")) { page in
                for d in page { if let id = d["id"]?.string { drives.append((id, d["name"]?.string ?? id)) } }
            }
            for (driveId, name) in drives {
                let (d, link) = try await backupDrive(driveId: driveId, link: state.libraries[driveId], path: ["sites", safeName(site.name), safeName(name)], ctx)
                siteDir.dirs[safeName(name)] = d
                if let link { links[driveId] = link }
            }
            siteDir.metadata = ["graph.id": site.id]
            dir.dirs[safeName(site.name)] = siteDir
        }
        return (dir, links)
    }

    func backupDrive(driveId: String, link: String?, path: [String], _ ctx: RunContext) async throws -> (DirBuilder, String?) {
        var entries: [String: DriveEntry] = [:]
        var rootId: String?
        if let tree = try parentTree(path, ctx) {
            rootId = nil
            try collectDrive(tree, parentId: nil, into: &entries, root: &rootId)
        }
        // The parent's files whose data was lost at every site (before this run stores anything:
        // a node stored by this run has blobs the index does not list yet).
        let lost = entries.compactMap { id, e in e.node.flatMap { isIntact($0) ? nil : (id, $0) } }
        let initial = client.url("drives", driveId, "root", "delta")
        let round = try await deltaRound(link: link, initial: initial, mailbox: nil, what: path) { page in
            try await applyDrive(page, entries: &entries, root: &rootId, path: path, ctx)
        }
        if let listed = round.listed { entries = entries.filter { listed.contains($0.key) } }
        // Those the round left as they were are fetched again, changed or not: no delta lists them.
        try await healDrive(driveId: driveId, lost: lost.filter { entries[$0.0]?.node == $0.1 }.map(\.0).sorted(), entries: &entries, path: path, ctx)
        // Assemble: every entry whose chain of parents reaches the root.
        var dir = DirBuilder()
        dir.metadata = ["graph.id": rootId ?? "", "graph.driveId": driveId]
        func relPath(_ id: String) -> [String]? {
            var out: [String] = []
            var cur = id
            for _ in 0..<256 {
                if cur == rootId { return out }
                guard let e = entries[cur], let p = e.parentId else { return nil }
                out.insert(safeName(e.name), at: 0)
                cur = p
            }
            return nil
        }
        for (id, e) in entries where id != rootId {
            guard let p = relPath(id) else { continue }
            if e.isFolder {
                var d = dir[p]
                d.metadata = ["graph.id": id, "graph.parentId": e.parentId ?? ""]
                dir[p] = d
            } else if var node = e.node {
                node.name = p.last ?? node.name
                var parentDir = dir[Array(p.dropLast())]
                parentDir.files[node.name] = node
                dir[Array(p.dropLast())] = parentDir
            }
        }
        return (dir, round.link)
    }

    /// Fetches `lost` files again: their data was lost at every site (marked damaged by
    /// `repair snapshots`, or blobs the index no longer has).
    private func healDrive(driveId: String, lost: [String], entries: inout [String: DriveEntry], path: [String], _ ctx: RunContext) async throws {
        var items: [(String, JSONValue)] = []
        for id in lost {
            do {
                items.append((id, try await client.json(client.url("drives", driveId, "items", id))))
            } catch let e as GraphError where e.kind == .notFound {
                entries[id] = nil  // deleted since
            } catch let e as GraphError {
                recordError((path + [entries[id]?.name ?? id]).joined(separator: "/"), e)
            }
        }
        try await fetchFiles(items, entries: &entries, path: path, ctx)  // a file that fails keeps its damaged node
    }

    private func collectDrive(_ tree: Tree, parentId: String?, into entries: inout [String: DriveEntry], root: inout String?) throws {
        for node in tree.nodes {
            guard let id = node.metadata?["graph.id"] else { continue }
            let parent = node.metadata?["graph.parentId"].flatMap { $0.isEmpty ? nil : $0 } ?? parentId
            if node.kind == .dir, let sub = node.subtree {
                entries[id] = DriveEntry(name: node.name, parentId: parent, isFolder: true, node: nil)
                try collectDrive(try loadParentTree(sub), parentId: id, into: &entries, root: &root)
            } else if node.kind == .file {
                entries[id] = DriveEntry(name: node.name, parentId: parent, isFolder: false, node: node)
            }
        }
        // The drive's own directory names its root.
        if root == nil, parentId == nil { root = tree.nodes.first?.metadata?["graph.parentId"] }
    }

    private func applyDrive(_ page: [JSONValue], entries: inout [String: DriveEntry], root: inout String?, path: [String], _ ctx: RunContext) async throws {
        var toFetch: [(String, JSONValue)] = []
        for item in page {
            guard let id = item["id"]?.string else { continue }
            if item["deleted"] != nil || item["@removed"] != nil {
                entries[id] = nil
                continue
            }
            if item["root"] != nil {
                root = id
                continue
            }
            let name = item["name"]?.string ?? id
            let parent = item["parentReference"]?["id"]?.string
            let isFolder = item["folder"] != nil
            let old = entries[id]
            entries[id] = DriveEntry(name: name, parentId: parent, isFolder: isFolder, node: old?.node)
            guard !isFolder else { continue }
            let cTag = item["cTag"]?.string ?? item["eTag"]?.string ?? ""
            if let node = old?.node, node.metadata?["graph.cTag"] == cTag, !cTag.isEmpty {
                // Renamed or moved, content unchanged: keep the blobs, refresh the metadata.
                var n = node
                n.metadata?["graph.parentId"] = parent ?? ""
                n.metadata?["graph.item"] = String(decoding: item.encoded(), as: UTF8.self)
                entries[id]?.node = n
                continue
            }
            toFetch.append((id, item))
        }
        try await fetchFiles(toFetch, entries: &entries, path: path, ctx)
    }

    /// Downloads `items` (several at once) into `entries`. A file gone since it was listed is
    /// dropped; one that fails is recorded and keeps its previous version, if any (without one
    /// it is left out).
    private func fetchFiles(_ items: [(String, JSONValue)], entries: inout [String: DriveEntry], path: [String], _ ctx: RunContext) async throws {
        let results = try await fetchAll(items) { id, item in try await self.fetchFile(id: id, item: item, ctx) }
        for (id, r) in results {
            switch r {
            case .success(let node): entries[id]?.node = node
            case .failure(let e):
                if e.kind == .notFound { entries[id] = nil; continue }
                recordError((path + [entries[id]?.name ?? id]).joined(separator: "/"), e)
                if entries[id]?.node == nil { entries[id] = nil }
            }
        }
    }

    private func fetchFile(id: String, item: JSONValue, _ ctx: RunContext) async throws -> TreeNode {
        guard let url = item["@microsoft.graph.downloadUrl"]?.string else {
            throw GraphError(.malformed, "file without a download URL", url: id)
        }
        var metadata = [
            "graph.id": id,
            "graph.parentId": item["parentReference"]?["id"]?.string ?? "",
            "graph.cTag": item["cTag"]?.string ?? item["eTag"]?.string ?? "",
        ]
        var json = item.object ?? [:]
        json["@microsoft.graph.downloadUrl"] = nil  // a short-lived credential, not metadata
        metadata["graph.item"] = String(decoding: JSONValue.object(json).encoded(), as: UTF8.self)
        let expected = item["size"]?.int64
        return try await storeContent(name: item["name"]?.string ?? id, metadata: metadata,
                                      modified: Self.date(item["lastModifiedDateTime"]?.string), bulk: true, { feed in
            let n = try await client.download(url, expectedSize: expected) { try await feed.append($0) }
            if let expected, n != expected {
                throw GraphError(.malformed, "downloaded \(n) bytes, Graph listed \(expected)", url: url)
            }
        }, ctx)
    }
}
