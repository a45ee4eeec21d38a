import Foundation
import NIOCore
import VaultlineCore

/// OneDrive and SharePoint document libraries: drive delta from the root, content streamed from
/// each file's download URL into the chunker.
extension M365Backup {
    /// A drive's turn: its directory, the round's delta link, and the files that failed (tried
    /// again next run, by id, whether or not a delta lists them).
    struct DriveRound {
        var dir: DirBuilder
        var link: String?
        var failed: [String]
    }

    /// Every document library of every site; returns the sites' directory, each library's delta
    /// link and the files to try again next run, by drive id.
    func backupSites(state: M365State, _ ctx: RunContext) async throws -> (DirBuilder, [String: String], [String: [String]]) {
        var dir = DirBuilder()
        var links: [String: String] = [:]
        var retries: [String: [String]] = [:]
        var sites: [(id: String, name: String)] = []
        _ = try await client.pages(client.url("sites") + "?search=*") { page in
            for s in page { if let id = s["id"]?.string { sites.append((id, s["name"]?.string ?? s["displayName"]?.string ?? id)) } }
        }
        if let wanted = options.siteNames.map({ Set($0.map { safeName($0.lowercased()) }) }) {
            sites = sites.filter { wanted.contains(safeName($0.name).lowercased()) }
        }
        for site in sites {
            var siteDir = DirBuilder()
            var drives: [(String, String)] = []
            _ = try await client.pages(client.url("sites", site.id, "drives")) { page in
                for d in page { if let id = d["id"]?.string { drives.append((id, d["name"]?.string ?? id)) } }
            }
            for (driveId, name) in drives {
                let path = ["sites", safeName(site.name), safeName(name)]
                let outcome = try await turn(path, ctx) {
                    try await scheduled(CollectionKey(.library, user: nil, id: driveId)) {
                        try await backupDrive(driveId: driveId, link: state.libraries[driveId], retry: state.libraryRetries?[driveId] ?? [], path: path, ctx)
                    }
                }
                let drive: DriveRound
                switch outcome {
                case .done(let round?): drive = round
                case .done(nil):
                    // Not due: as the parent snapshot had it, with its link and retries.
                    guard let carried = try carried(path, ctx) else { continue }
                    drive = DriveRound(dir: carried, link: state.libraries[driveId], failed: state.libraryRetries?[driveId] ?? [])
                case .absent: continue
                case .failed(let carried):
                    // As the parent snapshot had it, with its link and retries.
                    guard let carried else { continue }
                    drive = DriveRound(dir: carried, link: state.libraries[driveId], failed: state.libraryRetries?[driveId] ?? [])
                }
                siteDir.dirs[safeName(name)] = drive.dir
                if let link = drive.link { links[driveId] = link }
                if !drive.failed.isEmpty { retries[driveId] = drive.failed }
            }
            siteDir.metadata = ["graph.id": site.id]
            dir.dirs[safeName(site.name)] = siteDir
        }
        return (dir, links, retries)
    }

