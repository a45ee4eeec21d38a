import Foundation
import NIOCore
import VaultlineCore

/// Exchange mail: the folder hierarchy by mailFolders delta, each folder's messages by their own
/// delta, content as MIME from `$value`, byte-exact.
extension M365Backup {
    /// The message properties asked for (`$select`) and kept as the item's Graph JSON. Without a
    /// `$select`, Graph's message delta also returns the whole body, which the MIME already holds:
    /// it would double what every snapshot tree keeps per message and what a run holds in memory.
    static let messageProperties = [
        "id", "changeKey", "parentFolderId", "subject", "from", "sender", "toRecipients", "ccRecipients",
        "bccRecipients", "replyTo", "receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime",
        "hasAttachments", "internetMessageId", "conversationId", "isRead", "isDraft", "importance", "categories",
        "flag", "inferenceClassification",
    ].joined(separator: ",")

    /// Properties dropped from a message's JSON whatever was selected (a delta link saved before
    /// `$select` was asked for still returns them).
    static let bodyProperties = ["body", "uniqueBody", "bodyPreview"]

    /// One message's properties (`GET /users/{id}/messages/{id}?$select=…`).
    func messageURL(user: String, id: String) -> String {
        client.url("users", user, "messages", id) + "?$select=" + Self.messageProperties
    }

    struct Folder: Sendable {
        var name: String
        var parentId: String?
        /// The folder's tree in the parent snapshot (its messages are read from it when the
        /// folder's turn comes, not before).
        var parentTree: String?
    }

    func backupUser(id: String, upn: String, state previous: M365State.UserState, _ ctx: RunContext) async throws -> (String, DirBuilder, M365State.UserState) {
        let base = ["users", safeName(upn)]
        // The OneDrive runs beside the mailbox: its downloads do not count against the
        // mailbox's request budget, so they need not wait for the mail to finish.
        async let drivePart: DriveRound? = options.onedrive ? backupUserDrive(id: id, previous: previous, path: base + ["onedrive"], ctx) : nil
        var dir = DirBuilder()
        var state = M365State.UserState(upn: upn)
        // Each service on its own: one that fails for good is recorded and carried forward as the
        // parent snapshot had it (with its links), one the user does not have is left out.
        if options.mail {
            try await service("mail", key: nil, base: base, previous: previous, into: &dir, state: &state, ctx, copy: {
                $0.mailFoldersDelta = $1.mailFoldersDelta
                $0.folderDeltas = $1.folderDeltas
                $0.retryMessages = $1.retryMessages
            }) { try await self.backupMail(user: id, upn: upn, previous: previous, path: base + ["mail"], ctx) }
        }
        if options.calendar {
            let initial = client.url("users", id, "calendarView", "delta") + "?" + Self.calendarWindow
            try await service("calendar", key: CollectionKey(.calendar, user: id), base: base, previous: previous, into: &dir, state: &state, ctx, copy: { $0.eventsDelta = $1.eventsDelta }) {
                let (d, link) = try await self.backupJSONItems(initial: initial, link: previous.eventsDelta, mailbox: id, path: base + ["calendar"], kind: "event",
                                                               itemURL: { self.client.url("users", id, "events", $0) }, ctx)
                var s = M365State.UserState(upn: upn)
                s.eventsDelta = link
                return (d, s)
            }
            try await service("calendars", key: CollectionKey(.calendar, user: id), base: base, previous: previous, into: &dir, state: &state, ctx, copy: { _, _ in }) {
                (try await self.backupOtherCalendars(user: id, path: base + ["calendars"], ctx), M365State.UserState(upn: upn))
            }
        }
        if options.contacts {
            try await service("contacts", key: CollectionKey(.contacts, user: id), base: base, previous: previous, into: &dir, state: &state, ctx, copy: { $0.contactDeltas = $1.contactDeltas }) {
                let (d, links) = try await self.backupContacts(user: id, previous: previous, path: base + ["contacts"], ctx)
                var s = M365State.UserState(upn: upn)
                s.contactDeltas = links
                return (d, s)
            }
        }
        if let drive = try await drivePart {
            dir.dirs["onedrive"] = drive.dir
            state.driveDelta = drive.link
            state.retryFiles = drive.failed.isEmpty ? nil : drive.failed
        }
        dir.metadata = ["graph.id": id]
        return (id, dir, state)
    }

