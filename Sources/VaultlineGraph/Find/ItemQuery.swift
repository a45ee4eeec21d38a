import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `vaultline find` looks for. Every criterion given must hold (they are joined by "and");
/// text criteria ignore case.
public struct ItemQuery: Sendable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case mail, event, contact, file
    }

    /// Only items under `/users/<upn>/` (case-insensitive, whole UPN).
    public var user: String?
    /// A substring of the subject (mail, events) or display name (contacts).
    public var subject: String?
    /// A substring of the sender's address or name (mail) or the organizer's (events).
    public var from: String?
    /// A substring of any recipient's address or name (to, cc, bcc) or any attendee's.
    public var to: String?
    /// The item's date (mail: received; events: start; files: modified) at or after this.
    public var after: Date?
    /// The item's date before this.
    public var before: Date?
    /// A glob (`*`, `?`, `[…]`) matched against the item's name: file name, subject, display name.
    public var name: String?
    /// A glob matched against the whole stored path; `*` matches across `/`.
    public var path: String?
    /// Only these kinds; nil: all.
    public var kinds: Set<Kind>?

    public init() {}

    /// Whether a found item meets every criterion.
    func matches(_ item: FoundItem) -> Bool {
        if let kinds, !kinds.contains(item.kind) { return false }
        if let subject, item.kind != .file, !Self.contains(item.title, subject) { return false }
        if subject != nil, item.kind == .file { return false }
        if let from, !(item.from.map { Self.contains($0, from) } ?? false) { return false }
        if let to, !item.to.contains(where: { Self.contains($0, to) }) { return false }
        if after != nil || before != nil {
            guard let date = item.date else { return false }
            if let after, date < after { return false }
            if let before, date >= before { return false }
        }
        if let name, !Self.glob(name, item.title) { return false }
        if let path, !Self.glob(path, item.path) { return false }
        return true
    }

    /// Whether anything under `/users/<upn>` can match (the user criterion prunes whole mailboxes).
    func admitsUser(_ upn: String) -> Bool {
        user.map { $0.caseInsensitiveCompare(upn) == .orderedSame } ?? true
    }

    /// Whether items of a kind can match: a subtree holding only other kinds is not read.
    func admits(_ kind: Kind) -> Bool {
        if let kinds, !kinds.contains(kind) { return false }
        if kind == .file, subject != nil || from != nil || to != nil { return false }
        if kind == .contact, from != nil || to != nil || after != nil || before != nil { return false }
        return true
    }

    static func contains(_ text: String, _ needle: String) -> Bool {
        text.range(of: needle, options: [.caseInsensitive, .diacriticInsensitive]) != nil
    }

    static func glob(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, caseFold) == 0
    }

    /// glibc's `FNM_CASEFOLD` (a GNU extension the Swift importer does not see without
    /// `_GNU_SOURCE`).
    private static let caseFold: Int32 = 1 << 4

    /// Parses a date as `find` takes it: `YYYY-MM-DD` (midnight UTC) or ISO 8601 with a time
    /// (`2026-11-03T14:00:00Z`, `2026-11-03T14:00:00+01:00`). Nil when it is neither.
    public static func parseDate(_ text: String) -> Date? {
        if let date = GraphDate.parse(text) { return date }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]) else { return nil }
        return GraphDate.make(year: year, month: month, day: day, seconds: 0)
    }
}

/// One item a search found, as stored in one snapshot.
public struct FoundItem: Sendable, Equatable {
    public var path: String
    public var kind: ItemQuery.Kind
    /// Subject (mail, events), display name (contacts) or file name.
    public var title: String
    /// "Name <address>" of the sender (mail) or organizer (events).
    public var from: String?
    /// Recipients (mail: to, cc, bcc) or attendees (events), "Name <address>" each.
    public var to: [String]
    public var date: Date?
    public var size: UInt64
    /// Identifies this version of the item's content: the same path and version in two snapshots
    /// are one result.
    var version: String
}
