import Foundation
import NIOCore
import VaultlineCore

/// Calendars and contacts: each item's Graph JSON is its content.
extension M365Backup {
    /// The window of calendar views and series instances a backup reads (and a restore
    /// reconciles a series over): a series' occurrences outside it are not kept.
    static let calendarWindow = "startDateTime=2000-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z"

    /// A user's calendars besides the default one (whose events the calendar view's delta
    /// gives): Graph v1.0 has no delta function for them, so each is listed in full every run;
    /// unchanged events (same `changeKey`) are kept without being stored again.
    func backupOtherCalendars(user id: String, path: [String], _ ctx: RunContext) async throws -> DirBuilder {
        var calendars: [(id: String, name: String)] = []
        var flagged = false  // whether the listing marks the default calendar (v1.0's example omits the field)
        _ = try await client.pages(client.url("users", id, "calendars"), mailbox: id) { page in
            for c in page {
                if c["isDefaultCalendar"]?.bool == true { flagged = true; continue }
                if let cid = c["id"]?.string { calendars.append((cid, c["name"]?.string ?? cid)) }
            }
        }
        if !flagged, !calendars.isEmpty {
            // Else the default calendar, whose events the calendar view gives, is backed up twice.
            let defaultID = try await client.json(client.url("users", id, "calendar") + "?$select=id", mailbox: id)["id"]?.string
            calendars.removeAll { $0.id == defaultID }
        }
        var dir = DirBuilder()
        for calendar in calendars.sorted(by: { $0.id < $1.id }) {
            let name = Self.uniqueName(safeName(calendar.name), id: calendar.id, taken: dir.dirs.keys)
            var (d, _) = try await backupJSONItems(initial: client.url("users", id, "calendars", calendar.id, "events"), link: nil, mailbox: id,
                                                   path: path + [name], kind: "event", listing: true,
                                                   itemURL: { self.client.url("users", id, "events", $0) },
                                                   seriesInstances: { self.client.url("users", id, "events", $0, "instances") + "?" + Self.calendarWindow }, ctx)
            d.metadata = ["graph.id": calendar.id, "graph.name": calendar.name]
            dir.dirs[name] = d
        }
        return dir
    }

    /// Contact folders below one another at most this deep, and at most this many in all.
    static let contactFolderDepth = 16, contactFolderLimit = 5_000

    /// Every contact folder of a user: the default one, which Graph v1.0's `/contactFolders`
    /// leaves out (it lists only the folders directly below it; docs-contrib #6327), and every
    /// folder at every depth below it (`/contactFolders/{id}/childFolders`). Each is one
    /// directory named by its path of names (`Suppliers/Overseas` as `Suppliers_Overseas`).
    /// Returns their directory and delta links.
    func backupContacts(user id: String, previous: M365State.UserState, path: [String], _ ctx: RunContext) async throws -> (DirBuilder, [String: String]) {
        var contacts = DirBuilder()
        var links: [String: String] = [:]
        var folders: [(String, String)] = []
        var level: [(url: String, prefix: String)] = [(client.url("users", id, "contactFolders"), "")]
        var parentOfTop: String?
        for depth in 0..<Self.contactFolderDepth where !level.isEmpty {
            var next: [(url: String, prefix: String)] = []
            for (url, prefix) in level {
                _ = try await client.pages(url, mailbox: id) { page in
                    for f in page {
                        guard let fid = f["id"]?.string, folders.count < Self.contactFolderLimit else { continue }
                        if depth == 0 { parentOfTop = parentOfTop ?? f["parentFolderId"]?.string }
                        let name = prefix + (f["displayName"]?.string ?? fid)
                        folders.append((fid, name))
                        next.append((self.client.url("users", id, "contactFolders", fid, "childFolders"), name + "/"))
                    }
                }
            }
            level = next
        }
        if let root = try await defaultContactFolder(user: id, parentOfTop: parentOfTop), !folders.contains(where: { $0.0 == root.id }) {
            folders.insert((root.id, root.name), at: 0)
        }
        for (fid, name) in folders {
            let initial = client.url("users", id, "contactFolders", fid, "contacts", "delta")
            let dirName = Self.uniqueName(safeName(name), id: fid, taken: contacts.dirs.keys)
            var (d, link) = try await backupJSONItems(initial: initial, link: previous.contactDeltas[fid], mailbox: id,
                                                      path: path + [dirName], kind: "contact",
                                                      itemURL: { self.client.url("users", id, "contactFolders", fid, "contacts", $0) }, ctx)
            d.metadata = ["graph.id": fid, "graph.name": name]
            contacts.dirs[dirName] = d
            if let link { links[fid] = link }
        }
        return (contacts, links)
    }

