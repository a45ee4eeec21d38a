import Foundation
import NIOHTTP1
import VaultlineCore

/// Events and contacts back from their stored Graph JSON: what Graph sets itself (ids, change
/// keys, times of creation, the organizer) taken out, attendees not invited unless asked
/// (kept as a summary at the top of the body), a restore key on each, `transactionId` too for
/// events, so that a POST sent again after a lost answer gives back the same event.
extension M365Restore {
    /// One calendar or contact folder of the snapshot.
    struct ContainerPlan: Sendable {
        var name: String
        var sourceID: String?
        var isDefault: Bool
        /// The items restored one by one: single events, series masters, contacts.
        var items: [StoredItem]
        /// A series' occurrences and exceptions as backed up, by the master's id there.
        var instances: [String: [JSONValue]] = [:]
    }

    struct StoredItem: Sendable {
        var node: TreeNode
        var json: JSONValue
    }

    /// Fields Graph sets itself or refuses on create.
    static let readOnlyEventFields: Set<String> = [
        "id", "changeKey", "@odata.etag", "@odata.type", "@odata.context", "createdDateTime", "lastModifiedDateTime", "iCalUId", "uid",
        "webLink", "seriesMasterId", "originalStart", "originalStartTimeZone", "originalEndTimeZone", "type", "responseStatus", "organizer",
        "isOrganizer", "hasAttachments", "bodyPreview", "occurrenceId", "cancelledOccurrences", "exceptionOccurrences", "transactionId",
        "onlineMeetingUrl", "iCalUId_v2",
    ]
    static let readOnlyContactFields: Set<String> = [
        "id", "changeKey", "@odata.etag", "@odata.type", "@odata.context", "createdDateTime", "lastModifiedDateTime", "parentFolderId",
    ]

    func restoreJSONItems(snapshot: Snapshot, parts: [String], folderName: String, journal: RestoreJournal?) async throws -> (Summary.Collection, [Summary.Failure]) {
        let events = parts[2] != "contacts"
        let user = options.toUser ?? parts[1]
        let sourcePath = "/" + parts.joined(separator: "/")
        let restorer = Restorer(repository: repository)
        let (tree, _, only) = try locateSource(snapshot: snapshot, parts: parts, restorer: restorer, what: "a calendar, contact folder or item")
        // Which containers: the default calendar holds its items directly; "calendars" and
        // "contacts" hold one directory per calendar or folder.
        var plans: [ContainerPlan] = []
        let direct = parts[2] == "calendar" || parts.count >= 4
        if direct {
            let meta = parts.count >= 4 ? try restorer.locate(snapshot: snapshot, path: "/" + parts.prefix(4).joined(separator: "/")).node?.metadata : nil
            plans.append(try plan(tree, only: only, name: meta?["graph.name"] ?? (parts.count >= 4 ? parts[3] : "Calendar"), sourceID: meta?["graph.id"],
                                  isDefault: parts[2] == "calendar" || (parts[2] == "contacts" && parts.count >= 4 && parts[3] == "Contacts")))
        } else {
            for dir in try repository.loadTree(tree).nodes where dir.kind == .dir {
                guard let sub = dir.subtree else { continue }
                plans.append(try plan(sub, only: nil, name: dir.metadata?["graph.name"] ?? dir.name, sourceID: dir.metadata?["graph.id"],
                                      isDefault: !events && dir.name == "Contacts"))
            }
        }
        let newFolder = options.effectiveDestination == .newFolder
        var collection = Summary.Collection(source: sourcePath, target: "\(events ? "calendar" : "contact folder") of \(user): " + (newFolder ? folderName : "as backed up"))
        collection.items = plans.reduce(0) { $0 + $1.items.count }
        collection.bytes = plans.reduce(0) { $0 + $1.items.reduce(0) { $0 + Int64($1.node.size ?? 0) } }
        advance(planned: collection.items)
        let tally = Tally(collection)
        do {
            for plan in plans {
                let container = try await targetContainer(events: events, user: user, plan: plan, newName: newFolder ? folderName : nil, journal: journal)
                try await restoreItems(plan, events: events, user: user, container: container, source: sourcePath, journal: journal, tally: tally)
            }
        } catch let error as GraphError where error.status == 403 {
            throw VaultlineError(.invalidArgument, "Graph refused to write to \(user)'s \(events ? "calendar" : "contacts") (\(error.status.map(String.init) ?? "") \(error.graphCode ?? "")): grant the app \(events ? "Calendars.ReadWrite" : "Contacts.ReadWrite")",
                                 object: sourcePath, cause: error)
        }
        return (tally.counts.withLock { $0 }, tally.failures.withLock { $0 })
    }