    /// One of a user's Exchange services (``turn(_:_:_:)``): `body` returns its directory and
    /// a state whose part for the service `copy` takes; when the service fails for good its
    /// directory is carried forward and `copy` takes the previous state's part instead, as it is
    /// when `key` (the service's collection, nil: one of its own inside) is not due.
    private func service(_ name: String, key: CollectionKey?, base: [String], previous: M365State.UserState, into dir: inout DirBuilder,
                         state: inout M365State.UserState, _ ctx: RunContext, copy: (inout M365State.UserState, M365State.UserState) -> Void,
                         _ body: () async throws -> (DirBuilder, M365State.UserState)) async throws {
        let outcome = try await turn(base + [name], ctx) { () async throws -> (DirBuilder, M365State.UserState)? in
            guard let key else { return try await body() }
            return try await scheduled(key, body)
        }
        switch outcome {
        case .done(let (d, s)?):
            if d.stored != nil || !d.files.isEmpty || !d.dirs.isEmpty { dir.dirs[name] = d }  // a user with no other calendar has no calendars/
            copy(&state, s)
        case .done(nil):
            if let carried = try carried(base + [name], ctx) { dir.dirs[name] = carried }
            copy(&state, previous)
        case .failed(let carried):
            dir.dirs[name] = carried
            copy(&state, previous)
        case .absent:
            break
        }
    }

    /// The user's OneDrive, nil when the user has none (never provisioned, no licence). One that
    /// fails for good is carried forward as the parent snapshot had it, with its link and retries.
    private func backupUserDrive(id: String, previous: M365State.UserState, path: [String], _ ctx: RunContext) async throws -> DriveRound? {
        let outcome = try await turn(path, ctx) { () async throws -> DriveRound?? in
            try await self.scheduled(CollectionKey(.onedrive, user: id)) { () async throws -> DriveRound? in
                let drive = try await self.client.json(self.client.url("users", id, "drive"), mailbox: id)
                guard let driveId = drive["id"]?.string else { return nil }
                return try await self.backupDrive(driveId: driveId, link: previous.driveDelta, retry: previous.retryFiles ?? [], path: path, ctx)
            }
        }
        switch outcome {
        case .done(let round?): return round
        case .done(nil):
            // Not due: as the parent snapshot had it (none if it had none).
            guard let carried = try carried(path, ctx) else { return nil }
            return DriveRound(dir: carried, link: previous.driveDelta, failed: previous.retryFiles ?? [])
        case .absent: return nil
        case .failed(let carried):
            guard let carried else { return nil }
            return DriveRound(dir: carried, link: previous.driveDelta, failed: previous.retryFiles ?? [])
        }
    }

