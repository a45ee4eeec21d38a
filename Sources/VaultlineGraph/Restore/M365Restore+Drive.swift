import Foundation
import NIOHTTP1
import QuickXorHash
import Synchronization
import VaultlineCore

/// Files back into a OneDrive or a document library.
extension M365Restore {
    /// One drive's part of a job: the snapshot directory restored and the drive it goes to.
    struct DriveScope: Sendable {
        /// The snapshot path (`/users/<upn>/onedrive/Documents`).
        var source: String
        var tree: String
        /// The path inside the drive (`["Documents"]`).
        var relative: [String]
        /// Only this file of the directory (a restore of one file).
        var only: String?
        var drive: String
        var label: String
    }

    /// A file or folder in the target, as listed.
    struct Existing: Sendable {
        var id: String
        var name: String
        var isFolder: Bool
        var size: Int64
        var quickXorHash: String?
    }

    /// What one file gets.
    enum Decision: Sendable {
        case create, replace, copy, skip, unchanged
    }

    // MARK: Scope

    func driveScopes(snapshot: Snapshot, parts: [String]) async throws -> [DriveScope] {
        let restorer = Restorer(repository: repository)
        let isDrive = (parts.count >= 3 && parts[0] == "users" && parts[2] == "onedrive") || (parts.count >= 3 && parts[0] == "sites")
        guard isDrive else {
            throw VaultlineError(.unsupported, "m365 restore puts back one service at a time: give a path at or below /users/<upn>/mail, /users/<upn>/calendar, /users/<upn>/calendars, /users/<upn>/contacts, /users/<upn>/onedrive or /sites/<site>/<library>",
                                 object: "/" + parts.joined(separator: "/"))
        }
        let driveDepth = 3
        let drivePath = "/" + parts.prefix(driveDepth).joined(separator: "/")
        let (_, driveNode) = try restorer.locate(snapshot: snapshot, path: drivePath)
        guard let driveNode, driveNode.kind == .dir else { throw VaultlineError(.notFound, "not a drive in the snapshot", object: drivePath) }
        let sourcePath = "/" + parts.joined(separator: "/")
        var (tree, node) = try restorer.locate(snapshot: snapshot, path: sourcePath)
        var relative = Array(parts.dropFirst(driveDepth))
        var only: String?
        if let node, node.kind == .file {
            only = node.name
            relative.removeLast()
            tree = try restorer.locate(snapshot: snapshot, path: "/" + parts.dropLast().joined(separator: "/")).treeID
        }
        guard let tree else { throw VaultlineError(.invalidArgument, "not a file or folder of a drive", object: sourcePath) }

        let drive: String
        let label: String
        if parts[0] == "users" {
            let user = options.toUser ?? parts[1]
            let json = try await client.json(client.url("users", user, "drive"))
            guard let id = json["id"]?.string else { throw GraphError(.malformed, "a drive without an id", url: client.url("users", user, "drive")) }
            drive = id
            label = "OneDrive of \(user)"
        } else {
            let (siteDirPath, library) = ("/sites/" + parts[1], parts[2])
            let siteID = try restorer.locate(snapshot: snapshot, path: siteDirPath).node?.metadata?["graph.id"]
            drive = try await libraryDrive(stored: driveNode.metadata?["graph.driveId"], site: options.toSite ?? siteID, library: library)
            label = "library \(library) of site \(options.toSite ?? parts[1])"
        }
        return [DriveScope(source: sourcePath, tree: tree, relative: relative, only: only, drive: drive, label: label)]
    }