    /// One container's items, read: a series' occurrences and exceptions go with their master
    /// (restoring them one by one would make each a single event).
    private func plan(_ tree: String, only: String?, name: String, sourceID: String?, isDefault: Bool) throws -> ContainerPlan {
        var nodes: [TreeNode] = []
        try repository.forEachTreePart(tree) { part in
            nodes += part.nodes.filter { $0.kind == .file && $0.name.hasSuffix(".json") && $0.damaged == nil }
        }
        var plan = ContainerPlan(name: name, sourceID: sourceID, isDefault: isDefault, items: [])
        let opener = BlobOpener(key: repository.key)
        var all: [StoredItem] = []
        var onlyMaster: String?  // an occurrence asked for by name brings back its series
        for node in nodes {
            let json = try JSONValue.parse(try Self.read(node, repository: repository, opener: opener))
            if let master = json["seriesMasterId"]?.string, ["occurrence", "exception"].contains(json["type"]?.string ?? "") {
                plan.instances[master, default: []].append(json)
                if node.name == only { onlyMaster = master }
            } else {
                all.append(StoredItem(node: node, json: json))
            }
        }
        plan.items = all.filter { only == nil || $0.node.name == only || ($0.json["id"]?.string == onlyMaster && onlyMaster != nil) }
        return plan
    }

    /// The URL items are posted to and listed from: the default calendar or contact folder in
    /// place, the calendar or folder of the same name (by id first for contact folders), created
    /// when missing; or the job's new one. Nil in a dry run when it would be created.
    private func targetContainer(events: Bool, user: String, plan: ContainerPlan, newName: String?, journal: RestoreJournal?) async throws -> String? {
        // In place, the default calendar and contact folder are the mailbox's own (v1.0's
        // `/contactFolders` does not list the default folder).
        if newName == nil, plan.isDefault { return events ? client.url("users", user, "calendar", "events") : client.url("users", user, "contacts") }
        let listURL = client.url("users", user, events ? "calendars" : "contactFolders")
        let name = newName ?? plan.name
        let key = (events ? "calendar:" : "contacts:") + (newName == nil ? name : "\u{1}")
        if let id = journal?.loaded.folders[key] { return containerItems(events: events, user: user, id: id) }
        var found: String?
        _ = try await client.pages(listURL, mailbox: user) { page in
            for c in page where found == nil {
                let cname = c[events ? "name" : "displayName"]?.string
                if (newName == nil && !events && c["id"]?.string == plan.sourceID && options.toUser == nil) || cname == name { found = c["id"]?.string }
            }
        }
        if found == nil {
            if options.dryRun { return nil }
            let body: JSONValue = .object([events ? "name" : "displayName": .string(name)])
            do {
                found = try await client.write(.POST, listURL, json: body, mailbox: user, idempotent: false).json?["id"]?.string
            } catch let error as GraphError where error.status == 409 || error.code == .exhausted || error.code == .transport {
                _ = try await client.pages(listURL, mailbox: user) { page in
                    for c in page where c[events ? "name" : "displayName"]?.string == name { found = c["id"]?.string }
                }
            }
        }
        guard let id = found else { throw GraphError(.malformed, "a created \(events ? "calendar" : "contact folder") without an id", url: listURL) }
        if !options.dryRun { try journal?.record("folder", ["path": key, "id": id]) }
        return containerItems(events: events, user: user, id: id)
    }