    /// The mailbox: folders, then each folder's messages.
    func backupMail(user: String, upn: String, previous: M365State.UserState, path: [String], _ ctx: RunContext) async throws -> (DirBuilder, M365State.UserState) {
        var state = M365State.UserState(upn: upn)
        // The parent snapshot's folders and messages, by Graph id.
        var folders: [String: Folder] = [:]
        if let tree = try parentTree(path, ctx) { try collectFolders(tree.nodes, parentId: nil, into: &folders) }

        // Folder hierarchy.
        func applyFolders(_ page: [JSONValue]) {
            for f in page {
                guard let fid = f["id"]?.string else { continue }
                if f["@removed"] != nil { folders[fid] = nil; continue }
                let name = f["displayName"]?.string ?? fid
                let parent = f["parentFolderId"]?.string
                folders[fid, default: Folder(name: name, parentId: parent)].name = name
                folders[fid]?.parentId = parent
            }
        }
        let initialFolders = client.url("users", user, "mailFolders", "delta")
        var listed: Set<String> = []
        let hierarchy = try await scheduled(CollectionKey(.mailFolders, user: user)) {
            try await deltaRound(link: previous.mailFoldersDelta, initial: initialFolders, mailbox: user, what: path, collection: false) { page, full in
                applyFolders(page)
                if full { for f in page where f["@removed"] == nil { if let fid = f["id"]?.string { listed.insert(fid) } } }
            }
        } ?? (link: previous.mailFoldersDelta, full: false)
        state.mailFoldersDelta = hierarchy.link
        if hierarchy.full { folders = folders.filter { listed.contains($0.key) } }

        // Messages that failed last time: fetched again, whether or not they changed since.
        var retryByFolder: [String: [JSONValue]] = [:]
        for id in previous.retryMessages {
            do {
                let json = try await client.json(messageURL(user: user, id: id), mailbox: user)
                if let fid = json["parentFolderId"]?.string { retryByFolder[fid, default: []].append(json) }
            } catch let e as GraphError where e.code == .notFound {
                continue  // deleted since
            } catch let e as GraphError {
                recordError((path + [itemFileName(id, ext: ".eml")]).joined(separator: "/"), e)
                state.retryMessages.append(id)
            }
        }

        // Messages, folder by folder, deepest first: a folder's tree is stored as soon as its
        // messages are in, with its subfolders' trees (already stored) beside them. A mailbox
        // run holds one folder's messages at a time, however large the mailbox.
        var storedFolders: [String: DirBuilder] = [:]
        let depth = folders.keys.reduce(into: [String: Int]()) { $0[$1] = folderPath($1, folders).count }
        let order = folders.keys.sorted { a, b in depth[a] != depth[b] ? depth[a, default: 0] > depth[b, default: 0] : a < b }
        var children: [String: [String]] = [:]
        for (cid, child) in folders.sorted(by: { $0.key < $1.key }) where child.parentId != cid {
            if let parent = child.parentId { children[parent, default: []].append(cid) }
        }
        for fid in order {
            guard let folder = folders[fid] else { continue }
            var subfolders: [String: DirBuilder] = [:]
            for cid in children[fid] ?? [] {
                guard let child = folders[cid], let stored = storedFolders.removeValue(forKey: cid) else { continue }
                subfolders[Self.uniqueName(safeName(child.name), id: cid, taken: subfolders.keys)] = stored
            }
            let where_ = path + folderPath(fid, folders)
            let turn: (stored: DirBuilder, link: String?, failed: [String])
            do {
                turn = try await backupFolder(fid, folder, subfolders: subfolders, user: user, path: where_,
                                              link: previous.folderDeltas[fid], retry: retryByFolder[fid], ctx)
            } catch let e as GraphError where !e.endsTheRun {
                // The folder's round failed for good: its messages as the parent snapshot had
                // them, beside this run's subfolders; its link and retries as they were, so the
                // next run takes it up where the parent left it.
                recordError(where_.joined(separator: "/"), e)
                let messages = try ItemSpill(what: where_.joined(separator: "/"))
                if let id = folder.parentTree { try spillParentFiles(tree: id, tagKey: "graph.changeKey", into: messages) }
                let stored = try await writeSpilled(messages, extra: subfolders, metadata: Self.folderMetadata(fid, folder), ctx)
                turn = (stored, previous.folderDeltas[fid], (retryByFolder[fid] ?? []).compactMap { $0["id"]?.string })
            }
            storedFolders[fid] = turn.stored
            state.folderDeltas[fid] = turn.link
            state.retryMessages += turn.failed
        }

        // The top: folders whose parent is not a folder (the mailbox's root).
        var dir = DirBuilder()
        for (fid, stored) in storedFolders.sorted(by: { $0.key < $1.key }) {
            let name = folders[fid].map { safeName($0.name) } ?? fid
            dir.dirs[Self.uniqueName(name, id: fid, taken: dir.dirs.keys)] = stored
        }
        return (dir, state)
    }

