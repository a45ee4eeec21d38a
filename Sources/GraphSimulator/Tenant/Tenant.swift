import Foundation
import Synchronization

/// A simulated Microsoft 365 tenant: users with mailboxes, calendars, contacts and OneDrives, and
/// SharePoint sites with document libraries. Thread-safe; the server reads it, tests and the demo
/// mutate it between backups.
public final class Tenant: Sendable {
    public let spec: TenantSpec
    let corpus: Corpus
    let state: Mutex<State>
    /// Attachments as read and in base64, made once each (a file read per range request was
    /// the simulator's own repeated I/O).
    let attachmentBytesCache = Mutex<[Int: [UInt8]]>([:])
    let attachmentCache = Mutex<[Int: [UInt8]]>([:])
    /// QuickXorHash of each drive file version ("id|version"), made when first listed.
    let hashCache = Mutex<[String: String]>([:])

    struct State: Sendable {
        var seq = 0
        var users: [User] = []
        var sites: [Site] = []
        /// Collections by key (see ``Tenant/key``).
        var collections: [String: Collection] = [:]
        var nextId: UInt64 = 1
        /// Users by id and by lower-cased UPN; messages' collection keys by message id.
        var userIndex: [String: Int] = [:]
        var messageKeys: [String: String] = [:]
        /// Each user's calendars besides the default one, by user id.
        var otherCalendars: [String: [OtherCalendar]] = [:]
        /// Contact folders created besides the default one, by user id.
        var otherContactFolders: [String: [OtherCalendar]] = [:]
    }

    struct OtherCalendar: Sendable {
        var id: String
        var name: String
        /// A contact folder's parent folder (nil: a child of the default Contacts folder).
        var parent: String? = nil
    }

    public init(spec: TenantSpec) {
        self.spec = spec
        corpus = Corpus.load(seed: spec.seed)
        state = Mutex(State())
        state.withLock { generate(&$0) }
    }

    // MARK: Keys and ids

    static func foldersKey(_ user: String) -> String { "u/\(user)/folders" }
    static func messagesKey(_ user: String, _ folder: String) -> String { "u/\(user)/f/\(folder)" }
    static func eventsKey(_ user: String) -> String { "u/\(user)/events" }
    static func calendarKey(_ user: String, _ calendar: String) -> String { "u/\(user)/cal/\(calendar)" }
    /// The default calendar's id (its events are the calendar view's).
    static func defaultCalendarId(_ user: String) -> String { "calendar-" + user }
    static func contactsKey(_ user: String) -> String { "u/\(user)/contacts" }
    static func driveKey(_ drive: String) -> String { "d/\(drive)" }

    /// Exchange-style ids: base64 of a prefix and a counter, so they contain `+`, `/` and `=` as
    /// real ones do (and must be URL-encoded in paths, and made safe as file names).
    static func makeId(_ state: inout State, prefix: [UInt8]) -> String {
        state.nextId += 1
        var bytes = prefix
        var rng = SimRandom(state.nextId)
        for _ in 0..<5 { withUnsafeBytes(of: rng.next()) { bytes += $0 } }
        return Data(bytes).base64EncodedString()
    }

    // MARK: Generation

