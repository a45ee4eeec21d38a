import Synchronization

/// One unit of continuous work: a collection with a delta link of its own, or a group that is
/// polled together (a user's calendars; a user's contact folders).
public struct CollectionKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// One mail folder's messages (`mailFolders/{id}/messages/delta`).
        case mailFolder = "mail"
        /// A mailbox's folder hierarchy (`mailFolders/delta`).
        case mailFolders = "mailfolders"
        /// A user's calendars: the default calendar's view delta and the other calendars.
        case calendar
        /// A user's contact folders, each with its delta link.
        case contacts
        /// A user's OneDrive.
        case onedrive
        /// A SharePoint document library.
        case library

        /// Drives cost resource units; mailboxes have request budgets of their own.
        public var isDrive: Bool { self == .onedrive || self == .library }
    }

    public var kind: Kind
    /// The user's Graph id (nil for a library).
    public var user: String?
    /// The folder or drive id (empty for per-user collections).
    public var id: String

    public init(_ kind: Kind, user: String?, id: String = "") {
        self.kind = kind
        self.user = user
        self.id = id
    }

    public var description: String { [kind.rawValue, user ?? "", id].joined(separator: "/") }
}

/// What a backup asks before each collection's round, and tells after it.
public protocol CollectionPlanner: Sendable {
    /// Whether the collection's round runs in this pass; a collection not due is carried forward
    /// from the parent snapshot with its delta link.
    func isDue(_ key: CollectionKey) -> Bool
    /// Whether any collection of the user is due (false: the whole user is carried forward).
    func anyDue(user: String) -> Bool
    /// The round's outcome.
    func polled(_ key: CollectionKey, _ outcome: CollectionOutcome)
    /// Whether a collection whose delta link expired (410) is listed in full now; false: it is
    /// carried forward as it was and listed in a later pass (the low-priority lane, so that a
    /// tenant-wide expiry does not hold every other collection's changes back).
    func mayListInFull(_ key: CollectionKey) -> Bool
}

extension CollectionPlanner {
    public func mayListInFull(_ key: CollectionKey) -> Bool { true }
}

/// Thrown by a round whose delta link expired when the planner defers its full listing.
struct DeferredListing: Error {}

public enum CollectionOutcome: String, Sendable, Codable {
    /// The round listed something (or downloaded something).
    case changed
    case unchanged
    /// Graph said the delta link had expired (410): the collection was listed in full.
    case reset
    /// The delta link had expired and the pass had spent its time for full listings: carried
    /// forward as it was, listed in full by a later pass.
    case deferred
    /// The round failed (recorded in the snapshot's errors, carried forward).
    case failed
}

/// What one collection's round did, noted by the code that lists and downloads (a task-local:
/// the round's code need not pass it along).
final class CollectionActivity: Sendable {
    private let state = Mutex((changed: false, reset: false))
    let key: CollectionKey
    let planner: any CollectionPlanner

    init(key: CollectionKey, planner: any CollectionPlanner) {
        self.key = key
        self.planner = planner
    }

    @TaskLocal static var current: CollectionActivity?

    /// Asked when a round's delta link expired: throws ``DeferredListing`` when the planner
    /// defers the full listing.
    static func checkFullListing() throws {
        guard let activity = current, !activity.planner.mayListInFull(activity.key) else { return }
        throw DeferredListing()
    }

    static func noteListed(items: Int, full: Bool) {
        guard let activity = current, items > 0 || full else { return }
        activity.state.withLock {
            if items > 0 { $0.changed = true }
            if full { $0.reset = true }
        }
    }

    static func noteDownload() {
        current?.state.withLock { $0.changed = true }
    }

    var outcome: CollectionOutcome {
        state.withLock { $0.reset ? .reset : $0.changed ? .changed : .unchanged }
    }
}