    private func containerItems(events: Bool, user: String, id: String) -> String {
        events ? client.url("users", user, "calendars", id, "events") : client.url("users", user, "contactFolders", id, "contacts")
    }

    /// What identifies an event or contact across a restore (Corso's rule): subject and times;
    /// names and addresses.
    static func collisionKey(_ json: JSONValue, events: Bool) -> String {
        if events {
            return [json["subject"]?.string ?? "", json["start"]?["dateTime"]?.string.flatMap { GraphDate.parse($0) }.map(GraphDate.format) ?? "",
                    json["end"]?["dateTime"]?.string.flatMap { GraphDate.parse($0) }.map(GraphDate.format) ?? ""].joined(separator: "\u{0}")
        }
        let emails = (json["emailAddresses"]?.array ?? []).compactMap { $0["address"]?.string?.lowercased() }.sorted()
        return ([json["givenName"]?.string ?? "", json["surname"]?.string ?? ""] + emails).joined(separator: "\u{0}")
    }

    private func restoreItems(_ plan: ContainerPlan, events: Bool, user: String, container: String?, source: String, journal: RestoreJournal?, tally: Tally) async throws {
        var present: [String: String] = [:]
        if let container {
            _ = try await client.pages(container + "?$top=100", mailbox: user) { page in
                for item in page { if let id = item["id"]?.string { present[Self.collisionKey(item, events: events), default: id] = id } }
            }
        }
        for item in plan.items {
            let key = (events ? "event:" : "contact:") + Self.key([plan.name, item.node.name])
            do {
                let decision = try decide(item.json, events: events, key: key, present: present, journal: journal)
                guard let container, !options.dryRun else {
                    tally.record(decision)
                    advance(items: 1)
                    continue
                }
                let outcome = try await restoreItem(item.json, decision: decision, events: events, user: user, container: container, key: key, present: &present,
                                                    instances: item.json["id"]?.string.flatMap { plan.instances[$0] } ?? [], journal: journal)
                tally.record(outcome)
            } catch let error as GraphError where error.status == 403 || error.endsTheRun {
                throw error
            } catch {
                tally.counts.withLock { $0.failed += 1 }
                tally.failures.withLock { $0.append(.init(path: source + "/" + item.node.name, message: "\(error)")) }
            }
            advance(items: 1)
        }
    }

    /// What the policy makes of one stored item, given what the target holds.
    private func decide(_ stored: JSONValue, events: Bool, key: String, present: [String: String], journal: RestoreJournal?) throws -> Decision {
        if journal?.loaded.done[key] != nil {
            return journal?.loaded.reconciled.contains(key) == false && stored["type"]?.string == "seriesMaster" ? .create : .unchanged
        }
        guard present[Self.collisionKey(stored, events: events)] != nil else { return .create }
        // Made by an earlier run of this job, or there all along.
        if journal?.loaded.started.contains(key) == true || options.onlyChanged { return .unchanged }
        switch options.effectiveCollisions {
        case .skip: return .skip
        case .copy: return .copy
        case .replace: return .replace
        }
    }