    private func generate(_ s: inout State) {
        var rng = SimRandom(spec.seed)
        let first = ["Adele", "Alex", "Diego", "Grady", "Henrietta", "Isaiah", "Johanna", "Joni", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Patti", "Pradeep"]
        let last = ["Vance", "Wilber", "Siciliani", "Archie", "Mueller", "Langer", "Lorenz", "Sherman", "Gu", "Holloway", "Robbins", "Bowen", "Graham", "Wilke", "Fernandez", "Gupta"]
        let base = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01
        for u in 0..<spec.users {
            let given = first[u % first.count], family = last[(u / first.count + u) % last.count]
            let suffix = u < first.count ? "" : "\(u / first.count)"
            let upn = "\(given)\(suffix).\(family)@\(spec.tenantDomain)".lowercased()
            let userId = uuid(&rng)
            let driveId = "b!" + Self.makeId(&s, prefix: [0x44]).replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
            s.users.append(User(id: userId, displayName: "\(given)\(suffix) \(family)", upn: upn, driveId: driveId))
            s.userIndex[userId] = s.users.count - 1
            s.userIndex[upn.lowercased()] = s.users.count - 1

            // Mail folders: the well-known ones, then extra ones, every third nested in the one before.
            var folders: [String] = []
            for name in ["Inbox", "Sent Items", "Archive"] {
                let id = Self.makeId(&s, prefix: [0x00, 0x2E])
                s.seq += 1
                s.collections[Self.foldersKey(userId), default: Collection()].upsert(id, seq: s.seq, .folder(MailFolder(displayName: name, parentFolderId: nil)))
                folders.append(id)
            }
            for f in 0..<spec.extraFoldersPerUser {
                let id = Self.makeId(&s, prefix: [0x00, 0x2E])
                let parent = f % 3 == 2 ? folders.last : (f % 3 == 1 ? folders[0] : nil)
                s.seq += 1
                s.collections[Self.foldersKey(userId), default: Collection()].upsert(
                    id, seq: s.seq, .folder(MailFolder(displayName: "Project \(["Contoso", "Fabrikam", "Northwind", "Tailspin"][f % 4]) \(f)", parentFolderId: parent)))
                folders.append(id)
            }
            for m in 0..<spec.messagesPerUser {
                let folder = folders[m % 4 == 0 ? 0 : rng.below(folders.count)]
                addMessage(&s, user: userId, folder: folder, received: base.addingTimeInterval(Double(m) * 3600), rng: &rng)
                if m == 0, spec.largeAttachmentSize > 0, let key = s.collections[Self.messagesKey(userId, folder)]?.order.last,
                   case .message(var first)? = s.collections[Self.messagesKey(userId, folder)]?.entries[key]?.payload {
                    first.largeAttachment = spec.largeAttachmentSize
                    s.collections[Self.messagesKey(userId, folder)]?.upsert(key, seq: s.seq, .message(first))
                }
            }
            func addEvents(_ count: Int, key: String) {
                for e in 0..<count {
                    let id = Self.makeId(&s, prefix: [0x00, 0x46])
                    s.seq += 1
                    var event = Event(
                        subject: corpus.text(seed: rng.next(), words: 4), start: base.addingTimeInterval(Double(e) * 86_400 + 36_000),
                        minutes: 30 * (1 + rng.below(4)), location: "Room \(100 + rng.below(40))",
                        attendees: (0..<rng.below(4)).map { _ in s.users[rng.below(s.users.count)].upn }, version: 1)
                    if spec.seriesEvery > 0, e % spec.seriesEvery == spec.seriesEvery - 1 {
                        // A weekly series of six: the second moved by two hours and renamed, the fourth cancelled.
                        event.recurrence = Recurrence(weeklyOn: Int(Self.utc(event.start).tm_wday), count: 6)
                        let moved = event.start.addingTimeInterval(7 * 86_400 + 7_200)
                        event.exceptions[1] = try? JSONSerialization.data(withJSONObject: [
                            "subject": event.subject + " (moved)", "start": Self.eventTimeJSON(moved),
                            "end": Self.eventTimeJSON(moved.addingTimeInterval(Double(event.minutes) * 60)),
                        ])
                        event.cancelled = [3]
                    }
                    s.collections[key, default: Collection()].upsert(id, seq: s.seq, .event(event))
                }
            }
            addEvents(spec.eventsPerUser, key: Self.eventsKey(userId))
            for c in 0..<spec.otherCalendarsPerUser {
                let calendar = OtherCalendar(id: Self.makeId(&s, prefix: [0x00, 0x4B]), name: ["Team Events", "Holidays", "On-call"][c % 3] + (c < 3 ? "" : " \(c)"))
                s.otherCalendars[userId, default: []].append(calendar)
                addEvents(spec.eventsPerOtherCalendar, key: Self.calendarKey(userId, calendar.id))
            }
            for _ in 0..<spec.contactsPerUser {
                let id = Self.makeId(&s, prefix: [0x00, 0x43])
                let g = first[rng.below(first.count)], f = last[rng.below(last.count)]
                s.seq += 1
                s.collections[Self.contactsKey(userId), default: Collection()].upsert(id, seq: s.seq, .contact(Contact(
                    givenName: g, surname: f, email: "\(g).\(f)@fabrikam.example".lowercased(),
                    phone: "+1 555 \(1000 + rng.below(9000))", version: 1)))
            }
            if spec.contactSubfolders {
                // "Suppliers" below the default folder, "Overseas" below it, two contacts each.
                let suppliers = OtherCalendar(id: Self.makeId(&s, prefix: [0x00, 0x43, 0x46]), name: "Suppliers")
                let overseas = OtherCalendar(id: Self.makeId(&s, prefix: [0x00, 0x43, 0x46]), name: "Overseas", parent: suppliers.id)
                for folder in [suppliers, overseas] {
                    s.otherContactFolders[userId, default: []].append(folder)
                    for _ in 0..<2 {
                        let id = Self.makeId(&s, prefix: [0x00, 0x43])
                        let g = first[rng.below(first.count)], f = last[rng.below(last.count)]
                        s.seq += 1
                        s.collections[Self.contactsKey(userId) + "/" + folder.id, default: Collection()].upsert(id, seq: s.seq, .contact(Contact(
                            givenName: g, surname: f, email: "\(g).\(f)@\(folder.name.lowercased()).example".lowercased(),
                            phone: "+1 555 \(1000 + rng.below(9000))", version: 1)))
                    }
                }
            }
            fillDrive(&s, driveId: driveId, files: spec.filesPerUser, large: spec.largeFileSize, rng: &rng)
        }
        for i in 0..<spec.sites {
            let driveId = "b!" + Self.makeId(&s, prefix: [0x53]).replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
            let name = ["marketing", "finance", "engineering", "legal"][i % 4] + (i < 4 ? "" : "\(i)")
            s.sites.append(Site(id: "\(spec.tenantDomain),\(uuid(&rng)),\(uuid(&rng))", name: name, displayName: name.capitalized, driveIds: [driveId], libraryNames: ["Documents"]))
            fillDrive(&s, driveId: driveId, files: spec.filesPerSite, large: 0, rng: &rng)
        }
    }

    private func uuid(_ rng: inout SimRandom) -> String {
        let a = rng.next(), b = rng.next()
        let h = String(format: "%016llx%016llx", a, b)
        let c = Array(h)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    func addMessage(_ s: inout State, user: String, folder: String, received: Date, rng: inout SimRandom) {
        let id = Self.makeId(&s, prefix: [0x00, 0x4D])
        let sender = s.users[rng.below(s.users.count)]
        let attachment = !corpus.attachments.isEmpty && rng.chance(spec.attachmentShare) ? rng.below(corpus.attachments.count) : nil
        s.seq += 1
        s.messageKeys[id] = Self.messagesKey(user, folder)
        s.collections[Self.messagesKey(user, folder), default: Collection()].upsert(id, seq: s.seq, .message(Message(
            folderId: folder, subject: corpus.text(seed: rng.next(), words: 3 + rng.below(6)).capitalized,
            fromName: sender.displayName, fromAddress: sender.upn,
            to: [s.users.first { $0.id == user }?.upn ?? "unknown@\(spec.tenantDomain)"],
            received: received, isRead: rng.chance(0.5), bodySeed: rng.next(), attachment: attachment, version: 1)))
    }

    private func fillDrive(_ s: inout State, driveId: String, files: Int, large: Int, rng: inout SimRandom) {
        let key = Self.driveKey(driveId)
        let root = Self.makeId(&s, prefix: [0x52])
        s.seq += 1
        s.collections[key, default: Collection()].upsert(root, seq: s.seq, .driveItem(DriveItem(
            name: "root", parentId: nil, isFolder: true, size: 0, content: .none, version: 1, modified: Date(timeIntervalSince1970: 1_767_225_600))))
        var folders = [root]
        for name in ["Documents", "Documents/Reports", "Pictures"] {
            let id = Self.makeId(&s, prefix: [0x46])
            let parent = name.contains("/") ? folders[1] : root
            s.seq += 1
            s.collections[key]?.upsert(id, seq: s.seq, .driveItem(DriveItem(
                name: String(name.split(separator: "/").last!), parentId: parent, isFolder: true, size: 0, content: .none, version: 1,
                modified: Date(timeIntervalSince1970: 1_767_225_600))))
            folders.append(id)
        }
        for f in 0..<files {
            let useCorpus = !corpus.attachments.isEmpty && f % 3 == 0
            let content: FileContent = useCorpus ? .corpus(rng.below(corpus.attachments.count)) : .generated(seed: rng.next(), edits: [])
            let size: Int64 = switch content {
            case .corpus(let i): Int64(corpus.attachments[i].size)
            default: Int64(spec.minFileSize + rng.below(max(1, spec.maxFileSize - spec.minFileSize)))
            }
            let name: String = switch content {
            case .corpus(let i): "\(f)-" + corpus.attachments[i].name
            default: "\(["budget", "minutes", "design", "plan", "notes"][f % 5])-\(f).\(["docx", "xlsx", "txt", "pptx"][f % 4])"
            }
            addFile(&s, drive: driveId, parent: folders[rng.below(folders.count)], name: name, size: size, content: content)
        }
        if large > 0 {
            addFile(&s, drive: driveId, parent: root, name: "large-export.bin", size: Int64(large), content: .generated(seed: rng.next(), edits: []))
        }
        if spec.oneNoteNotebook {
            // A notebook: a package item in Documents holding its table of contents and sections.
            let notebook = Self.makeId(&s, prefix: [0x46])
            s.seq += 1
            s.collections[key]?.upsert(notebook, seq: s.seq, .driveItem(DriveItem(
                name: "Team Notebook", parentId: folders[1], isFolder: true, size: 0, content: .none, version: 1,
                modified: Date(timeIntervalSince1970: 1_767_225_600), package: "oneNote")))
            for name in ["Open Notebook.onetoc2", "Meetings.one", "Projects.one"] {
                addFile(&s, drive: driveId, parent: notebook, name: name, size: Int64(20_000 + rng.below(40_000)), content: .generated(seed: rng.next(), edits: []))
            }
        }
    }

    @discardableResult
    func addFile(_ s: inout State, drive: String, parent: String, name: String, size: Int64, content: FileContent) -> String {
        let id = Self.makeId(&s, prefix: [0x46, 0x49])
        s.seq += 1
        s.collections[Self.driveKey(drive)]?.upsert(id, seq: s.seq, .driveItem(DriveItem(
            name: name, parentId: parent, isFolder: false, size: size, content: content, version: 1,
            modified: Date(timeIntervalSince1970: 1_767_225_600 + Double(s.seq)))))
        return id
    }

    // MARK: Reading

    public var users: [(id: String, upn: String, displayName: String)] {
        state.withLock { $0.users.map { ($0.id, $0.upn, $0.displayName) } }
    }

    func user(_ idOrUPN: String) -> User? {
        state.withLock { s in (s.userIndex[idOrUPN] ?? s.userIndex[idOrUPN.lowercased()]).map { s.users[$0] } }
    }

    func collection(_ key: String) -> Collection? { state.withLock { $0.collections[key] } }

    /// Keys of the collections changed after sequence number `seq`, and the newest number.
    func changed(after seq: Int) -> (keys: [String], seq: Int) {
        state.withLock { s in (s.collections.compactMap { $0.value.lastChanged > seq ? $0.key : nil }, s.seq) }
    }

    func entry(_ key: String, _ id: String) -> Entry? { state.withLock { $0.collections[key]?.entries[id] } }

    var currentSeq: Int { state.withLock { $0.seq } }

    /// Live items of every kind (folders excluded).
    public var itemCount: Int {
        state.withLock { s in
            s.collections.values.reduce(0) { n, c in
                n + c.live.filter { e in
                    switch e.payload {
                    case .folder: false
                    case .driveItem(let d): !d.isFolder
                    default: true
                    }
                }.count
            }
        }
    }

    /// The message with `id` in any folder of `user`, if it exists.
    func message(user: String, id: String) -> Message? {
        state.withLock { s in
            guard let key = s.messageKeys[id], key.hasPrefix("u/\(user)/f/"), let e = s.collections[key]?.entries[id],
                  e.deleted == nil, case .message(let m) = e.payload else { return nil }
            return m
        }
    }

    /// Every live file of a user's OneDrive by path from the drive's root, with its bytes: what a
    /// restore must give back.
    public func driveFiles(upn: String) -> [String: [UInt8]] {
        guard let u = user(upn) else { return [:] }
        return driveFiles(driveId: u.driveId)
    }

    /// Every document library of every site: the site's and the library's names and its drive.
    public var libraries: [(site: String, library: String, driveId: String)] {
        state.withLock { s in
            s.sites.flatMap { site in zip(site.libraryNames, site.driveIds).map { (site.name, $0, $1) } }
        }
    }

    /// Every live file of a drive (a OneDrive or a document library), as ``driveFiles(upn:)``.
    public func driveFiles(driveId: String) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for (p, file) in driveFilesByPath(driveId) { out[p] = fileBytes(file.item, offset: 0, length: Int(file.item.size)) }
        return out
    }

    /// The Graph id of every live file of a user's OneDrive, by path from the drive's root.
    public func driveFileIDs(upn: String) -> [String: String] {
        guard let u = user(upn) else { return [:] }
        return driveFilesByPath(u.driveId).mapValues(\.id)
    }

    func driveFilesByPath(_ driveId: String) -> [String: (id: String, item: DriveItem)] {
        guard let c = collection(Self.driveKey(driveId)) else { return [:] }
        var items: [String: DriveItem] = [:]
        for e in c.live { if case .driveItem(let d) = e.payload { items[e.id] = d } }
        func path(_ id: String) -> String? {
            guard let d = items[id] else { return nil }
            guard let p = d.parentId else { return "" }
            guard let parent = path(p) else { return nil }
            return parent.isEmpty ? d.name : parent + "/" + d.name
        }
        var out: [String: (id: String, item: DriveItem)] = [:]
        for (id, d) in items where !d.isFolder {
            if let p = path(id) { out[p] = (id, d) }
        }
        return out
    }

    /// A user's calendars besides the default one: id and name.
    public func otherCalendars(upn: String) -> [(id: String, name: String)] {
        guard let u = user(upn) else { return [] }
        return state.withLock { $0.otherCalendars[u.id] ?? [] }.map { ($0.id, $0.name) }
    }

    /// Every live event or contact of a user as Graph serves it (JSON), by id; `calendar`: the
    /// events of that calendar instead of the default one's.
    public func jsonItems(upn: String, events: Bool, calendar: String? = nil) -> [String: Data] {
        guard let u = user(upn) else { return [:] }
        let key = calendar.map { Self.calendarKey(u.id, $0) } ?? (events ? Self.eventsKey(u.id) : Self.contactsKey(u.id))
        guard let c = collection(key) else { return [:] }
        var out: [String: Data] = [:]
        for e in c.live {
            let object: [String: Any]?
            switch e.payload {
            case .event(let x): object = eventJSON(id: e.id, x)
            case .contact(let x): object = contactJSON(id: e.id, x)
            default: object = nil
            }
            if let object, let data = try? JSONSerialization.data(withJSONObject: object) { out[e.id] = data }
        }
        return out
    }

    /// Every live message of a user as (folder path, id, MIME): what a restore must give back.
    public func mailbox(upn: String) -> [(folderPath: String, id: String, mime: [UInt8])] {
        guard let u = user(upn) else { return [] }
        let (folders, messages): ([String: MailFolder], [(String, Message)]) = state.withLock { s in
            var f: [String: MailFolder] = [:]
            for e in s.collections[Self.foldersKey(u.id)]?.live ?? [] { if case .folder(let x) = e.payload { f[e.id] = x } }
            var m: [(String, Message)] = []
            for (key, c) in s.collections where key.hasPrefix("u/\(u.id)/f/") {
                for e in c.live { if case .message(let x) = e.payload { m.append((e.id, x)) } }
            }
            return (f, m)
        }
        func path(_ id: String) -> String {
            guard let f = folders[id] else { return "" }
            return f.parentFolderId.map { path($0) + "/" } .map { $0 + f.displayName } ?? f.displayName
        }
        return messages.map { (path($0.1.folderId), $0.0, mime(id: $0.0, $0.1)) }.sorted { $0.id < $1.id }
    }

    /// The id of the folder each live message of a user is in, by message id.
    public func messageFolders(upn: String) -> [String: String] {
        guard let u = user(upn) else { return [:] }
        return state.withLock { s in
            var out: [String: String] = [:]
            for (key, c) in s.collections where key.hasPrefix("u/\(u.id)/f/") {
                for e in c.live { if case .message(let x) = e.payload { out[e.id] = x.folderId } }
            }
            return out
        }
    }
}