    /// The default contact folder: by its well-known name, else as the parent of the folders
    /// below it, else as the folder of a contact in `/contacts` (which lists the default
    /// folder's). Nil when the user has no contacts at all.
    private func defaultContactFolder(user id: String, parentOfTop: String?) async throws -> (id: String, name: String)? {
        do {
            let root = try await client.json(client.url("users", id, "contactFolders", "contacts"), mailbox: id)
            if let rid = root["id"]?.string { return (rid, root["displayName"]?.string ?? "Contacts") }
        } catch let error as GraphError where error.code == .notFound || error.status == 400 {}
        if let parentOfTop { return (parentOfTop, "Contacts") }
        let one = try await client.json(client.url("users", id, "contacts") + "?$top=1&$select=id,parentFolderId", mailbox: id)
        return one["value"]?.array?.first?["parentFolderId"]?.string.map { ($0, "Contacts") }
    }

    /// Events or contacts: each item's Graph JSON is its content. `itemURL`: one item's URL, to
    /// fetch again an item whose data was lost at every site.
    /// `listing`: `initial` lists the whole collection (no delta function exists for it): every
    /// run is a full round, and what it does not list is gone. `seriesInstances`: the URL of a
    /// series master's occurrences and exceptions, which a listing does not give (the calendar
    /// view's delta does): they are kept beside their master, so that a restore can put back
    /// the series' exceptions and cancellations.
    func backupJSONItems(initial: String, link: String?, mailbox: String, path: [String], kind: String, listing: Bool = false,
                         itemURL: (String) -> String, seriesInstances: ((String) -> String)? = nil,
                         _ ctx: RunContext) async throws -> (DirBuilder, String?) {
        let items = try ItemSpill(what: path.joined(separator: "/"))
        let parentTree = try parentNode(path, ctx)?.subtree
        var loaded = false  // as for mail folders: when the round first lists an item
        func load() throws {
            guard !loaded else { return }
            loaded = true
            if let parentTree { try spillParentFiles(tree: parentTree, tagKey: "graph.changeKey", into: items) }
        }
        func apply(_ page: [JSONValue], full: Bool, force: Bool = false) async throws {
            if full || !page.isEmpty { try load() }
            for item in page {
                guard let id = item["id"]?.string else { continue }
                if item["@removed"] != nil { try items.remove(id); continue }
                let changeKey = item["changeKey"]?.string ?? item["@odata.etag"]?.string ?? ""
                if !force, !changeKey.isEmpty, let old = try items.get(id), old.tag == changeKey {
                    if full { try items.mark(id, ItemSpill.listed) }
                    continue
                }
                let bytes = item.encoded()
                let node = try await storeContent(name: itemFileName(id, ext: ".json"),
                                                  metadata: ["graph.id": id, "graph.changeKey": changeKey, "graph.kind": kind],
                                                  modified: Self.date(item["lastModifiedDateTime"]?.string),
                                                  { try await $0.append(ByteBuffer(bytes: bytes)) }, ctx)
                try items.put(.init(id: id, parent: "", name: node.name, tag: changeKey, isFolder: false, flags: full ? ItemSpill.listed : 0, node: node))
            }
            guard let seriesInstances else { return }
            for item in page where item["type"]?.string == "seriesMaster" && item["@removed"] == nil {
                guard let id = item["id"]?.string else { continue }
                _ = try await client.pages(seriesInstances(id), mailbox: mailbox) { try await apply($0, full: full) }
            }
        }
        let round: (link: String?, full: Bool)
        if listing {
            _ = try await client.pages(initial, mailbox: mailbox) { try await apply($0, full: true) }
            round = (nil, true)
        } else {
            round = try await deltaRound(link: link, initial: initial, mailbox: mailbox, what: path) { try await apply($0, full: $1) }
        }
        if !loaded, let parentTree, let same = try unchangedParent(tree: parentTree, extra: [:], metadata: nil) {
            return (same, round.link)
        }
        try load()
        if round.full { try items.removeUnlisted() }
        // Items whose data was lost at every site and which the round left as they were.
        for id in try items.ids(with: ItemSpill.lost) {
            do {
                try await apply([try await client.json(itemURL(id), mailbox: mailbox)], full: false, force: true)
            } catch let e as GraphError where e.code == .notFound {
                try items.remove(id)  // deleted since
            } catch let e as GraphError {
                recordError((path + [itemFileName(id, ext: ".json")]).joined(separator: "/"), e)  // the damaged node stays
            }
        }
        return (try await writeSpilled(items, metadata: nil, ctx), round.link)
    }
}
