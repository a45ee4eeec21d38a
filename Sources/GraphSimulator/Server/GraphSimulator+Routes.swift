import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The Graph endpoints: users, sites, mail folders and messages, calendar view, contacts and
/// drives, each with its delta function.
extension GraphSimulator {
    func route(_ p: [String], query: [String: String], request: Request, plan: FaultPlan) -> Response {
        let base = graphURL
        // Users without a service answer as Graph does for them.
        if p.count >= 3, p[0] == "users", let u = tenant.user(p[1]) {
            let exchange = ["mailFolders", "messages", "calendarView", "calendars", "events", "contactFolders"].contains { p[2].hasPrefix($0) }
            if exchange, plan.usersWithoutMailbox.contains(u.upn) {
                return Self.error(404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox.")
            }
            if p[2] == "drive", plan.usersWithoutDrive.contains(u.upn) {
                return Self.error(404, "ResourceNotFound", "User's mysite not found.")
            }
        }
        if let answer = mailRead(p, query: query, request: request) { return answer }
        switch p.count {
        case 1 where p[0] == "users":
            return users(query: query, request: request)
        case 1 where p[0] == "sites":
            let sites = tenant.state.withLock { $0.sites }
            return Self.json(200, ["@odata.context": "\(base)/$metadata#sites", "value": sites.map { siteJSON($0) }])
        case 2 where p[0] == "users":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return Self.json(200, userJSON(u))
        case 3 where p[0] == "sites" && p[2] == "drives":
            guard let site = tenant.state.withLock({ $0.sites.first { $0.id == p[1] } }) else { return notFound(p[1]) }
            return Self.json(200, ["value": zip(site.driveIds, site.libraryNames).map { ["id": $0, "name": $1, "driveType": "documentLibrary"] }])
        case 3 where p[0] == "users" && p[2] == "drive":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return Self.json(200, ["id": u.driveId, "driveType": "business", "name": "OneDrive", "owner": ["user": ["id": u.id, "displayName": u.displayName]]])
        case 3 where p[0] == "users" && p[2] == "calendars":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return calendars(user: u, flagDefault: !plan.calendarsWithoutDefaultFlag)
        case 3 where p[0] == "users" && p[2] == "calendar":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return Self.json(200, ["id": Tenant.defaultCalendarId(u.id), "name": "Calendar", "isDefaultCalendar": true])
        case 5 where p[0] == "users" && p[2] == "calendars" && p[4] == "events":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return calendarEvents(user: u, calendar: p[3], query: query, request: request)
        case 3 where p[0] == "users" && p[2] == "contactFolders":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return Self.json(200, ["value": tenant.contactFolders(user: u).map { ["id": $0.id, "displayName": $0.name, "parentFolderId": $0.parent] }])
        case 4 where p[0] == "users" && p[2] == "contactFolders":
            // One folder; `contacts` names the default one (as the well-known mail folder names do).
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            let id = p[3].lowercased() == "contacts" ? Tenant.defaultContactFolderId(u.id) : p[3]
            if id == Tenant.defaultContactFolderId(u.id) {
                return Self.json(200, ["id": id, "displayName": "Contacts", "parentFolderId": "contactsroot-" + u.id])
            }
            guard let folder = tenant.state.withLock({ $0.otherContactFolders[u.id] ?? [] }).first(where: { $0.id == id }) else { return notFound(p[3]) }
            return Self.json(200, ["id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent ?? Tenant.defaultContactFolderId(u.id)])
        case 5 where p[0] == "users" && p[2] == "contactFolders" && p[4] == "childFolders":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            let id = p[3].lowercased() == "contacts" ? Tenant.defaultContactFolderId(u.id) : p[3]
            guard id == Tenant.defaultContactFolderId(u.id) || tenant.contactFolderKey(user: u, id) != nil else { return notFound(p[3]) }
            return Self.json(200, ["value": tenant.contactFolders(user: u, parent: id).map { ["id": $0.id, "displayName": $0.name, "parentFolderId": $0.parent] }])
        case 4 where p[0] == "users" && p[2] == "calendar" && p[3] == "events":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return calendarEvents(user: u, calendar: Tenant.defaultCalendarId(u.id), query: query, request: request)
        case 5 where p[0] == "users" && p[2] == "contactFolders" && p[4] == "contacts", 3 where p[0] == "users" && p[2] == "contacts":
            // A folder's contacts; `/users/{id}/contacts` is the default folder's.
            let folder = p.count == 3 ? "contacts" : p[3]
            guard let u = tenant.user(p[1]), let key = tenant.contactFolderKey(user: u, folder) else { return notFound(folder) }
            let live = tenant.collection(key)?.live ?? []
            let size = Self.pageSize(request, query: query, default: 10)
            let offset = query["$skip"].flatMap(Int.init) ?? 0
            var body: [String: Any] = ["value": live.dropFirst(offset).prefix(size).compactMap { e -> [String: Any]? in
                if case .contact(let c) = e.payload { return tenant.contactJSON(id: e.id, c) } else { return nil }
            }]
            if offset + size < live.count { body["@odata.nextLink"] = "\(base)/users/\(u.id)/contactFolders/\(folder)/contacts?$top=\(size)&$skip=\(offset + size)" }
            return Self.json(200, body)
        case 4 where p[0] == "users" && p[2] == "mailFolders" && p[3] == "delta":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            let key = Tenant.foldersKey(u.id)
            let counts = folderCounts(u)
            return delta(key: key, link: "\(base)/users/\(u.id)/mailFolders/delta", style: .outlook, query: query, request: request, plan: plan, pageDefault: 10) { e, _ in
                guard case .folder(let f) = e.payload else { return nil }
                return tenant.folderJSON(id: e.id, f, user: u, counts: counts[e.id] ?? (0, 0, 0))
            }
        case 4 where p[0] == "users" && p[2] == "calendarView" && p[3] == "delta":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            if !Self.hasToken(query), query["startDateTime"] == nil || query["endDateTime"] == nil {
                return Self.error(400, "ErrorInvalidParameter", "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.")
            }
            return delta(key: Tenant.eventsKey(u.id), link: "\(base)/users/\(u.id)/calendarView/delta", style: .outlook, query: query, request: request, plan: plan, pageDefault: 10,
                         related: { e in
                             guard case .event(let x) = e.payload else { return [] }
                             return tenant.instances(master: e.id, x, stubs: true)
                         }) { e, _ in
                guard case .event(let x) = e.payload else { return nil }
                return tenant.eventJSON(id: e.id, x)
            }
        case 4 where p[0] == "users" && p[2] == "messages":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            guard let m = tenant.message(user: u.id, id: p[3]) else { return notFound(p[3]) }
            var json = tenant.messageJSON(id: p[3], m, user: u)
            if let select = Self.selection(query["$select"]) { json = json.filter { select.contains($0.key) || Self.alwaysReturned.contains($0.key) } }
            return Self.json(200, json)
        case 4 where p[0] == "drives" && p[2] == "root" && (p[3] == "delta" || p[3].hasPrefix("delta(")):
            let drive = p[1]
            guard tenant.collection(Tenant.driveKey(drive)) != nil else { return notFound(drive) }
            if plan.alwaysFail.contains(drive) { return Self.error(500, "generalException", "An unspecified error has occurred.") }
            var q = query
            if p[3].hasPrefix("delta(token="), let t = Self.functionToken(p[3]) { q["token"] = t }
            return delta(key: Tenant.driveKey(drive), link: "\(base)/drives/\(drive)/root/delta", style: .drive, query: q, request: request, plan: plan, pageDefault: 200) { e, _ in
                driveItemJSON(e, drive: drive)
            }
        case 4 where p[0] == "users" && p[2] == "events":
            // One event (GET /users/{id}/events/{id}).
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            let calendars = [Tenant.eventsKey(u.id)] + tenant.state.withLock { $0.otherCalendars[u.id] ?? [] }.map { Tenant.calendarKey(u.id, $0.id) }
            let (id, index) = Tenant.splitInstanceID(p[3]).map { ($0.master, Optional($0.index)) } ?? (p[3], nil)
            guard let e = calendars.lazy.compactMap({ self.tenant.entry($0, id) }).first, e.deleted == nil, case .event(let x) = e.payload else { return notFound(p[3]) }
            guard let index else { return Self.json(200, tenant.eventJSON(id: e.id, x)) }
            guard let occurrence = tenant.instanceJSON(master: id, x, index: index) else { return notFound(p[3]) }
            return Self.json(200, occurrence)
        case 5 where p[0] == "users" && p[2] == "events" && p[4] == "instances":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            return eventInstances(user: u, master: p[3], query: query, request: request)
        case 4 where p[0] == "drives" && p[2] == "items":
            // One driveItem, with a fresh download URL for a file.
            if plan.editedWhenFetchedByID.contains(p[3]), once("edit " + p[3]) { tenant.editFile(drive: p[1], id: p[3]) }
            guard let e = tenant.entry(Tenant.driveKey(p[1]), p[3]), e.deleted == nil, let json = driveItemJSON(e, drive: p[1]) else { return notFound(p[3]) }
            return Self.json(200, json)
        case 5 where p[0] == "users" && p[2] == "messages" && p[4] == "$value":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            if plan.alwaysFail.contains(p[3]) { return Self.error(500, "InternalServerError", "An internal server error occurred.") }
            guard !plan.notFound.contains(p[3]), let m = tenant.message(user: u.id, id: p[3]) else { return notFound(p[3]) }
            let mime = tenant.mime(id: p[3], m)
            return Response(status: .ok, headers: [.contentType: "text/plain", .contentLength: "\(mime.count)"], body: .init(byteBuffer: ByteBuffer(bytes: mime)))
        case 6 where p[0] == "users" && p[2] == "mailFolders" && p[4] == "messages" && p[5] == "delta":
            guard let u = tenant.user(p[1]) else { return notFound(p[1]) }
            guard tenant.entry(Tenant.foldersKey(u.id), p[3])?.deleted == nil, tenant.entry(Tenant.foldersKey(u.id), p[3]) != nil else { return notFound(p[3]) }
            if plan.alwaysFail.contains(p[3]) { return Self.error(500, "ErrorInternalServerError", "An internal server error occurred. The operation failed.") }
            return delta(key: Tenant.messagesKey(u.id, p[3]), link: "\(base)/users/\(u.id)/mailFolders('\(p[3].addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? p[3])')/messages/delta", style: .outlook,
                         query: query, request: request, plan: plan, pageDefault: 10) { e, select in
                guard case .message(let m) = e.payload else { return nil }
                return tenant.messageJSON(id: e.id, m, user: u, body: select.map { $0.contains("body") || $0.contains("bodyPreview") } ?? true)
            }
        case 6 where p[0] == "users" && p[2] == "contactFolders" && p[4] == "contacts" && p[5] == "delta":
            guard let u = tenant.user(p[1]), let key = tenant.contactFolderKey(user: u, p[3]) else { return notFound(p[3]) }
            return delta(key: key, link: "\(base)/users/\(u.id)/contactFolders/\(p[3])/contacts/delta", style: .outlook,
                         query: query, request: request, plan: plan, pageDefault: 10) { e, _ in
                guard case .contact(let c) = e.payload else { return nil }
                return tenant.contactJSON(id: e.id, c)
            }
        case 6 where p[0] == "users" && p[2] == "contactFolders" && p[4] == "contacts":
            // One contact (GET /users/{id}/contactFolders/{id}/contacts/{id}).
            guard let u = tenant.user(p[1]), let key = tenant.contactFolderKey(user: u, p[3]) else { return notFound(p[3]) }
            guard let e = tenant.entry(key, p[5]), e.deleted == nil, case .contact(let x) = e.payload else { return notFound(p[5]) }
            return Self.json(200, tenant.contactJSON(id: e.id, x))
        default:
            break
        }
        if let answer = driveRead(p, query: query, request: request) { return answer }
        // Graph's own spelling of a folder in links: mailFolders('id').
        if p.count == 5, p[0] == "users", p[2].hasPrefix("mailFolders('"), p[3] == "messages", p[4] == "delta" {
            let id = String(p[2].dropFirst("mailFolders('".count).dropLast(2))
            return route([p[0], p[1], "mailFolders", id, "messages", "delta"], query: query, request: request, plan: plan)
        }
        return Self.error(400, "BadRequest", "Resource not found for the segment '\(p.last ?? "")'.")
    }

    func notFound(_ id: String) -> Response {
        Self.error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    }

    private func users(query: [String: String], request: Request) -> Response {
        let all = tenant.state.withLock { $0.users }
        let size = Self.pageSize(request, query: query, default: 100)
        let offset = query["$skiptoken"].flatMap { Int($0.dropFirst(2)) } ?? 0
        var body: [String: Any] = [
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
            "value": all.dropFirst(offset).prefix(size).map(userJSON),
        ]
        if offset + size < all.count { body["@odata.nextLink"] = "\(graphURL)/users?$top=\(size)&$skiptoken=X'\(offset + size)" }
        return Self.json(200, body)
    }

    private func userJSON(_ u: User) -> [String: Any] {
        let parts = u.displayName.split(separator: " ")
        return [
            "businessPhones": [], "displayName": u.displayName, "givenName": String(parts.first ?? ""),
            "jobTitle": NSNull(), "mail": u.upn, "mobilePhone": NSNull(), "officeLocation": NSNull(),
            "preferredLanguage": "en-US", "surname": String(parts.last ?? ""), "userPrincipalName": u.upn, "id": u.id,
        ]
    }

    private func siteJSON(_ s: Site) -> [String: Any] {
        ["id": s.id, "name": s.name, "displayName": s.displayName, "webUrl": "https://\(tenant.spec.tenantDomain.split(separator: ".")[0]).sharepoint.com/sites/\(s.name)",
         "createdDateTime": "2026-01-01T00:00:00Z"]
    }

    private func folderCounts(_ u: User) -> [String: (Int, Int, Int)] {
        tenant.state.withLock { s in
            let folders = s.collections[Tenant.foldersKey(u.id)]?.live ?? []
            var out: [String: (Int, Int, Int)] = [:]
            for f in folders {
                let msgs = s.collections[Tenant.messagesKey(u.id, f.id)]?.live ?? []
                let unread = msgs.filter { if case .message(let m) = $0.payload { !m.isRead } else { false } }.count
                let children = folders.filter { if case .folder(let x) = $0.payload { x.parentFolderId == f.id } else { false } }.count
                out[f.id] = (msgs.count, unread, children)
            }
            return out
        }
    }

    func driveItemJSON(_ e: Entry, drive: String) -> [String: Any]? {
        guard case .driveItem(let d) = e.payload else { return nil }
        var o: [String: Any] = [
            "id": e.id, "name": d.name,
            "eTag": "\"{\(e.id)},\(d.version)\"", "cTag": "\"c:{\(e.id)},\(d.version)\"",
            "createdDateTime": "2026-01-01T00:00:00Z", "lastModifiedDateTime": Tenant.iso(d.modified),
            "size": d.size,
        ]
        o["parentReference"] = d.parentId.map { ["driveId": drive, "driveType": "business", "id": $0] as [String: Any] } ?? ["driveId": drive, "driveType": "business"]
        if e.deleted != nil {
            o["deleted"] = ["state": "deleted"]
            return o
        }
        if d.parentId == nil { o["root"] = [String: Any]() }
        o["fileSystemInfo"] = ["createdDateTime": Tenant.iso(d.created ?? Date(timeIntervalSince1970: 1_767_225_600)),
                               "lastModifiedDateTime": Tenant.iso(d.modified)]
        if let package = d.package {
            o["package"] = ["type": package]
        } else if d.isFolder {
            o["folder"] = ["childCount": 0]
        } else {
            o["file"] = ["mimeType": Corpus.mimeType(d.name), "hashes": ["quickXorHash": tenant.quickXorHash(d, id: e.id)]]
            o["@microsoft.graph.downloadUrl"] = "\(authorityURL)/download/\(drive)/\(e.id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? e.id)?v=\(d.version)&tempauth=\(UUID().uuidString.prefix(8))&issued=\(Int64(Date().timeIntervalSince1970 * 1000))"
        }
        return o
    }

    // MARK: Delta

    enum LinkStyle { case outlook, drive }

    /// A delta token: which collection, the change-log position the round started from, where
    /// it ends (fixed for all pages of a round), the page offset, the token generation and the
    /// round's `$select` (as Graph's tokens carry the first request's query options).
    struct DeltaToken: Codable {
        var c: String
        var b: Int
        var u: Int?
        var o: Int
        var g: Int
        var s: String? = nil
    }

    /// The properties named by a `$select` list, or nil when there is none.
    static func selection(_ list: String?) -> Set<String>? {
        guard let list, !list.isEmpty else { return nil }
        return Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }

    /// The properties a `$select` keeps; Graph returns these whatever is selected.
    static let alwaysReturned: Set<String> = ["id", "@odata.type", "@odata.etag", "@removed"]

    static func hasToken(_ q: [String: String]) -> Bool { q["$skiptoken"] != nil || q["$deltatoken"] != nil || q["token"] != nil }

    static func functionToken(_ segment: String) -> String? {
        // delta(token='…') or delta(token=…)
        var inner = segment.dropFirst("delta(token=".count).dropLast()
        if inner.hasPrefix("'") { inner = inner.dropFirst().dropLast() }
        return String(inner)
    }

    private func delta(key: String, link: String, style: LinkStyle, query: [String: String], request: Request, plan: FaultPlan,
                       pageDefault: Int, related: (Entry) -> [[String: Any]] = { _ in [] }, render: (Entry, Set<String>?) -> [String: Any]?) -> Response {
        let size = Self.pageSize(request, query: query, default: pageDefault)
        var token = DeltaToken(c: key, b: 0, u: nil, o: 0, g: plan.deltaGeneration, s: query["$select"])
        if let raw = query["$skiptoken"] ?? query["$deltatoken"] ?? query["token"] {
            if style == .drive, raw == "latest" {
                let seq = tenant.currentSeq
                return Self.json(200, ["value": [Any](), "@odata.deltaLink": "\(link)?token=\(encode(DeltaToken(c: key, b: seq, u: nil, o: 0, g: plan.deltaGeneration, s: query["$select"])))"])
            }
            guard let data = Data(base64Encoded: Self.unURLSafe(raw)), let t = try? JSONDecoder().decode(DeltaToken.self, from: data), t.c == key else {
                return Self.error(400, "BadRequest", "The delta token is not valid for this resource.")
            }
            if t.g < plan.deltaGeneration {
                counters.withLock { $0.expiredTokens += 1 }
                return style == .drive
                    ? Self.error(410, "resyncChangesApplyDifferences", "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd.")
                    : Self.error(410, "SyncStateNotFound", "The sync state generation was not found.")
            }
            token = t
        }
        let upTo = token.u ?? tenant.currentSeq
        let collection = tenant.collection(key) ?? Collection()  // an empty folder has no log yet
        let changes = collection.changes(since: token.b, upTo: upTo)
        let page = changes.dropFirst(token.o).prefix(size)
        let select = Self.selection(token.s)
        var value: [Any] = []
        for e in page {
            if e.deleted != nil, style == .outlook {
                value.append(["@odata.type": typeName(e), "id": e.id, "@removed": ["reason": "deleted"]])
                // A deleted series takes its occurrences with it.
                for r in related(e) { if let id = r["id"] { value.append(["@odata.type": typeName(e), "id": id, "@removed": ["reason": "deleted"]]) } }
            } else if var o = render(e, select) {
                if let select { o = o.filter { select.contains($0.key) || Self.alwaysReturned.contains($0.key) } }
                value.append(o)
                value += related(e)  // a series is never split across pages
            }
        }
        var body: [String: Any] = ["@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(\(typeName(e: page.first)))", "value": value]
        if token.o + size < changes.count {
            let next = encode(DeltaToken(c: key, b: token.b, u: upTo, o: token.o + size, g: token.g, s: token.s))
            body["@odata.nextLink"] = style == .drive ? "\(link)(token='\(next)')" : "\(link)?$skiptoken=\(next)"
        } else {
            let next = encode(DeltaToken(c: key, b: upTo, u: nil, o: 0, g: token.g, s: token.s))
            body["@odata.deltaLink"] = style == .drive ? "\(link)?token=\(next)" : "\(link)?$deltatoken=\(next)"
        }
        return Self.json(200, body)
    }

    private func typeName(_ e: Entry) -> String { "#microsoft.graph." + typeName(e: e) }

    private func typeName(e: Entry?) -> String {
        switch e?.payload {
        case .folder: "mailFolder"
        case .message: "message"
        case .event: "event"
        case .contact: "contact"
        case .driveItem: "driveItem"
        case nil: "entity"
        }
    }

    private func encode(_ t: DeltaToken) -> String {
        let data = (try? JSONEncoder().encode(t)) ?? Data()
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func unURLSafe(_ s: String) -> String {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return t
    }

    // MARK: Downloads

    /// Whether a download URL has lapsed: past its lifetime, or past its uses (which this
    /// request then counts against).
    /// True the first time it is asked about `key`.
    func once(_ key: String) -> Bool {
        runtime.withLock { $0.firedOnce.insert(key).inserted }
    }

    private func downloadURLExpired(_ query: [String: String], _ plan: FaultPlan) -> Bool {
        let issued = query["issued"].flatMap(Double.init).map { $0 / 1000 } ?? 0
        if Date().timeIntervalSince1970 - issued > plan.downloadURLLifetime { return true }
        guard plan.downloadURLUses > 0, let key = query["tempauth"] else { return false }
        return runtime.withLock { r in
            let uses = r.downloadURLUses[key, default: 0] + 1
            r.downloadURLUses[key] = uses
            return uses > plan.downloadURLUses
        }
    }

    /// Pre-authenticated content URLs, as Graph's `@microsoft.graph.downloadUrl`: no bearer token,
    /// `Range` supported, content streamed in 64 KiB pieces.
    func download(drive: String, item: String, query: [String: String], range: String?) async -> Response {
        guard let e = tenant.entry(Tenant.driveKey(drive), item), e.deleted == nil, case .driveItem(let d) = e.payload, !d.isFolder else {
            return notFound(item)
        }
        let plan = faults.withLock { $0 }
        if downloadURLExpired(query, plan) || (plan.lapsedOnFirstUse.contains(item) && once("lapse " + item)) {
            counters.withLock { $0.expiredDownloadURLs += 1 }
            return Self.error(401, "unauthenticated", "The download URL has expired.")
        }
        if plan.notFound.contains(item) { return notFound(item) }
        if plan.alwaysFail.contains(item) { return Self.error(500, "generalException", "An unspecified error has occurred.") }
        var start: Int64 = 0
        if let range, range.hasPrefix("bytes="), let lo = Int64(range.dropFirst(6).prefix { $0.isNumber }) { start = lo }
        guard start <= d.size else {
            return Response(status: .rangeNotSatisfiable, headers: [Self.contentRangeField: "bytes */\(d.size)"])
        }
        let n = counters.withLock { $0.downloads += 1; return $0.downloads }
        let cut = plan.cutDownloadsEvery > 0 && n % plan.cutDownloadsEvery == 0 && d.size - start > 2
        if cut { counters.withLock { $0.cutDownloads += 1 } }
        let total = d.size - start
        var headers: HTTPFields = [.contentType: "application/octet-stream", .contentLength: "\(total)"]
        if start > 0 { headers[Self.contentRangeField] = "bytes \(start)-\(d.size - 1)/\(d.size)" }
        let sim = self, from = start
        let body = ResponseBody(contentLength: Int(total)) { writer in
            var pos = from
            let stopAt = cut ? from + total / 2 : d.size
            while pos < stopAt {
                let n = Int(min(65_536, stopAt - pos))
                try await writer.write(ByteBuffer(bytes: sim.tenant.fileBytes(d, offset: pos, length: n)))
                sim.counters.withLock { $0.downloadBytes += Int64(n) }
                pos += Int64(n)
            }
            if cut { throw SimulatorError("download cut short on purpose") }
            try await writer.finish(nil)
        }
        return Response(status: start > 0 ? .partialContent : .ok, headers: headers, body: body)
    }
}
