import Foundation
import NIOHTTP1
import Synchronization
import VaultlineCore

/// Mail back into a mailbox: folders recreated, each message posted as Graph JSON with the MAPI
/// properties that make it a sent or received message with its original dates, and a restore
/// key that finds it again after a kill or an ambiguous failure.
extension M365Restore {
    /// One mail folder of the snapshot and where its messages go.
    struct MailFolderPlan: Sendable {
        /// Names from the source folder down (empty: the source itself is the mailbox root).
        var path: [String]
        var sourceID: String?
        var messages: [TreeNode]
    }

    /// Attachments up to this size in all go inside the message's POST (Graph's 4 MB request
    /// limit, base64 counted); larger ones are added after it.
    static let inlineAttachmentBudget = 2_500_000
    /// A file attachment of 3 MB or more needs an upload session; its chunks.
    static let largeAttachment = 3 << 20
    static let attachmentChunk = 3 << 20

    func restoreMail(snapshot: Snapshot, parts: [String], folderName: String, journal: RestoreJournal?) async throws -> (Summary.Collection, [Summary.Failure]) {
        let restorer = Restorer(repository: repository)
        let upn = parts[1]
        let user = options.toUser ?? upn
        let sourcePath = "/" + parts.joined(separator: "/")
        let (tree, node, only) = try locateSource(snapshot: snapshot, parts: parts, restorer: restorer, what: "a mail folder or message")
        // The source folder's own names (below mail/), then its subfolders.
        let sourceNames = Array(parts.dropFirst(3).prefix(only == nil ? parts.count : parts.count - 4))
        var plans: [MailFolderPlan] = []
        try collectMail(tree, path: [], sourceID: node?.metadata?["graph.id"], only: only, into: &plans)
        var collection = Summary.Collection(source: sourcePath, target: "mailbox of \(user): /" + ((options.effectiveDestination == .inPlace ? [] : [folderName]) + sourceNames).joined(separator: "/"))
        for plan in plans {
            collection.items += plan.messages.count
            collection.bytes += plan.messages.reduce(0) { $0 + Int64($1.size ?? 0) }
        }
        advance(planned: collection.items)
        if options.dryRun { return (try await planMail(plans, user: user, sourceNames: sourceNames, folderName: folderName, collection), []) }

        let tally = Tally(collection)
        do {
            // The base: the new top-level folder, then the source's own folders.
            var base: String? = nil  // nil: the mailbox root
            if options.effectiveDestination == .newFolder { base = try await ensureMailFolder(user: user, parent: nil, name: folderName, journal: journal, key: "\u{1}") }
            for (i, name) in sourceNames.enumerated() {
                base = try await targetFolder(user: user, parent: base, name: name, sourceID: i == sourceNames.count - 1 && plans.first?.path.isEmpty == true ? plans.first?.sourceID : nil,
                                              journal: journal, key: "\u{1}" + Self.key(Array(sourceNames.prefix(i + 1))))
            }
            var folderIDs: [String: String?] = ["": base]
            for plan in plans.sorted(by: { $0.path.count < $1.path.count }) {
                let parent = plan.path.isEmpty ? base : (folderIDs[Self.key(Array(plan.path.dropLast()))] ?? base)
                let id: String?
                if plan.path.isEmpty {
                    id = base
                } else {
                    id = try await targetFolder(user: user, parent: parent, name: plan.path[plan.path.count - 1], sourceID: plan.sourceID,
                                                journal: journal, key: Self.key(plan.path))
                }
                folderIDs[Self.key(plan.path)] = id
                guard let folder = id else {
                    // Messages right in the mailbox root have no folder to go to.
                    tally.counts.withLock { $0.failed += plan.messages.count }
                    tally.failures.withLock { $0 += plan.messages.map { .init(path: sourcePath + "/" + $0.name, message: "a message outside any folder") } }
                    continue
                }
                try await restoreMessages(plan, user: user, folder: folder, source: sourcePath, journal: journal, tally: tally)
            }
        } catch let error as GraphError where error.status == 403 {
            throw VaultlineError(.invalidArgument, "Graph refused to write to the mailbox of \(user) (\(error.status.map(String.init) ?? "") \(error.graphCode ?? "")): grant the app Mail.ReadWrite",
                                 object: sourcePath, cause: error)
        }
        return (tally.counts.withLock { $0 }, tally.failures.withLock { $0 })
    }