    /// One mail folder's turn: the parent snapshot's messages, the delta round, messages that
    /// failed last time and messages lost at every site; then the folder's tree is stored, with
    /// its subfolders' (already stored) beside the messages. Returns it, the round's delta link
    /// and the ids to try again next run.
    private func backupFolder(_ fid: String, _ folder: Folder, subfolders: [String: DirBuilder], user: String, path folderPath: [String],
                              link: String?, retry again: [JSONValue]?, _ ctx: RunContext) async throws -> (stored: DirBuilder, link: String?, failed: [String]) {
        // The folder's messages, the parent's first, on disk past a small cache: a folder of a
        // million messages costs no more memory than one of ten.
        // Read when the round first lists a message: most folders of an incremental run list none.
        let messages = try ItemSpill(what: folderPath.joined(separator: "/"))
        var loaded = false
        func load() throws {
            guard !loaded else { return }
            loaded = true
            if let id = folder.parentTree { try spillParentFiles(tree: id, tagKey: "graph.changeKey", into: messages) }
        }
        let initial = client.url("users", user, "mailFolders", fid, "messages", "delta") + "?$select=" + Self.messageProperties
        var failed: [String] = []
        // Not due: no round, as if it had listed nothing (the parent's messages and link stay).
        let round = try await scheduled(CollectionKey(.mailFolder, user: user, id: fid)) {
            try await deltaRound(link: link, initial: initial, mailbox: user, what: folderPath) { page, full in
                if full || !page.isEmpty { try load() }
                try await applyMessages(page, user: user, messages: messages, full: full, path: folderPath, failed: &failed, ctx)
            }
        } ?? (link: link, full: false)
        let metadata = Self.folderMetadata(fid, folder)
        if !loaded, again?.isEmpty ?? true, let id = folder.parentTree,
           let same = try unchangedParent(tree: id, extra: subfolders, metadata: metadata) {
            return (same, round.link, [])
        }
        try load()
        if round.full { try messages.removeUnlisted() }
        if let again {
            failed.removeAll { id in again.contains { $0["id"]?.string == id } }
            try await applyMessages(again, user: user, messages: messages, path: folderPath, failed: &failed, ctx)
        }
        // Messages whose data was lost at every site (marked by `repair snapshots`, or whose
        // blobs the index no longer has) and which the round left as they were: no delta lists
        // them, so they are fetched again, changed or not.
        var heal: [JSONValue] = []
        for id in try messages.ids(with: ItemSpill.lost) {
            do {
                heal.append(try await client.json(messageURL(user: user, id: id), mailbox: user))
            } catch let e as GraphError where e.code == .notFound {
                try messages.remove(id)  // deleted since
            } catch let e as GraphError {
                recordError((folderPath + [itemFileName(id, ext: ".eml")]).joined(separator: "/"), e)
                failed.append(id)  // the damaged node stays until a run can fetch it
            }
        }
        try await applyMessages(heal, user: user, messages: messages, path: folderPath, failed: &failed, force: true, ctx)

        let stored = try await writeSpilled(messages, extra: subfolders, metadata: metadata, ctx)
        return (stored, round.link, Array(Set(failed)))
    }

    static func folderMetadata(_ fid: String, _ folder: Folder) -> [String: String] {
        ["graph.id": fid, "graph.parentId": folder.parentId ?? "", "graph.name": folder.name]
    }

    /// `name`, or when a sibling already has it (Exchange does not allow that, but a folder
    /// renamed between pages could), `name~<end of the Graph id>`.
    static func uniqueName(_ name: String, id: String, taken: Dictionary<String, DirBuilder>.Keys) -> String {
        guard taken.contains(name) else { return name }
        return name + "~" + safeName(String(id.suffix(12)))
    }

