import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import QuickXorHash

/// Graph's drive write side, as documented (docs/GRAPH.md, "Restoring files"; the research
/// brief `m365-restore.md` §4): items by path (`root:/a/b:`), children listings, folder
/// creation with `@microsoft.graph.conflictBehavior`, small uploads (`/content`), upload sessions
/// (fragments of multiples of 320 KiB, in order, `nextExpectedRanges`, 416 for a repeated range,
/// 409 for a second session on one path, expiry), `fileSystemInfo`, PATCH and DELETE.
extension GraphSimulator {
    /// An item addressed by id or by path: `drive`, the item the path starts from (nil: the
    /// root), the names below it, and what is asked of it (`children`, `content`,
    /// `createUploadSession`).
    struct DriveAddress {
        var drive: String
        var base: String?
        var names: [String]
        var action: String?

        init?(_ p: [String]) {
            guard p.count >= 3, p[0] == "drives" else { return nil }
            drive = p[1]
            var rest = Array(p.dropFirst(2))
            var byPath = false
            if rest.first == "root" {
                rest.removeFirst()
            } else if rest.first == "root:" {
                rest.removeFirst()
                byPath = true
            } else if rest.first == "items", rest.count >= 2 {
                var id = rest[1]
                rest.removeFirst(2)
                if id.hasSuffix(":") { id.removeLast(); byPath = true }
                base = id
            } else {
                return nil
            }
            names = []
            if byPath {
                while let first = rest.first {
                    rest.removeFirst()
                    if first.hasSuffix(":") { names.append(String(first.dropLast())); break }
                    names.append(first)
                }
                names = names.filter { !$0.isEmpty }
            }
            guard rest.count <= 1 else { return nil }
            action = rest.first
        }
    }

    /// An open upload session.
    struct UploadSession: Sendable {
        var drive: String
        var parent: String
        var name: String
        var conflict: Tenant.ConflictBehavior
        var created: Date?
        var modified: Date?
        /// The bytes received, while they are at most ``GraphSimulator/keptUploadBytes``.
        var bytes: [UInt8] = []
        /// Bytes received, and their digests (kept for every upload).
        var received: Int64 = 0
        var sha256 = SHA256()
        var quickXor = QuickXorHash()
        var total: Int64?
        var expires: Date
        /// When it was made (its URL's token lasts ``FaultPlan/uploadURLTokenLifetime``) and
        /// whether its token lapses early (``FaultPlan/uploadTokenExpiresAfterFragments``).
        var opened = Date()
        var tokenLapsesEarly = false
        var fragmentsStored = 0
        /// A large mail attachment's session instead of a file's: the message it goes to.
        var attachment: AttachmentTarget?
        var key: String { "\(drive)|\(parent)|\(name.lowercased())" }
    }

    struct AttachmentTarget: Sendable {
        var user: String
        var message: String
        var contentType: String
        var isInline: Bool
        var contentID: String?
    }

    static let fragmentUnit = 327_680
    /// Uploads up to this size keep their bytes; larger ones only their size and digests.
    static let keptUploadBytes = 256 << 20

    /// GET of a drive item by path, or of a folder's children. Nil when `p` is not one of these.
    func driveRead(_ p: [String], query: [String: String], request: Request) -> Response? {
        guard let address = DriveAddress(p), address.action == nil || address.action == "children",
              !(address.base != nil && address.names.isEmpty && address.action == nil) else { return nil }
        guard tenant.collection(Tenant.driveKey(address.drive)) != nil else { return notFound(address.drive) }
        guard let id = tenant.driveItem(address.drive, below: address.base, names: address.names),
              let e = tenant.entry(Tenant.driveKey(address.drive), id) else {
            return Self.error(404, "itemNotFound", "The resource could not be found.")
        }
        guard address.action == "children" else { return driveItemJSON(e, drive: address.drive).map { Self.json(200, $0) } }
        let children = tenant.driveChildren(address.drive, of: id)
        let size = Self.pageSize(request, query: query, default: 200)
        let offset = query["$skiptoken"].flatMap(Int.init) ?? 0
        var body: [String: Any] = ["value": children.dropFirst(offset).prefix(size).compactMap { driveItemJSON($0, drive: address.drive) }]
        if offset + size < children.count {
            body["@odata.nextLink"] = "\(graphURL)/drives/\(address.drive)/items/\(id)/children?$top=\(size)&$skiptoken=\(offset + size)"
        }
        return Self.json(200, body)
    }