    private func collectMail(_ tree: String, path: [String], sourceID: String?, only: String?, into plans: inout [MailFolderPlan]) throws {
        var plan = MailFolderPlan(path: path, sourceID: sourceID, messages: [])
        var subfolders: [(name: String, tree: String, id: String?)] = []
        try repository.forEachTreePart(tree) { part in
            for node in part.nodes {
                if let only, node.name != only { continue }
                if node.kind == .file, node.name.hasSuffix(".eml"), node.damaged == nil { plan.messages.append(node) }
                if node.kind == .dir, only == nil, let sub = node.subtree { subfolders.append((node.metadata?["graph.name"] ?? node.name, sub, node.metadata?["graph.id"])) }
            }
        }
        plans.append(plan)
        for sub in subfolders { try collectMail(sub.tree, path: path + [sub.name], sourceID: sub.id, only: nil, into: &plans) }
    }

    /// The target folder for a source folder: in place into the same mailbox, the folder of the
    /// same id if it still exists; else the child of that name, created when missing.
    private func targetFolder(user: String, parent: String?, name: String, sourceID: String?, journal: RestoreJournal?, key: String) async throws -> String {
        if options.effectiveDestination == .inPlace, options.toUser == nil, let sourceID {
            if let folder = try? await client.json(client.url("users", user, "mailFolders", sourceID), mailbox: user), let id = folder["id"]?.string { return id }
        }
        return try await ensureMailFolder(user: user, parent: parent, name: name, journal: journal, key: key)
    }

    /// Folder `name` under `parent` (nil: the top level): found, or created (a 409 or an
    /// ambiguous failure is looked up by name).
    private func ensureMailFolder(user: String, parent: String?, name: String, journal: RestoreJournal?, key: String) async throws -> String {
        if let id = journal?.loaded.folders["mail:" + key] { return id }
        let list = parent.map { client.url("users", user, "mailFolders", $0, "childFolders") } ?? client.url("users", user, "mailFolders")
        func find() async throws -> String? { try await findMailFolder(user: user, parent: parent, name: name) }
        var id = try await find()
        if id == nil {
            do {
                id = try await client.write(.POST, list, json: .object(["displayName": .string(name), "isHidden": .bool(false)]), mailbox: user, idempotent: false).json?["id"]?.string
            } catch let error as GraphError where error.status == 409 || error.code == .exhausted || error.code == .transport {
                id = try await find()
            }
        }
        guard let id else { throw GraphError(.malformed, "a mail folder without an id", url: list) }
        try journal?.record("folder", ["path": "mail:" + key, "id": id])
        return id
    }

    /// The child folder `name` of `parent` (nil: the top level), if there is one.
    func findMailFolder(user: String, parent: String?, name: String) async throws -> String? {
        let list = parent.map { client.url("users", user, "mailFolders", $0, "childFolders") } ?? client.url("users", user, "mailFolders")
        let filter = "displayName eq '\(name.replacingOccurrences(of: "'", with: "''"))'"
        let url = list + "?$filter=" + (filter.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? filter)
        return try await client.json(url, mailbox: user)["value"]?.array?.first?["id"]?.string
    }