    func backupDrive(driveId: String, link: String?, retry: [String], path: [String], _ ctx: RunContext) async throws -> DriveRound {
        // The drive's files and folders by Graph id, the parent snapshot's first, on disk past a
        // small cache: a library of a million files costs no more memory than one of ten.
        // Read when the round first lists an item: most drives of an incremental run list none.
        let entries = try ItemSpill(what: path.joined(separator: "/"))
        let parent = try parentNode(path, ctx)
        var rootId = parent?.metadata?["graph.id"].flatMap { $0.isEmpty ? nil : $0 }
        var loaded = false
        func load() throws {
            guard !loaded else { return }
            loaded = true
            if let tree = parent?.subtree { try spillParentDrive(tree: tree, folder: rootId, into: entries, root: &rootId, depth: 0) }
        }
        let initial = client.url("drives", driveId, "root", "delta")
        var failed: [String] = []
        var retry = Set(retry)
        let round = try await deltaRound(link: link, initial: initial, mailbox: nil, what: path) { page, full in
            if full || !page.isEmpty { try load() }
            if !retry.isEmpty { for item in page { if let id = item["id"]?.string { retry.remove(id) } } }
            failed += try await applyDrive(page, full: full, driveId: driveId, entries: entries, root: &rootId, path: path, ctx)
        }
        if !loaded, retry.isEmpty, let tree = parent?.subtree, let same = try unchangedParentTree(tree, metadata: parent?.metadata) {
            return DriveRound(dir: same, link: round.link, failed: [])
        }
        try load()
        if round.full { try entries.removeUnlisted() }
        // Files that failed last run and that this round did not list again: nothing else would
        // bring them back until they change.
        var again: [JSONValue] = []
        for id in retry.sorted() {
            do {
                again.append(try await client.json(client.url("drives", driveId, "items", id)))
            } catch let e as GraphError where e.code == .notFound {
                try entries.remove(id)  // deleted since
            } catch let e as GraphError {
                recordError((path + [try entries.get(id)?.name ?? id]).joined(separator: "/"), e)
                failed.append(id)
            }
        }
        failed += try await applyDrive(again, full: false, driveId: driveId, entries: entries, root: &rootId, path: path, ctx)
        // The parent's files whose data was lost at every site and which the round left as they
        // were: no delta lists them, so they are fetched again, changed or not.
        try await healDrive(driveId: driveId, lost: try entries.ids(with: ItemSpill.lost), entries: entries, path: path, ctx)
        // Every entry whose chain of parents reaches the root, a directory at a time.
        let metadata = ["graph.id": rootId ?? "", "graph.driveId": driveId]
        let dir = try await writeSpilled(entries, parent: rootId ?? "\u{1}no root", metadata: metadata, ctx)
        return DriveRound(dir: dir, link: round.link, failed: failed)
    }

    /// Fetches `lost` files again: their data was lost at every site (marked damaged by
    /// `repair snapshots`, or blobs the index no longer has).
    private func healDrive(driveId: String, lost: [String], entries: ItemSpill, path: [String], _ ctx: RunContext) async throws {
        var items: [(String, JSONValue)] = []
        for id in lost {
            do {
                items.append((id, try await client.json(client.url("drives", driveId, "items", id))))
            } catch let e as GraphError where e.code == .notFound {
                try entries.remove(id)  // deleted since
            } catch let e as GraphError {
                recordError((path + [try entries.get(id)?.name ?? id]).joined(separator: "/"), e)
            }
        }
        _ = try await fetchFiles(items, driveId: driveId, entries: entries, path: path, ctx)  // a file that fails keeps its damaged node, found again next run
    }

    /// The parent snapshot's drive directory `tree` (the folder `folder`, nil: the root, named
    /// by its nodes) into `entries`, folders included.
    private func spillParentDrive(tree: String, folder: String?, into entries: ItemSpill, root: inout String?, depth: Int) throws {
        guard depth < 256 else { return }
        let dirs = try spillParentFiles(tree: tree, parent: folder, tagKey: "graph.cTag", into: entries)
        for node in dirs {
            guard let id = node.metadata?["graph.id"], let sub = node.subtree else { continue }
            let parent = node.metadata?["graph.parentId"].flatMap { $0.isEmpty ? nil : $0 } ?? folder
            if root == nil, depth == 0 { root = parent }
            try entries.put(.init(id: id, parent: parent ?? "", name: node.name, tag: "", isFolder: true, flags: 0, node: nil))
            try spillParentDrive(tree: sub, folder: id, into: entries, root: &root, depth: depth + 1)
        }
    }