    /// POST, PUT, PATCH and DELETE on drive items.
    func driveWrite(_ p: [String], query: [String: String], request: Request, plan: FaultPlan) async -> Response {
        guard let address = DriveAddress(p) else { return Self.error(400, "invalidRequest", "Invalid request") }
        guard tenant.collection(Tenant.driveKey(address.drive)) != nil else { return notFound(address.drive) }
        if plan.drivesReadOnly { return Self.error(403, "accessDenied", "Access denied") }
        counters.withLock { $0.writes += 1 }
        var req = request
        let limit = address.action == "content" ? 250 << 20 : 4 << 20
        guard let buffer = try? await req.collectBody(upTo: limit) else {
            return Self.error(413, "requestTooLarge", "The maximum request length supported is \(limit >> 20)MB.")
        }
        let body = Array(buffer.readableBytesView)
        let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        let drive = address.drive
        switch (request.method, address.action) {
        case (.post, "children"):
            guard let parent = tenant.driveItem(drive, below: address.base, names: address.names) else { return Self.error(404, "itemNotFound", "The resource could not be found.") }
            guard let name = json["name"] as? String, !name.isEmpty, json["folder"] != nil else {
                return Self.error(400, "invalidRequest", "A folder needs a name and a folder facet.")
            }
            let conflict = Self.conflict(json["@microsoft.graph.conflictBehavior"] as? String ?? query["@microsoft.graph.conflictBehavior"]) ?? .fail
            switch tenant.createDriveFolder(drive, parent: parent, name: name, conflict: conflict) {
            case .success(let (id, created)):
                guard let e = tenant.entry(Tenant.driveKey(drive), id), let out = driveItemJSON(e, drive: drive) else { return notFound(id) }
                return Self.json(created ? 201 : 200, out)
            case .failure(let f): return Self.driveError(f)
            }
        case (.post, "createUploadSession"):
            return createUploadSession(address, json: json, plan: plan)
        case (.put, "content"):
            let target = uploadTarget(address)
            guard let (parent, name) = target else { return Self.error(404, "itemNotFound", "The resource could not be found.") }
            let conflict = Self.conflict(query["@microsoft.graph.conflictBehavior"]) ?? .replace
            counters.withLock { $0.uploadedBytes += Int64(body.count) }
            switch tenant.commitDriveFile(drive, parent: parent, name: name, bytes: body, conflict: conflict, created: nil, modified: nil, quota: plan.driveQuotaBytes) {
            case .success(let id):
                counters.withLock { $0.filesCommitted += 1 }
                guard let e = tenant.entry(Tenant.driveKey(drive), id), let out = driveItemJSON(e, drive: drive) else { return notFound(id) }
                return Self.json(201, out)
            case .failure(let f): return Self.driveError(f)
            }
        case (.patch, nil):
            guard let id = tenant.driveItem(drive, below: address.base, names: address.names) else { return Self.error(404, "itemNotFound", "The resource could not be found.") }
            let info = json["fileSystemInfo"] as? [String: Any]
            _ = tenant.setDriveTimes(drive, id: id, created: (info?["createdDateTime"] as? String).flatMap(Tenant.parseISO),
                                     modified: (info?["lastModifiedDateTime"] as? String).flatMap(Tenant.parseISO))
            guard let e = tenant.entry(Tenant.driveKey(drive), id), let out = driveItemJSON(e, drive: drive) else { return notFound(id) }
            return Self.json(200, out)
        case (.delete, nil):
            guard let id = tenant.driveItem(drive, below: address.base, names: address.names), tenant.deleteDriveItem(drive, id: id) else {
                return Self.error(404, "itemNotFound", "The resource could not be found.")
            }
            return Response(status: .noContent)
        default:
            return Self.error(400, "invalidRequest", "Invalid request")
        }
    }

    /// The parent folder and name a by-path upload writes (`…/{parent}:/{name}:/…`), or an
    /// existing file's when addressed by id.
    private func uploadTarget(_ address: DriveAddress) -> (parent: String, name: String)? {
        if let last = address.names.last {
            guard let parent = tenant.driveItem(address.drive, below: address.base, names: Array(address.names.dropLast())) else { return nil }
            return (parent, last)
        }
        guard let id = address.base, let e = tenant.entry(Tenant.driveKey(address.drive), id), e.deleted == nil,
              case .driveItem(let d) = e.payload, !d.isFolder, let parent = d.parentId else { return nil }
        return (parent, d.name)
    }