    /// Folder path components from the top of the mailbox (parents not in the map are the root).
    func folderPath(_ id: String, _ folders: [String: Folder]) -> [String] {
        var out: [String] = []
        var cur: String? = id
        var guardCount = 0
        while let c = cur, let f = folders[c], guardCount < 64 {
            out.insert(safeName(f.name), at: 0)
            cur = f.parentId
            guardCount += 1
        }
        return out
    }

    /// The parent snapshot's folders: names, parents and tree ids (their messages are not built:
    /// each folder's are read at its turn).
    private func collectFolders(_ directories: [TreeNode], parentId: String?, into folders: inout [String: Folder]) throws {
        for node in directories where node.kind == .dir {
            guard let id = node.metadata?["graph.id"], let sub = node.subtree else { continue }
            let parent = node.metadata?["graph.parentId"].flatMap { $0.isEmpty ? nil : $0 } ?? parentId
            folders[id] = Folder(name: node.metadata?["graph.name"] ?? node.name, parentId: parent, parentTree: sub)
            let children = try withOpener { try repository.loadTreeDirectories(sub, using: $0) }
            try collectFolders(children, parentId: id, into: &folders)
        }
    }

    /// Applies one page of a folder's message delta: removals, unchanged items kept, new and
    /// changed ones downloaded (several at once). `force`: downloaded even if unchanged. `full`:
    /// the page is part of a full listing (every item it names is marked listed).
    private func applyMessages(_ page: [JSONValue], user: String, messages: ItemSpill, full: Bool = false, path: [String], failed: inout [String],
                               force: Bool = false, _ ctx: RunContext) async throws {
        var toFetch: [(String, JSONValue)] = []
        for m in page {
            guard let id = m["id"]?.string else { continue }
            if m["@removed"] != nil { try messages.remove(id); continue }
            let changeKey = m["changeKey"]?.string ?? m["@odata.etag"]?.string ?? ""
            if !force, !changeKey.isEmpty, let old = try messages.get(id), old.tag == changeKey {
                if full { try messages.mark(id, ItemSpill.listed) }
                continue
            }
            toFetch.append((id, m))
        }
        let listed = full ? ItemSpill.listed : 0
        let results = try await fetchAll(toFetch) { id, json in try await self.fetchMessage(user: user, id: id, json: json, ctx) }
        for (id, r) in results {
            switch r {
            case .success(let node):
                try messages.put(.init(id: id, parent: "", name: node.name, tag: node.metadata?["graph.changeKey"] ?? "",
                                       isFolder: false, flags: listed, node: node))
            case .failure(let e):
                if e.code == .notFound { try messages.remove(id); continue }  // deleted since listed
                recordError((path + [itemFileName(id, ext: ".eml")]).joined(separator: "/"), e)
                failed.append(id)
                if full { try messages.mark(id, ItemSpill.listed) }  // the previous version stays
            }
        }
    }

    private func fetchMessage(user: String, id: String, json: JSONValue, _ ctx: RunContext) async throws -> TreeNode {
        let url = client.url("users", user, "messages", id, "$value")
        var item = json.object ?? [:]
        for p in Self.bodyProperties { item[p] = nil }
        let metadata = [
            "graph.id": id,
            "graph.changeKey": json["changeKey"]?.string ?? json["@odata.etag"]?.string ?? "",
            "graph.item": String(decoding: JSONValue.object(item).encoded(), as: UTF8.self),
        ]
        let name = itemFileName(id, ext: ".eml")
        if let node = reuse(name: name, metadata: metadata, ctx) { return node }
        // Fetched before taking a chunker thread: many messages can be in flight, few threads.
        // At most 64 bodies are held at once (`messageSlots`), which bounds memory.
        try await ctx.messageSlots.acquire()
        do {
            let mime = try await client.bytes(url, mailbox: user)
            let node = try await storeContent(name: name, metadata: metadata, modified: Self.date(json["receivedDateTime"]?.string),
                                              { try await $0.append(ByteBuffer(bytes: mime)) }, ctx)
            await ctx.messageSlots.release()
            return node
        } catch {
            await ctx.messageSlots.release()
            throw error
        }
    }
}