    /// Applies one page of a drive's delta (or items fetched by id); returns the ids of files
    /// that could not be downloaded.
    private func applyDrive(_ page: [JSONValue], full: Bool, driveId: String, entries: ItemSpill, root: inout String?, path: [String],
                            _ ctx: RunContext) async throws -> [String] {
        let listed = full ? ItemSpill.listed : 0
        var toFetch: [(String, JSONValue)] = []
        for item in page {
            guard let id = item["id"]?.string else { continue }
            if item["deleted"] != nil || item["@removed"] != nil {
                try entries.remove(id)
                continue
            }
            if item["root"] != nil {
                root = id
                continue
            }
            // A package (a OneNote notebook) has no content of its own and no download URL; its
            // files are listed below it, so it is kept as a folder of them.
            let isFolder = item["folder"] != nil || item["package"] != nil
            let cTag = item["cTag"]?.string ?? item["eTag"]?.string ?? ""
            let old = try entries.get(id)
            // The previous version stays until the new one is in (a lost one stays marked lost).
            var entry = ItemSpill.Item(id: id, parent: item["parentReference"]?["id"]?.string ?? "", name: safeName(item["name"]?.string ?? id),
                                       tag: old?.tag ?? "", isFolder: isFolder, flags: (old?.flags ?? 0) & ItemSpill.lost | listed,
                                       node: isFolder ? nil : old?.node)
            if let node = entry.node, node.metadata?["graph.cTag"] == cTag, !cTag.isEmpty {
                // Renamed or moved, content unchanged: keep the blobs, refresh the metadata.
                entry.node?.metadata?["graph.parentId"] = entry.parent
                entry.node?.metadata?["graph.item"] = Self.storedDriveItem(item)
            } else if !isFolder {
                toFetch.append((id, item))
            }
            try entries.put(entry)
        }
        return try await fetchFiles(toFetch, driveId: driveId, entries: entries, path: path, ctx)
    }

    /// Downloads `items` (several at once) into `entries`. A file gone since it was listed is
    /// dropped; one that fails is recorded and keeps its previous version, if any (without one
    /// it is left out). Returns the ids that failed.
    private func fetchFiles(_ items: [(String, JSONValue)], driveId: String, entries: ItemSpill, path: [String], _ ctx: RunContext) async throws -> [String] {
        let results = try await fetchAll(items) { id, item in try await self.fetchFile(id: id, item: item, driveId: driveId, ctx) }
        var failed: [String] = []
        for (id, r) in results {
            switch r {
            case .success(let node):
                guard var entry = try entries.get(id) else { continue }
                entry.node = node
                entry.tag = node.metadata?["graph.cTag"] ?? ""
                entry.flags &= ~ItemSpill.lost
                try entries.put(entry)
            case .failure(let e):
                if e.code == .notFound { try entries.remove(id); continue }
                let entry = try entries.get(id)
                recordError((path + [entry?.name ?? id]).joined(separator: "/"), e)
                if entry?.node == nil { try entries.remove(id) }
                failed.append(id)
            }
        }
        return failed
    }

    /// A drive item's Graph JSON as the snapshot keeps it: without its download URL, a
    /// pre-authenticated credential valid for about an hour (and different at every listing).
    static func storedDriveItem(_ item: JSONValue) -> String {
        var json = item.object ?? [:]
        json["@microsoft.graph.downloadUrl"] = nil
        return String(decoding: JSONValue.object(json).encoded(), as: UTF8.self)
    }

    private func fetchFile(id: String, item: JSONValue, driveId: String, _ ctx: RunContext) async throws -> TreeNode {
        guard let url = item["@microsoft.graph.downloadUrl"]?.string else {
            throw GraphError(.malformed, "file without a download URL", url: id)
        }
        var metadata = [
            "graph.id": id,
            "graph.parentId": item["parentReference"]?["id"]?.string ?? "",
            "graph.cTag": item["cTag"]?.string ?? item["eTag"]?.string ?? "",
        ]
        metadata["graph.item"] = Self.storedDriveItem(item)
        let expected = item["size"]?.int64
        let listedTag = metadata["graph.cTag"] ?? ""
        let itemURL = client.url("drives", driveId, "items", id)
        /// A fresh download URL for the same version: bytes already stored came from it, so a
        /// file changed meanwhile fails here and is taken whole by the next run.
        @Sendable func renew() async throws -> String {
            let fresh = try await client.json(itemURL)
            let tag = fresh["cTag"]?.string ?? fresh["eTag"]?.string ?? ""
            guard tag == listedTag, let url = fresh["@microsoft.graph.downloadUrl"]?.string else {
                throw GraphError(.malformed, "changed while it was being downloaded; taken again next run", url: itemURL)
            }
            return url
        }
        return try await storeContent(name: item["name"]?.string ?? id, metadata: metadata,
                                      modified: Self.date(item["lastModifiedDateTime"]?.string), bulk: true, { feed in
            let n = try await client.download(url, expectedSize: expected, renew: renew) { try await feed.append($0) }
            if let expected, n != expected {
                throw GraphError(.malformed, "downloaded \(n) bytes, Graph listed \(expected)", url: url)
            }
        }, ctx)
    }
}
