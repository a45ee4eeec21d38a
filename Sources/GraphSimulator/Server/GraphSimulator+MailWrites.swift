import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Outlook's write side as documented (`m365-restore.md` §1, §7.6): folders (`childFolders`,
/// 409 ErrorFolderExists), messages created from JSON (a draft unless PidTagMessageFlags says
/// otherwise; dates from PidTagClientSubmitTime and PidTagMessageDeliveryTime), extended
/// properties stored and found with `$filter=singleValueExtendedProperties/Any(…)`, the 4 MB
/// request limit, attachments (POST below 3 MB, upload sessions above), the IncomingBytes limit.
extension GraphSimulator {
    static let flagsProperty = "integer 0x0e07", sentProperty = "systemtime 0x0039", receivedProperty = "systemtime 0x0e06"

    /// GETs of folders by id or well-known name, child folders and a folder's messages (with
    /// `$filter` by extended property or internetMessageId). Nil when `p` is not one of these.
    func mailRead(_ p: [String], query: [String: String], request: Request) -> Response? {
        guard p.count >= 3, p[0] == "users", p[2] == "mailFolders", let u = tenant.user(p[1]) else { return nil }
        switch p.count {
        case 3:
            return folderList(u, parent: nil, query: query)
        case 4 where p[3] != "delta":
            guard let resolved = tenant.mailFolder(user: u, p[3]), let id = resolved else { return notFound(p[3]) }
            guard let e = tenant.entry(Tenant.foldersKey(u.id), id), case .folder(let f) = e.payload else { return notFound(p[3]) }
            return Self.json(200, tenant.folderJSON(id: id, f, user: u, counts: (0, 0, 0)))
        case 5 where p[4] == "childFolders":
            guard let resolved = tenant.mailFolder(user: u, p[3]) else { return notFound(p[3]) }
            return folderList(u, parent: resolved, query: query)
        case 5 where p[4] == "messages":
            guard let resolved = tenant.mailFolder(user: u, p[3]), let folder = resolved else { return notFound(p[3]) }
            var messages = tenant.folderMessages(user: u, folder: folder)
            if let filter = query["$filter"] {
                if let (id, value) = Self.propertyFilter(filter) {
                    messages = messages.filter { $0.message.restored?.properties[id.lowercased()] == value }
                } else if let wanted = Self.quoted(after: "internetMessageId eq ", in: filter) {
                    messages = messages.filter { tenant.messageJSON(id: $0.id, $0.message, user: u, body: false)["internetMessageId"] as? String == wanted }
                } else {
                    return Self.error(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
                }
            }
            let size = Self.pageSize(request, query: query, default: 10)
            let offset = query["$skiptoken"].flatMap(Int.init) ?? 0
            let select = Self.selection(query["$select"])
            var body: [String: Any] = ["value": messages.dropFirst(offset).prefix(size).map { entry -> [String: Any] in
                let json = tenant.messageJSON(id: entry.id, entry.message, user: u, body: select.map { $0.contains("body") } ?? true)
                return select.map { s in json.filter { s.contains($0.key) || Self.alwaysReturned.contains($0.key) } } ?? json
            }]
            if offset + size < messages.count {
                var next = "\(graphURL)/users/\(u.id)/mailFolders/\(folder)/messages?$top=\(size)&$skiptoken=\(offset + size)"
                if let s = query["$select"] { next += "&$select=\(s)" }
                if let f = query["$filter"] { next += "&$filter=\(f.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? f)" }
                body["@odata.nextLink"] = next
            }
            return Self.json(200, body)
        default:
            return nil
        }
    }

    private func folderList(_ u: User, parent: String?, query: [String: String]) -> Response {
        var folders = tenant.mailFolders(user: u, parent: parent)
        if let filter = query["$filter"] {
            guard let name = Self.quoted(after: "displayName eq ", in: filter) else {
                return Self.error(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
            }
            folders = folders.filter { $0.folder.displayName == name }
        }
        return Self.json(200, ["value": folders.map { tenant.folderJSON(id: $0.id, $0.folder, user: u, counts: (0, 0, 0)) }])
    }

    /// POST and DELETE under `/users/{id}/`.
    func mailWrite(_ p: [String], query: [String: String], request: Request, plan: FaultPlan) async -> Response {
        guard p.count >= 3, p[0] == "users", let u = tenant.user(p[1]) else { return Self.error(400, "BadRequest", "Invalid request") }
        if plan.mailboxesReadOnly { return Self.error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.") }
        var req = request
        guard let buffer = try? await req.collectBody(upTo: 4 << 20) else {
            return Self.error(413, "RequestBodyTooLarge", "The maximum request length supported is 4MB.")
        }
        let body = Array(buffer.readableBytesView)
        if let wait = incomingBytes(u, count: body.count, plan: plan) {
            counters.withLock { $0.throttled += 1 }
            return Self.throttled(wait, "ApplicationThrottled", "Application is over its IncomingBytes limit.")
        }
        counters.withLock { $0.writes += 1 }
        let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        if let answer = calendarWrite(u, p, json: json, body: body, method: request.method) { return answer }
        switch (request.method, p.count) {
        case (.post, 3) where p[2] == "mailFolders":
            return createFolder(u, parent: nil, json: json)
        case (.post, 5) where p[2] == "mailFolders" && p[4] == "childFolders":
            guard let parent = tenant.mailFolder(user: u, p[3]) else { return notFound(p[3]) }
            return createFolder(u, parent: parent, json: json)
        case (.post, 5) where p[2] == "mailFolders" && p[4] == "messages":
            guard let resolved = tenant.mailFolder(user: u, p[3]), let folder = resolved else { return notFound(p[3]) }
            if request.headers[.contentType]?.lowercased().hasPrefix("text/plain") == true {
                return createMessageFromMIME(u, folder: folder, base64: body)
            }
            let answer = createMessage(u, folder: folder, json: json)
            let n = counters.withLock { $0.messagesCreated }
            if plan.failAfterCreatingEvery > 0, n % plan.failAfterCreatingEvery == 0 {
                return Self.error(500, "ErrorInternalServerError", "An internal server error occurred. The operation failed.")
            }
            return answer
        case (.post, 5) where p[2] == "messages" && p[4] == "attachments":
            if plan.attachmentNotFoundFirst, once("attachment " + p[3]) {
                counters.withLock { $0.transientNotFound += 1 }
                return notFound(p[3])
            }
            guard let attachment = Self.attachment(json) else { return Self.error(400, "ErrorInvalidProperty", "The property 'Item' is required.") }
            guard tenant.updateMessage(user: u, id: p[3], { $0.restored?.attachments.append(attachment) }) != nil else { return notFound(p[3]) }
            return Self.json(201, ["id": attachment.id, "name": attachment.name, "size": attachment.bytes.count])
        case (.post, 6) where p[2] == "messages" && p[4] == "attachments" && p[5] == "createUploadSession":
            let item = json["AttachmentItem"] as? [String: Any] ?? [:]
            let size = (item["size"] as? NSNumber)?.intValue ?? 0
            guard size >= 3 << 20 else {
                return Self.error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "Attachment size should not be less than 3 MB.")
            }
            guard tenant.message(user: u.id, id: p[3]) != nil else { return notFound(p[3]) }
            var session = UploadSession(drive: "", parent: "", name: item["name"] as? String ?? "attachment", conflict: .rename, created: nil, modified: nil,
                                        expires: Date().addingTimeInterval(plan.uploadSessionLifetime))
            session.attachment = .init(user: u.id, message: p[3], contentType: item["contentType"] as? String ?? "application/octet-stream",
                                       isInline: item["isInline"] as? Bool ?? false, contentID: item["contentId"] as? String)
            let token = UUID().uuidString.lowercased()
            runtime.withLock { $0.uploads[token] = session }
            return Self.json(201, ["uploadUrl": "\(authorityURL)/upload/\(token)", "expirationDateTime": Tenant.iso(session.expires), "nextExpectedRanges": ["0-"]])
        case (.patch, 4) where p[2] == "messages":
            if plan.failMessagePatches { return Self.error(500, "ErrorInternalServerError", "An internal server error occurred. The operation failed.") }
            // Extended properties and read state; the draft state is read-only after the first
            // save (MS-OXCMSG), so a flags property changes nothing here.
            var properties: [String: String] = [:]
            for prop in json["singleValueExtendedProperties"] as? [[String: Any]] ?? [] {
                if let id = prop["id"] as? String, let v = prop["value"] as? String { properties[id.lowercased()] = v }
            }
            let read = json["isRead"] as? Bool
            guard let m = tenant.updateMessage(user: u, id: p[3], { m in
                m.restored?.properties.merge(properties) { $1 }
                if let read { m.isRead = read }
            }) else { return notFound(p[3]) }
            return Self.json(200, tenant.messageJSON(id: p[3], m, user: u))
        case (.delete, 4) where p[2] == "events":
            let keys = [Tenant.eventsKey(u.id)] + tenant.state.withLock { $0.otherCalendars[u.id] ?? [] }.map { Tenant.calendarKey(u.id, $0.id) }
            guard let key = keys.first(where: { tenant.entry($0, p[3]).map { $0.deleted == nil } ?? false }) else { return notFound(p[3]) }
            tenant.state.withLock { s in
                s.seq += 1
                s.collections[key]?.delete(p[3], seq: s.seq)
            }
            return Response(status: .noContent)
        case (.delete, 6) where p[2] == "contactFolders" && p[4] == "contacts", (.delete, 4) where p[2] == "contacts":
            let (folder, item) = p.count == 4 ? ("contacts", p[3]) : (p[3], p[5])
            guard let key = tenant.contactFolderKey(user: u, folder), tenant.entry(key, item)?.deleted == nil, tenant.entry(key, item) != nil else { return notFound(item) }
            tenant.state.withLock { s in
                s.seq += 1
                s.collections[key]?.delete(item, seq: s.seq)
            }
            return Response(status: .noContent)
        case (.delete, 4) where p[2] == "messages":
            guard tenant.message(user: u.id, id: p[3]) != nil else { return notFound(p[3]) }
            tenant.deleteMessage(upn: u.upn, id: p[3])
            return Response(status: .noContent)
        default:
            return Self.error(405, "ErrorInvalidRequest", "The simulator does not take \(request.method) here.")
        }
    }

    private func createFolder(_ u: User, parent: String??, json: [String: Any]) -> Response {
        guard let name = json["displayName"] as? String, !name.isEmpty else { return Self.error(400, "ErrorInvalidRequest", "displayName is required.") }
        let parentID = parent ?? nil
        guard let id = tenant.createMailFolder(user: u, parent: parentID, name: name) else {
            return Self.error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        }
        guard let e = tenant.entry(Tenant.foldersKey(u.id), id), case .folder(let f) = e.payload else { return notFound(id) }
        return Self.json(201, tenant.folderJSON(id: id, f, user: u, counts: (0, 0, 0)))
    }

    private func createMessage(_ u: User, folder: String, json: [String: Any]) -> Response {
        func recipient(_ v: Any?) -> RestoredMessage.Recipient? {
            guard let e = (v as? [String: Any])?["emailAddress"] as? [String: Any], let a = e["address"] as? String else { return nil }
            return .init(name: e["name"] as? String ?? "", address: a)
        }
        func recipients(_ key: String) -> [RestoredMessage.Recipient] { (json[key] as? [Any] ?? []).compactMap(recipient) }
        var properties: [String: String] = [:]
        for p in json["singleValueExtendedProperties"] as? [[String: Any]] ?? [] {
            if let id = p["id"] as? String, let v = p["value"] as? String { properties[id.lowercased()] = v }
        }
        var headers: [(name: String, value: String)] = []
        for h in json["internetMessageHeaders"] as? [[String: Any]] ?? [] {
            guard let name = h["name"] as? String, let value = h["value"] as? String else { continue }
            guard name.lowercased().hasPrefix("x-") else {
                return Self.error(400, "InvalidInternetMessageHeader", "The internet message header name '\(name)' should start with 'x-' or 'X-'.")
            }
            headers.append((name, value))
        }
        var attachments: [RestoredMessage.Attachment] = []
        for a in json["attachments"] as? [[String: Any]] ?? [] {
            guard let attachment = Self.attachment(a) else { return Self.error(400, "ErrorInvalidProperty", "The property 'Item' is required.") }
            attachments.append(attachment)
        }
        let now = Date()
        let flags = properties[Self.flagsProperty].flatMap(Int.init)
        let body = json["body"] as? [String: Any]
        let r = RestoredMessage(
            isDraft: flags.map { $0 & 8 != 0 } ?? true,
            sent: properties[Self.sentProperty].flatMap(Tenant.parseISO) ?? now, created: now,
            bodyIsHTML: (body?["contentType"] as? String)?.lowercased() == "html", body: body?["content"] as? String ?? "",
            from: recipient(json["from"]), to: recipients("toRecipients"), cc: recipients("ccRecipients"), bcc: recipients("bccRecipients"),
            replyTo: recipients("replyTo"), importance: json["importance"] as? String ?? "normal", categories: json["categories"] as? [String] ?? [],
            flagStatus: (json["flag"] as? [String: Any])?["flagStatus"] as? String,
            internetMessageId: json["internetMessageId"] as? String ?? "<\(UUID().uuidString)@simulator>",
            headers: headers, attachments: attachments, properties: properties, mime: nil)
        let received = properties[Self.receivedProperty].flatMap(Tenant.parseISO) ?? now
        let id = tenant.createMessage(user: u, folder: folder, subject: json["subject"] as? String ?? "", isRead: json["isRead"] as? Bool ?? false,
                                      r, received: received)
        counters.withLock { $0.messagesCreated += 1 }
        guard let m = tenant.message(user: u.id, id: id) else { return notFound(id) }
        return Self.json(201, tenant.messageJSON(id: id, m, user: u))
    }

    /// A message from MIME (base64 in a text/plain body): always a draft, received now, sent at
    /// its `Date:` header, the MIME kept as it came.
    private func createMessageFromMIME(_ u: User, folder: String, base64: [UInt8]) -> Response {
        let text = String(decoding: base64, as: UTF8.self).filter { !$0.isWhitespace }
        guard let data = Data(base64Encoded: text), !data.isEmpty else {
            return Self.error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
        }
        let mime = Array(data)
        let head = String(decoding: mime.prefix(64 << 10), as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n").first ?? ""
        func header(_ name: String) -> String? {
            head.split(separator: "\n").first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
                .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "EEE, d MMM yyyy HH:mm:ss Z"
        let now = Date()
        let r = RestoredMessage(isDraft: true, sent: header("Date").flatMap { f.date(from: $0) } ?? now, created: now, bodyIsHTML: false, body: "",
                                from: nil, to: [], cc: [], bcc: [], replyTo: [], importance: "normal", categories: [], flagStatus: nil,
                                internetMessageId: header("Message-ID") ?? "<\(UUID().uuidString)@simulator>", headers: [], attachments: [],
                                properties: [:], mime: mime)
        let id = tenant.createMessage(user: u, folder: folder, subject: header("Subject") ?? "", isRead: true, r, received: now)
        counters.withLock { $0.messagesCreated += 1 }
        guard let m = tenant.message(user: u.id, id: id) else { return notFound(id) }
        return Self.json(201, tenant.messageJSON(id: id, m, user: u))
    }

    static func attachment(_ a: [String: Any]) -> RestoredMessage.Attachment? {
        let type = a["@odata.type"] as? String ?? ""
        let id = UUID().uuidString
        if type.hasSuffix("itemAttachment") {
            guard let item = a["item"] as? [String: Any] else { return nil }
            let text = (item["body"] as? [String: Any])?["content"] as? String ?? ""
            return .init(id: id, name: a["name"] as? String ?? "", contentType: "message/rfc822", bytes: Array(text.utf8), isInline: false, contentID: nil,
                         itemSubject: item["subject"] as? String ?? "")
        }
        guard let b64 = a["contentBytes"] as? String, let data = Data(base64Encoded: b64) else { return nil }
        return .init(id: id, name: a["name"] as? String ?? "", contentType: a["contentType"] as? String ?? "application/octet-stream", bytes: Array(data),
                     isInline: a["isInline"] as? Bool ?? false, contentID: a["contentId"] as? String, itemSubject: nil)
    }

    /// Seconds to wait when `count` more bytes would pass the mailbox's upload budget (a bucket
    /// holding the 5-minute allowance, refilled evenly); nil when they fit.
    func incomingBytes(_ u: User, count: Int, plan: FaultPlan) -> Double? {
        guard count > 0 else { return nil }
        guard plan.mailboxUploadBytesPer5Minutes > 0 else {
            countUpload(u, count)
            return nil
        }
        let capacity = Double(plan.mailboxUploadBytesPer5Minutes), rate = capacity / max(1, plan.mailboxUploadWindow)
        let wait: Double? = runtime.withLock { r in
            let now = Date()
            var (tokens, last) = r.byteBuckets[u.id] ?? (capacity, now)
            tokens = min(capacity, tokens + now.timeIntervalSince(last) * rate)
            last = now
            if tokens < Double(count) {
                r.byteBuckets[u.id] = (tokens, last)
                return (Double(count) - tokens) / rate
            }
            r.byteBuckets[u.id] = (tokens - Double(count), last)
            return nil
        }
        if wait == nil { countUpload(u, count) }
        return wait
    }

    private func countUpload(_ u: User, _ count: Int) {
        let total = runtime.withLock { r in
            r.uploadedByMailbox[u.id, default: 0] += Int64(count)
            return r.uploadedByMailbox[u.id, default: 0]
        }
        counters.withLock { s in
            s.mailboxUploadedBytes += Int64(count)
            s.busiestMailboxUploadedBytes = max(s.busiestMailboxUploadedBytes, total)
        }
    }

    /// `singleValueExtendedProperties/Any(ep: ep/id eq 'X' and ep/value eq 'Y')` → (X, Y).
    static func propertyFilter(_ filter: String) -> (String, String)? {
        guard filter.hasPrefix("singleValueExtendedProperties/Any("), let id = quoted(after: "ep/id eq ", in: filter),
              let value = quoted(after: "ep/value eq ", in: filter) else { return nil }
        return (id, value)
    }

    /// The OData string literal after `prefix` ('' stands for ').
    static func quoted(after prefix: String, in text: String) -> String? {
        guard let r = text.range(of: prefix) else { return nil }
        var rest = text[r.upperBound...]
        guard rest.first == "'" else { return nil }
        rest = rest.dropFirst()
        var out = ""
        while let c = rest.first {
            rest = rest.dropFirst()
            if c == "'" {
                if rest.first == "'" { out.append("'"); rest = rest.dropFirst(); continue }
                return out
            }
            out.append(c)
        }
        return nil
    }
}