    private func restoreItem(_ stored: JSONValue, decision: Decision, events: Bool, user: String, container: String, key: String, present: inout [String: String],
                             instances: [JSONValue], journal: RestoreJournal?) async throws -> Decision {
        guard decision != .skip, decision != .unchanged else { return decision }
        if let id = journal?.loaded.done[key] {
            // Created by an earlier run that was stopped before the series was reconciled.
            try await reconcileSeries(user: user, master: id, stored: stored, instances: instances, key: key, journal: journal)
            return .unchanged
        }
        let collision = Self.collisionKey(stored, events: events)
        let restoreKey = String(SHA256.hash(Array((journal?.path ?? "").utf8) + Array(key.utf8)).hex.prefix(32))
        let body = eventOrContactBody(stored, events: events, restoreKey: restoreKey)
        try journal?.record("upload", ["path": key])
        // transactionId makes an event's POST safe to repeat; a contact's is not.
        let answer = try await client.write(.POST, container, json: body, mailbox: user, idempotent: events)
        guard let id = answer.json?["id"]?.string else { throw GraphError(.malformed, "a created item without an id", url: container) }
        try journal?.record("done", ["path": key, "id": id])
        if events { try await reconcileSeries(user: user, master: id, stored: stored, instances: instances, key: key, journal: journal) }
        if decision == .replace, let old = present[collision] {
            let url = events ? client.url("users", user, "events", old) : container + "/" + GraphClient.encode(old)
            _ = try await client.write(.DELETE, url, mailbox: user, idempotent: true)
        }
        present[collision] = id
        return decision
    }

    /// The stored JSON as a create request: what Graph sets itself taken out, the restore key
    /// added, attendees summarised in the body unless they are to be invited.
    func eventOrContactBody(_ stored: JSONValue, events: Bool, restoreKey: String?) -> JSONValue {
        var o = stored.object ?? [:]
        for field in events ? Self.readOnlyEventFields : Self.readOnlyContactFields { o[field] = nil }
        if let restoreKey {
            o["singleValueExtendedProperties"] = .array([.object(["id": .string(GraphMessageBuilder.restoreKeyProperty), "value": .string(restoreKey)])])
            if events { o["transactionId"] = .string(restoreKey) }
        }
        if events, !options.inviteAttendees, let attendees = o["attendees"]?.array, !attendees.isEmpty {
            o["attendees"] = nil
            o["body"] = Self.withAttendeeSummary(o["body"], attendees)
        }
        return .object(o)
    }

    /// The body with a line naming the attendees at its top (they were not invited again).
    static func withAttendeeSummary(_ body: JSONValue?, _ attendees: [JSONValue]) -> JSONValue {
        var groups: [String: [String]] = [:]
        for a in attendees {
            let type = (a["type"]?.string ?? "required").capitalized
            let email = a["emailAddress"]
            let who = [email?["name"]?.string, email?["address"]?.string.map { "<\($0)>" }].compactMap { $0 }.joined(separator: " ")
            groups[type, default: []].append(who + (a["status"]?["response"]?.string.map { ", \($0)" } ?? ""))
        }
        let summary = groups.keys.sorted().map { "\($0): " + groups[$0, default: []].joined(separator: "; ") }.joined(separator: "\n")
        let html = body?["contentType"]?.string?.lowercased() == "html"
        let content = body?["content"]?.string ?? ""
        let line = "Attendees (not invited by the restore):\n" + summary
        let merged = html ? "<p>" + line.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\n", with: "<br>") + "</p>" + content
            : line + "\n\n" + content
        return .object(["contentType": .string(html ? "html" : "text"), "content": .string(merged)])
    }

    /// The snapshot directory a restore reads (for an item's path, its folder), the node the
    /// path names, and the item's name when the path is one item.
    func locateSource(snapshot: Snapshot, parts: [String], restorer: Restorer, what: String) throws -> (tree: String, node: TreeNode?, only: String?) {
        let sourcePath = "/" + parts.joined(separator: "/")
        var (tree, node) = try restorer.locate(snapshot: snapshot, path: sourcePath)
        var only: String?
        if let node, node.kind == .file {
            only = node.name
            tree = try restorer.locate(snapshot: snapshot, path: "/" + parts.dropLast().joined(separator: "/")).treeID
        }
        guard let tree else { throw VaultlineError(.invalidArgument, "not " + what, object: sourcePath) }
        return (tree, node, only)
    }
}