    /// The drive a library goes to: `--to-drive`, else the library of that name in the site
    /// (`--to-site` or its own), else the drive id the backup recorded, if it still exists.
    private func libraryDrive(stored: String?, site: String?, library: String) async throws -> String {
        if let id = options.toDrive { return id }
        if let site {
            var found: String?
            var first: String?
            _ = try await client.pages(client.url("sites", site, "drives")) { drives in
                for d in drives {
                    if first == nil { first = d["id"]?.string }
                    if d["name"]?.string?.caseInsensitiveCompare(library) == .orderedSame { found = d["id"]?.string }
                }
            }
            if let id = found ?? (options.toSite != nil ? first : nil) { return id }
        }
        if let stored, !stored.isEmpty { return stored }
        throw VaultlineError(.notFound, "no library named \(library) in the target site", object: site ?? "")
    }

    // MARK: One drive

    func restoreDrive(_ scope: DriveScope, folderName: String, journal: RestoreJournal?) async throws -> (Summary.Collection, [Summary.Failure]) {
        let base = (options.effectiveDestination == .inPlace ? [] : [folderName]) + scope.relative
        var collection = Summary.Collection(source: scope.source, target: "\(scope.label): /" + base.joined(separator: "/"))

        // What the snapshot holds below the source, and what the target holds below the base.
        var folders: [[String]] = []
        var files: [(path: [String], node: TreeNode)] = []
        try collect(scope.tree, at: [], only: scope.only, folders: &folders, files: &files)
        let existing = try await listTarget(drive: scope.drive, base: base)

        var decided: [(path: [String], node: TreeNode, decision: Decision)] = []
        for (path, node) in files {
            let key = Self.key(path)
            let decision: Decision
            if journal?.loaded.done[key] != nil {
                decision = .unchanged
            } else if let there = existing[key] {
                if !there.isFolder, there.size == Int64(node.size ?? 0), let hash = try backupHash(node), hash == there.quickXorHash {
                    decision = .unchanged
                } else {
                    switch options.effectiveCollisions {
                    case .skip: decision = .skip
                    case .copy: decision = .copy
                    case .replace: decision = there.isFolder ? .copy : .replace
                    }
                }
            } else {
                decision = .create
            }
            decided.append((path, node, decision))
            collection.items += 1
            collection.bytes += Int64(node.size ?? 0)
            switch decision {
            case .skip: collection.skipped += 1
            case .unchanged: collection.unchanged += 1
            default: break
            }
        }
        advance(planned: decided.count)
        if options.dryRun {
            // Skipped and unchanged were counted with the plan; the rest as if done.
            for d in decided where d.decision != .skip && d.decision != .unchanged { collection.count(d.decision) }
            return (collection, [])
        }

        // Folders first, parents before children: the base, then the snapshot's.
        var folderIDs: [String: String] = journal?.loaded.folders ?? [:]
        for (key, item) in existing where item.isFolder { folderIDs[key] = item.id }
        var chain: [String] = []
        var parentID = try await driveRootID(scope.drive)
        do {
            for name in base {
                chain.append(name)
                // The base's own folders are keyed apart from the paths below it.
                parentID = try await ensureFolder(drive: scope.drive, parent: parentID, name: name, key: "\u{1}" + Self.key(chain),
                                                  ids: &folderIDs, journal: journal)
            }
            for folder in folders.sorted(by: { $0.count < $1.count }) {
                let parent = folder.count == 1 ? parentID : folderIDs[Self.key(Array(folder.dropLast()))] ?? parentID
                _ = try await ensureFolder(drive: scope.drive, parent: parent, name: folder[folder.count - 1], key: Self.key(folder),
                                           ids: &folderIDs, journal: journal)
            }
        } catch let error as GraphError where error.status == 403 {
            throw Self.permissionError(error, scope: scope)
        }
        let baseID = parentID

        // Files, a few at a time.
        let tally = Tally(collection)
        let work = decided.filter { $0.decision != .skip && $0.decision != .unchanged }
        advance(items: decided.count - work.count)
        let ids = folderIDs
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func startOne() {
                guard next < work.count else { return }
                let item = work[next]
                next += 1
                let parent = item.path.count == 1 ? baseID : ids[Self.key(Array(item.path.dropLast()))] ?? baseID
                group.addTask {
                    let key = Self.key(item.path)
                    do {
                        let outcome = try await self.restoreFile(drive: scope.drive, parent: parent, key: key, node: item.node,
                                                                 decision: item.decision, journal: journal)
                        tally.record(outcome)
                    } catch let error as GraphError where error.status == 403 || error.endsTheRun {
                        throw Self.permissionError(error, scope: scope)
                    } catch let error as GraphError where error.status == 507 {
                        // Every file after it would fail the same way.
                        throw VaultlineError(.noSpace, "the \(scope.label) is full (507 \(error.graphCode ?? "")): free space or raise its quota, then run the same command again; the job goes on from where it stopped",
                                             object: scope.source, cause: error)
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        tally.counts.withLock { $0.failed += 1 }
                        let shown = scope.source + (scope.only == nil ? "/" + item.path.joined(separator: "/") : "")
                        tally.failures.withLock { $0.append(.init(path: shown, message: "\(error)")) }
                        self.logger.warning("item not restored", metadata: ["path": "\(key)", "error": "\(error)"])
                    }
                    self.advance(items: 1)
                }
            }
            for _ in 0..<max(1, options.filesAtOnce) { startOne() }
            while try await group.next() != nil { startOne() }
        }
        return (tally.counts.withLock { $0 }, tally.failures.withLock { $0 })
    }

    /// What the uploads of one collection did, counted from their tasks.
    final class Tally: Sendable {
        let counts: Mutex<Summary.Collection>
        let failures = Mutex<[Summary.Failure]>([])
        init(_ collection: Summary.Collection) { counts = Mutex(collection) }

        /// Counts what one item got.
        func record(_ outcome: Decision) {
            counts.withLock { $0.count(outcome) }
        }
    }

    /// A 403 on a write: the app lacks the permission; one error for the job, naming it.
    static func permissionError(_ error: GraphError, scope: DriveScope) -> VaultlineError {
        VaultlineError(.invalidArgument, "Graph refused to write to the \(scope.label) (\(error.status.map(String.init) ?? "") \(error.graphCode ?? "")): grant the app Files.ReadWrite.All (OneDrive) or Sites.ReadWrite.All (libraries)",
                       object: scope.source, cause: error)
    }

    /// Snapshot folders (relative paths) and files below `tree`.
    private func collect(_ tree: String, at prefix: [String], only: String?, folders: inout [[String]], files: inout [(path: [String], node: TreeNode)]) throws {
        var subdirs: [(String, String)] = []
        try repository.forEachTreePart(tree) { part in
            for node in part.nodes {
                if let only, node.name != only { continue }
                switch node.kind {
                case .file where node.damaged == nil: files.append((prefix + [node.name], node))
                case .dir: if let sub = node.subtree { subdirs.append((node.name, sub)) }
                default: continue
                }
            }
        }
        for (name, sub) in subdirs {
            folders.append(prefix + [name])
            try collect(sub, at: prefix + [name], only: nil, folders: &folders, files: &files)
        }
    }

    /// Everything below the base folder of the target, by lower-cased relative path (OneDrive
    /// compares names without case); empty when the base does not exist.
    private func listTarget(drive: String, base: [String]) async throws -> [String: Existing] {
        var out: [String: Existing] = [:]
        var pending: [(url: String, prefix: [String])] = [(childrenURL(drive: drive, path: base), [])]
        while let (url, prefix) = pending.popLast() {
            do {
                _ = try await client.pages(url) { items in
                    for item in items {
                        guard let id = item["id"]?.string, let name = item["name"]?.string else { continue }
                        let path = prefix + [name]
                        let entry = Existing(id: id, name: name, isFolder: item["folder"] != nil, size: item["size"]?.int64 ?? 0,
                                             quickXorHash: item["file"]?["hashes"]?["quickXorHash"]?.string)
                        out[Self.key(path)] = entry
                        if entry.isFolder { pending.append((client.url("drives", drive, "items", id, "children"), path)) }
                    }
                }
            } catch let error as GraphError where error.code == .notFound && prefix.isEmpty {
                return [:]
            }
        }
        return out
    }

    private func childrenURL(drive: String, path: [String]) -> String {
        path.isEmpty ? client.url("drives", drive, "root", "children") : itemURL(drive: drive, path: path) + ":/children"
    }

    /// `…/drives/{drive}/root:/a/b` (each name percent-encoded).
    func itemURL(drive: String, path: [String]) -> String {
        client.url("drives", drive) + "/root:/" + path.map(GraphClient.encode).joined(separator: "/")
    }

    private func driveRootID(_ drive: String) async throws -> String {
        let json = try await client.json(client.url("drives", drive, "root"))
        guard let id = json["id"]?.string else { throw GraphError(.malformed, "a drive root without an id", url: client.url("drives", drive, "root")) }
        return id
    }

    /// The id of folder `name` in `parent`, created when missing (`fail`; a 409 or an ambiguous
    /// failure means it may be there: it is looked up).
    private func ensureFolder(drive: String, parent: String, name: String, key: String, ids: inout [String: String], journal: RestoreJournal?) async throws -> String {
        if let id = ids[key] { return id }
        let url = client.url("drives", drive, "items", parent, "children")
        let body = JSONValue.object(["name": .string(name), "folder": .object([:]), "@microsoft.graph.conflictBehavior": .string("fail")])
        var id: String?
        do {
            id = try await client.write(.POST, url, json: body, idempotent: false).json?["id"]?.string
        } catch let error as GraphError where error.status == 409 || error.code == .exhausted || error.code == .transport {
            id = try await findChild(drive: drive, parent: parent, name: name)?.id
            if id == nil { id = try await client.write(.POST, url, json: body, idempotent: false).json?["id"]?.string }
        }
        guard let id else { throw GraphError(.malformed, "a created folder without an id", url: url) }
        ids[key] = id
        try journal?.record("folder", ["path": key, "id": id])
        return id
    }

    /// The child of `parent` named `name`, if any.
    func findChild(drive: String, parent: String, name: String) async throws -> Existing? {
        let url = client.url("drives", drive, "items", parent) + ":/" + GraphClient.encode(name)
        do {
            let item = try await client.json(url)
            guard let id = item["id"]?.string else { return nil }
            return Existing(id: id, name: item["name"]?.string ?? name, isFolder: item["folder"] != nil, size: item["size"]?.int64 ?? 0,
                            quickXorHash: item["file"]?["hashes"]?["quickXorHash"]?.string)
        } catch let error as GraphError where error.code == .notFound {
            return nil
        }
    }

    /// The backup's QuickXorHash of a file: as Graph reported it at backup, else computed
    /// from the stored content.
    func backupHash(_ node: TreeNode) throws -> String? {
        if let text = node.metadata?["graph.item"], let json = try? JSONValue.parse(Array(text.utf8)),
           let hash = json["file"]?["hashes"]?["quickXorHash"]?.string {
            return hash
        }
        // Its own opener: uploads run at once, and an opener is not thread-safe.
        let opener = BlobOpener(key: repository.key)
        var hash = QuickXorHash()
        for id in node.content ?? [] {
            guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree", object: node.name) }
            hash.update(try repository.readBlob(blob, using: opener))
        }
        return hash.base64()
    }

    /// A stored file's content, whole, through `opener`.
    static func read(_ node: TreeNode, repository: Repository, opener: BlobOpener) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for id in node.content ?? [] {
            guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree", object: node.name) }
            bytes += try repository.readBlob(blob, using: opener)
        }
        return bytes
    }

    /// Keys of relative paths, compared as OneDrive compares names.
    static func key(_ path: [String]) -> String { path.joined(separator: "/").lowercased() }
}