    private func createUploadSession(_ address: DriveAddress, json: [String: Any], plan: FaultPlan) -> Response {
        guard let (parent, name) = uploadTarget(address) else { return Self.error(404, "itemNotFound", "The resource could not be found.") }
        let item = json["item"] as? [String: Any] ?? [:]
        let info = item["fileSystemInfo"] as? [String: Any]
        if info != nil, plan.refuseFileSystemInfo {
            return Self.error(400, "invalidRequest", "Property fileSystemInfo in payload is not supported.")
        }
        let conflict = Self.conflict(item["@microsoft.graph.conflictBehavior"] as? String) ?? (address.names.isEmpty ? .replace : .fail)
        if conflict == .fail, tenant.driveItem(address.drive, below: parent, names: [name]) != nil {
            return Self.error(409, "nameAlreadyExists", "The specified item name already exists.")
        }
        var session = UploadSession(drive: address.drive, parent: parent, name: (item["name"] as? String) ?? name, conflict: conflict,
                                    created: (info?["createdDateTime"] as? String).flatMap(Tenant.parseISO),
                                    modified: (info?["lastModifiedDateTime"] as? String).flatMap(Tenant.parseISO),
                                    expires: Date().addingTimeInterval(plan.uploadSessionLifetime))
        session.name = name
        session.tokenLapsesEarly = plan.uploadTokenExpiresAfterFragments > 0 && once("upload token " + session.key)
        let token = UUID().uuidString.lowercased()
        let refused: Bool = runtime.withLock { r in
            let now = Date()
            r.uploads = r.uploads.filter { $0.value.expires > now }
            if r.uploads.values.contains(where: { $0.key == session.key }) { return true }
            r.uploads[token] = session
            return false
        }
        if refused { return Self.error(409, "nameAlreadyExists", "An upload session already exists for this file") }
        counters.withLock { $0.uploadSessions += 1 }
        return Self.json(200, ["uploadUrl": "\(authorityURL)/upload/\(token)", "expirationDateTime": Tenant.iso(session.expires),
                               "nextExpectedRanges": ["0-"]])
    }

