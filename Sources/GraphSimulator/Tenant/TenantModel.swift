import Foundation

/// What a simulated tenant holds. Every entity lives in a ``Collection`` (a user's mail folders, one
/// folder's messages, a user's events, contacts or drive) whose entries carry the change sequence
/// number at which they last changed and, once deleted, the number at which they were deleted.
/// Delta tokens are just (collection, sequence number) pairs, so a token replays the change log.
struct Entry: Sendable {
    var id: String
    /// Sequence number of the last change (creation counts).
    var changed: Int
    /// Sequence number of the deletion; nil while the entity exists.
    var deleted: Int?
    var payload: Payload
}

enum Payload: Sendable {
    case folder(MailFolder)
    case message(Message)
    case event(Event)
    case contact(Contact)
    case driveItem(DriveItem)
}

struct MailFolder: Sendable {
    var displayName: String
    var parentFolderId: String?
}

struct Message: Sendable {
    var folderId: String
    var subject: String
    var fromName: String
    var fromAddress: String
    var to: [String]
    var received: Date
    var isRead: Bool
    /// Seed of the body text; a modification changes it.
    var bodySeed: UInt64
    /// Index into the tenant's attachment corpus; the same file goes to many users.
    var attachment: Int?
    var version: Int
    /// Size of a generated attachment (``TenantSpec/largeAttachmentSize``), beside or instead of
    /// the corpus one.
    var largeAttachment: Int? = nil
    /// A message a client created (a restore): what it sent, which the fields above summarize.
    var restored: RestoredMessage? = nil
}

/// A message created through Graph's write side, as Exchange keeps it.
struct RestoredMessage: Sendable {
    struct Recipient: Sendable { var name: String; var address: String }
    struct Attachment: Sendable {
        var id: String
        var name: String
        var contentType: String
        var bytes: [UInt8]
        var isInline: Bool
        var contentID: String?
        /// An item attachment: the attached message's subject and body.
        var itemSubject: String?
    }

    var isDraft: Bool
    var sent: Date
    var created: Date
    var bodyIsHTML: Bool
    var body: String
    var from: Recipient?
    var to: [Recipient]
    var cc: [Recipient]
    var bcc: [Recipient]
    var replyTo: [Recipient]
    var importance: String
    var categories: [String]
    var flagStatus: String?
    var internetMessageId: String
    var headers: [(name: String, value: String)]
    var attachments: [Attachment]
    /// Single-value extended properties by id (stored, never echoed).
    var properties: [String: String]
    /// The MIME it was created from, for a message created from MIME.
    var mime: [UInt8]?
}

struct Event: Sendable {
    var subject: String
    var start: Date
    var minutes: Int
    var location: String
    var attendees: [String]
    var version: Int
    /// An event a client created: its JSON as posted (ids and change keys are added when read).
    var json: Data? = nil
    /// A series master's pattern (see ``Recurrence``); nil for a single event.
    var recurrence: Recurrence? = nil
    /// Occurrences a client changed, by index: the fields its PATCHes set (a JSON object).
    var exceptions: [Int: Data] = [:]
    /// Occurrences a client deleted, by index.
    var cancelled: Set<Int> = []
}

struct Contact: Sendable {
    var givenName: String
    var surname: String
    var email: String
    var phone: String
    var version: Int
    /// A contact a client created: its JSON as posted.
    var json: Data? = nil
}

struct DriveItem: Sendable {
    var name: String
    var parentId: String?
    var isFolder: Bool
    var size: Int64
    var content: FileContent
    var version: Int
    var modified: Date
    /// `fileSystemInfo.createdDateTime` (a client's value; the tenant's own creation time otherwise).
    var created: Date? = nil
    /// A package (`"oneNote"`: a OneNote notebook): a container (`isFolder`) that Graph shows
    /// with a `package` facet instead of `folder`, and without a download URL.
    var package: String? = nil

    /// A new version of a file: one more small region rewritten (`edit` seeds it; content that
    /// was not generated becomes generated text), and the time of the change `seq`.
    mutating func edit(_ edit: UInt64, seq: Int) {
        if case .generated(let seed, let edits) = content {
            content = .generated(seed: seed, edits: edits + [edit])
        } else {
            content = .generated(seed: edit, edits: [])
        }
        version += 1
        modified = Date(timeIntervalSince1970: 1_780_000_000 + Double(seq))
    }
}

/// How a drive file's bytes are made, so that a multi-GB tenant needs no memory for content.
enum FileContent: Sendable {
    case none
    /// Pseudo-text from a seed, with `edits` small regions rewritten (each edit is a version).
    case generated(seed: UInt64, edits: [UInt64])
    /// A real file on this machine (from the attachment corpus).
    case corpus(Int)
    /// The ransomware scenario: the former content, encrypted (incompressible bytes).
    case encrypted(seed: UInt64)
    /// Bytes a client uploaded (a restore).
    case uploaded([UInt8])
    /// A client upload larger than ``GraphSimulator/keptUploadBytes``: only its size and
    /// digests are kept (a 5 GB restore is not held in memory). Its bytes cannot be downloaded.
    case received(sha256: String, quickXorHash: String)
}

/// One collection of entities with its change log.
struct Collection: Sendable {
    var entries: [String: Entry] = [:]
    /// Ids in creation order: pages are stable and deterministic.
    var order: [String] = []
    /// The newest change's sequence number (what change notifications look at).
    var lastChanged = 0

    mutating func upsert(_ id: String, seq: Int, _ payload: Payload) {
        if entries[id] == nil { order.append(id) }
        entries[id] = Entry(id: id, changed: seq, deleted: nil, payload: payload)
        lastChanged = max(lastChanged, seq)
    }

    mutating func delete(_ id: String, seq: Int) {
        entries[id]?.deleted = seq
        entries[id]?.changed = seq
        lastChanged = max(lastChanged, seq)
    }

    var live: [Entry] { order.compactMap { entries[$0] }.filter { $0.deleted == nil } }

    /// What a delta round from `base` up to `upTo` reports: entities changed in (base, upTo];
    /// deletions only when the round started from an earlier token (base > 0).
    func changes(since base: Int, upTo: Int) -> [Entry] {
        order.compactMap { entries[$0] }.filter { e in
            guard e.changed > base && e.changed <= upTo else { return false }
            return e.deleted == nil || base > 0
        }
    }
}

struct User: Sendable {
    var id: String
    var displayName: String
    var upn: String
    var driveId: String
}

struct Site: Sendable {
    var id: String
    var name: String
    var displayName: String
    var driveIds: [String]
    var libraryNames: [String]
}