    private func restoreMessages(_ plan: MailFolderPlan, user: String, folder: String, source: String, journal: RestoreJournal?, tally: Tally) async throws {
        // What the folder holds now, by internetMessageId (for collisions and --only-changed).
        var present: [String: [String]] = [:]
        let listing = client.url("users", user, "mailFolders", folder, "messages") + "?$select=id,internetMessageId&$top=100"
        _ = try await client.pages(listing, mailbox: user) { page in
            for m in page { if let imid = m["internetMessageId"]?.string, let id = m["id"]?.string { present[imid, default: []].append(id) } }
        }
        let folderPath = plan.path
        let work = plan.messages
        let existing = present
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func startOne() {
                guard next < work.count else { return }
                let node = work[next]
                next += 1
                group.addTask {
                    let key = "mail:" + Self.key(folderPath + [node.name])
                    do {
                        let outcome = try await self.restoreMessage(node, user: user, folder: folder, key: key, present: existing, journal: journal)
                        tally.record(outcome)
                    } catch let error as GraphError where error.status == 403 || error.endsTheRun {
                        throw error
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        tally.counts.withLock { $0.failed += 1 }
                        tally.failures.withLock { $0.append(.init(path: source + "/" + (folderPath + [node.name]).joined(separator: "/"), message: "\(error)")) }
                    }
                    self.advance(items: 1)
                }
            }
            for _ in 0..<4 { startOne() }
            while try await group.next() != nil { startOne() }
        }
    }

    private func restoreMessage(_ node: TreeNode, user: String, folder: String, key: String, present: [String: [String]], journal: RestoreJournal?) async throws -> Decision {
        if journal?.loaded.done[key] != nil { return .unchanged }
        // Its own opener: tasks run at once, and an opener is not thread-safe.
        let mime = try Self.read(node, repository: repository, opener: BlobOpener(key: repository.key))
        let item = node.metadata?["graph.item"].flatMap { try? JSONValue.parse(Array($0.utf8)) }
        let restoreKey = String(SHA256.hash(Array((journal?.path ?? "") .utf8) + Array(key.utf8) + Array(ItemFinder.contentVersion(node).utf8)).hex.prefix(32))
        let built = GraphMessageBuilder(mime: mime, item: item, restoreKey: restoreKey)
        let imid = built.message["internetMessageId"]?.string
        var decision = Decision.create
        if item?["isDraft"]?.bool == true, journal?.loaded.started.contains(key) == true, let imid,
           let id = try await earlierDraft(user: user, folder: folder, restoreKey: restoreKey, copies: present[imid] ?? []) {
            try journal?.record("done", ["path": key, "id": id])
            return .create
        }
        if let imid, present[imid] != nil {
            if options.onlyChanged { return .unchanged }
            switch options.effectiveCollisions {
            case .skip: return .skip
            case .copy: decision = .copy
            case .replace: decision = .replace
            }
        }
        let messages = client.url("users", user, "mailFolders", folder, "messages")
        if item?["isDraft"]?.bool == true {
            return try await restoreDraft(mime, user: user, messages: messages, key: key, restoreKey: restoreKey, decision: decision, journal: journal)
        }
        // Made before, by this job (a kill, or an answer lost): found by its key.
        if journal?.loaded.started.contains(key) == true || journal?.loaded.sessions[key] != nil {
            if let id = try await findByKey(user: user, folder: folder, restoreKey: restoreKey) {
                if journal?.loaded.sessions[key] == nil {
                    // Created, attachments perhaps not all added: rebuilt whole.
                    _ = try? await client.write(.DELETE, client.url("users", user, "messages", id), mailbox: user, idempotent: true)
                } else {
                    try journal?.record("done", ["path": key, "id": id])
                    return decision
                }
            }
        }
        let inlineBytes = built.attachments.reduce(0) { $0 + $1.bytes.count }
        var body = built.message.object ?? [:]
        let separate = inlineBytes > Self.inlineAttachmentBudget
        if !separate, !built.attachments.isEmpty { body["attachments"] = .array(built.attachments.map(\.json)) }
        try journal?.record("upload", ["path": key])
        var created: String?
        for attempt in 0..<3 {
            do {
                created = try await client.write(.POST, messages, json: .object(body), mailbox: user, idempotent: false).json?["id"]?.string
                break
            } catch let error as GraphError where error.code == .exhausted || error.code == .transport {
                // It may have been created: look before posting again.
                if let id = try await findByKey(user: user, folder: folder, restoreKey: restoreKey) { created = id; break }
                if attempt == 2 { throw error }
            }
        }
        guard let id = created else { throw GraphError(.malformed, "a created message without an id", url: messages) }
        if separate {
            for attachment in built.attachments { try await addAttachment(attachment, user: user, message: id) }
        }
        // "session" marks a message complete with its attachments, "done" that the job has it.
        try journal?.record("session", ["path": key, "url": id])
        try journal?.record("done", ["path": key, "id": id])
        if decision == .replace, let imid, let old = present[imid]?.first {
            // Replace: the new one is in; now the old one goes (a failure between leaves two, never none).
            _ = try await client.write(.DELETE, client.url("users", user, "messages", old), mailbox: user, idempotent: true)
        }
        return decision
    }

    /// A draft is posted as its MIME (Graph makes a message created from MIME a draft, which is
    /// right here, and keeps the MIME whole), then given its restore key by PATCH.
    private func restoreDraft(_ mime: [UInt8], user: String, messages: String, key: String, restoreKey: String, decision: Decision,
                              journal: RestoreJournal?) async throws -> Decision {
        try journal?.record("upload", ["path": key])
        let posted = try await client.write(.POST, messages, bytes: Array(Data(mime).base64EncodedString().utf8), contentType: "text/plain",
                                            mailbox: user, idempotent: false)
        guard let id = posted.json?["id"]?.string else { throw GraphError(.malformed, "a created draft without an id", url: messages) }
        let property = JSONValue.object(["id": .string(GraphMessageBuilder.restoreKeyProperty), "value": .string(restoreKey)])
        _ = try await client.write(.PATCH, client.url("users", user, "messages", id), json: .object(["singleValueExtendedProperties": .array([property])]),
                                   mailbox: user, idempotent: true)
        try journal?.record("session", ["path": key, "url": id])
        try journal?.record("done", ["path": key, "id": id])
        return decision
    }

    /// The draft an earlier run of this job posted, if it did. A draft is posted as MIME and
    /// given its key after, so a kill between the two leaves one without a key. Under `skip`
    /// (and `--only-changed`) that run posted only when the folder held no copy, so a copy now is
    /// its; under `copy` and `replace` it posted beside one, so only a second copy is known to
    /// be its (with one, the draft is posted again: the one window left).
    private func earlierDraft(user: String, folder: String, restoreKey: String, copies: [String]) async throws -> String? {
        if let id = try await findByKey(user: user, folder: folder, restoreKey: restoreKey) { return id }
        let alone = options.onlyChanged || options.effectiveCollisions == .skip
        return copies.count > (alone ? 0 : 1) ? copies.last : nil
    }

    private func findByKey(user: String, folder: String, restoreKey: String) async throws -> String? {
        let filter = "singleValueExtendedProperties/Any(ep: ep/id eq '\(GraphMessageBuilder.restoreKeyProperty)' and ep/value eq '\(restoreKey)')"
        let url = client.url("users", user, "mailFolders", folder, "messages") + "?$filter=" + (filter.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? filter) + "&$select=id"
        return try await client.json(url, mailbox: user)["value"]?.array?.first?["id"]?.string
    }

    private func addAttachment(_ a: GraphMessageBuilder.Attachment, user: String, message: String) async throws {
        let url = client.url("users", user, "messages", message, "attachments")
        if a.item != nil || a.bytes.count < Self.largeAttachment {
            // Exchange may not find a message it has just created (404 ErrorItemNotFound, seen
            // by Corso with many attachments): tried again after 0.75 s, 1.5 s, 3 s.
            var wait = 0.75
            for attempt in 0...3 {
                do {
                    _ = try await client.write(.POST, url, json: a.json, mailbox: user, idempotent: false)
                    return
                } catch let error as GraphError where error.code == .notFound && attempt < 3 {
                    try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                    wait *= 2
                }
            }
            return
        }
        var item: [String: JSONValue] = ["attachmentType": .string("file"), "name": .string(a.name), "size": .number(Double(a.bytes.count)),
                                         "contentType": .string(a.contentType), "isInline": .bool(a.isInline)]
        if let cid = a.contentID { item["contentId"] = .string(cid) }
        let session = try await client.write(.POST, url + "/createUploadSession", json: .object(["AttachmentItem": .object(item)]), mailbox: user, idempotent: true)
        guard let upload = session.json?["uploadUrl"]?.string else { throw GraphError(.malformed, "an attachment session without uploadUrl", url: url) }
        var offset = 0
        while offset < a.bytes.count {
            let end = min(a.bytes.count, offset + Self.attachmentChunk)
            _ = try await client.write(.PUT, upload, bytes: Array(a.bytes[offset..<end]), headers: [("Content-Range", "bytes \(offset)-\(end - 1)/\(a.bytes.count)")],
                                       authorized: false, idempotent: true)
            offset = end
        }
    }
}