    /// The pre-authenticated upload URL: fragments (PUT), the session's state (GET), cancel (DELETE).
    func upload(_ token: String, request: Request) async -> Response {
        let plan = faults.withLock { $0 }
        let now = Date()
        guard let session = runtime.withLock({ r in r.uploads[token].flatMap { $0.expires > now ? $0 : nil } }) else {
            return Self.error(404, "itemNotFound", "The upload session was not found.")
        }
        if now.timeIntervalSince(session.opened) > plan.uploadURLTokenLifetime
            || (session.tokenLapsesEarly && session.fragmentsStored >= plan.uploadTokenExpiresAfterFragments) {
            // A URL that cannot be used ends its session (it no longer holds the file's name).
            runtime.withLock { _ = $0.uploads.removeValue(forKey: token) }
            counters.withLock { $0.expiredUploadTokens += 1 }
            return Self.error(401, "expiredToken", "The token in the upload URL has expired.")
        }
        switch request.method {
        case .get:
            return Self.json(200, ["expirationDateTime": Tenant.iso(session.expires), "nextExpectedRanges": ["\(session.received)-"]])
        case .delete:
            runtime.withLock { _ = $0.uploads.removeValue(forKey: token) }
            return Response(status: .noContent)
        case .put:
            break
        default:
            return Self.error(405, "invalidRequest", "Method not allowed")
        }
        counters.withLock { $0.writes += 1 }
        // The URL carries its own authorization; Graph may refuse a bearer token here.
        if request.headers[.authorization] != nil { return Self.error(401, "unauthenticated", "Do not send an Authorization header to an upload URL.") }
        guard let range = request.headers[Self.contentRangeField].flatMap(Self.parseContentRange) else {
            return Self.error(400, "invalidRequest", "Content-Range is missing or malformed.")
        }
        var req = request
        guard let buffer = try? await req.collectBody(upTo: 60 << 20) else {
            return Self.error(413, "requestTooLarge", "A fragment must be smaller than 60 MiB.")
        }
        let fragment = Array(buffer.readableBytesView)
        if let target = session.attachment, let user = tenant.user(target.user), let wait = incomingBytes(user, count: fragment.count, plan: plan) {
            counters.withLock { $0.throttled += 1 }
            return Self.throttled(wait, "ApplicationThrottled", "Application is over its IncomingBytes limit.")
        }
        let n = counters.withLock { $0.fragments += 1; return $0.fragments }
        if plan.failUploadFragmentsEvery > 0, n % plan.failUploadFragmentsEvery == 0 {
            return Self.error(503, "serviceNotAvailable", "The service is temporarily unavailable.")
        }
        guard range.end >= range.start, range.end < range.total, Int64(fragment.count) == range.end - range.start + 1 else {
            return Self.error(400, "invalidRange", "The Content-Range does not match the body.")
        }
        let isLast = range.end == range.total - 1
        guard isLast || session.attachment != nil || fragment.count % Self.fragmentUnit == 0 else {
            return Self.error(400, "invalidRange", "Fragments must be a multiple of 320 KiB (327,680 bytes), but for the last.")
        }
        enum Step { case mismatch(Int), accepted(UploadSession, done: Bool) }
        let step: Step = runtime.withLock { r in
            // Taken out while it grows, so that its bytes are not copied.
            guard var s = r.uploads.removeValue(forKey: token) else { return .mismatch(0) }
            guard range.start == s.received, s.total == nil || s.total == range.total else {
                r.uploads[token] = s
                return .mismatch(Int(s.received))
            }
            s.total = range.total
            s.received += Int64(fragment.count)
            s.sha256.update(data: fragment)
            s.quickXor.update(fragment)
            if s.received <= Self.keptUploadBytes || s.attachment != nil { s.bytes += fragment } else { s.bytes = [] }
            s.fragmentsStored += 1
            s.expires = Date().addingTimeInterval(plan.uploadSessionLifetime)
            if !isLast { r.uploads[token] = s }
            return .accepted(s, done: isLast)
        }
        switch step {
        case .mismatch(let have):
            return Self.json(416, ["error": ["code": "invalidRange", "message": "The requested range is not the next expected one.",
                                             "innerError": ["nextExpectedRanges": ["\(have)-"]]]])
        case .accepted(let s, let done):
            counters.withLock { $0.uploadedBytes += Int64(fragment.count) }
            guard done else {
                // Outlook answers a fragment 200, OneDrive 202.
                return Self.json(s.attachment == nil ? 202 : 200, ["expirationDateTime": Tenant.iso(s.expires), "nextExpectedRanges": ["\(s.received)-"]])
            }
            if let target = s.attachment {
                let id = UUID().uuidString
                let attachment = RestoredMessage.Attachment(id: id, name: s.name, contentType: target.contentType, bytes: s.bytes,
                                                            isInline: target.isInline, contentID: target.contentID, itemSubject: nil)
                guard let user = tenant.user(target.user), tenant.updateMessage(user: user, id: target.message, { $0.restored?.attachments.append(attachment) }) != nil else {
                    return notFound(target.message)
                }
                var h = HTTPFields()
                h[.location] = "\(graphURL)/users('\(target.user)')/messages('\(target.message)')/attachments('\(id)')"
                return Response(status: .created, headers: h)
            }
            let content: Tenant.UploadedContent = s.received <= Self.keptUploadBytes ? .bytes(s.bytes)
                : .digest(size: s.received, sha256: s.sha256.finalize().map { String(format: "%02x", $0) }.joined(), quickXorHash: s.quickXor.base64())
            switch tenant.commitDriveFile(s.drive, parent: s.parent, name: s.name, content: content, conflict: s.conflict, created: s.created,
                                          modified: s.modified, quota: plan.driveQuotaBytes) {
            case .success(let id):
                counters.withLock { $0.filesCommitted += 1 }
                if plan.failAfterCommit.contains(s.name) { return Self.error(500, "generalException", "An unspecified error has occurred.") }
                guard let e = tenant.entry(Tenant.driveKey(s.drive), id), let out = driveItemJSON(e, drive: s.drive) else { return notFound(id) }
                return Self.json(201, out)
            case .failure(let f):
                if f == .quotaExceeded { counters.withLock { $0.quotaRefusals += 1 } }
                return Self.driveError(f)
            }
        }
    }

    static func parseContentRange(_ text: String) -> (start: Int64, end: Int64, total: Int64)? {
        guard text.hasPrefix("bytes ") else { return nil }
        let parts = text.dropFirst(6).split(separator: "/")
        guard parts.count == 2, let total = Int64(parts[1]) else { return nil }
        let bounds = parts[0].split(separator: "-")
        guard bounds.count == 2, let start = Int64(bounds[0]), let end = Int64(bounds[1]) else { return nil }
        return (start, end, total)
    }

    static func conflict(_ text: String?) -> Tenant.ConflictBehavior? { text.flatMap(Tenant.ConflictBehavior.init(rawValue:)) }

    static func driveError(_ f: Tenant.DriveWriteError) -> Response {
        switch f {
        case .notFound: error(404, "itemNotFound", "The resource could not be found.")
        case .nameExists: error(409, "nameAlreadyExists", "The specified item name already exists.")
        case .notAFolder: error(400, "invalidRequest", "The parent is not a folder.")
        case .quotaExceeded: error(507, "quotaLimitReached", "Insufficient Space Available")
        }
    }
}
