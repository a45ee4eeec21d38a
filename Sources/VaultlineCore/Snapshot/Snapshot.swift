import Foundation

/// A snapshot: the root of one backup, written last (docs/FORMAT.md, "Snapshots").
public struct Snapshot: Codable, Sendable {
    public struct Stats: Codable, Sendable, Equatable {
        public var files: UInt64 = 0
        public var dirs: UInt64 = 0
        /// Bytes of all file content in the snapshot.
        public var totalBytes: UInt64 = 0
        /// Files whose content was read (not taken unchanged from the parent).
        public var filesRead: UInt64 = 0
        public var bytesRead: UInt64 = 0
        /// Blobs and raw bytes this backup added to the repository.
        public var newBlobs: UInt64 = 0
        public var newRawBytes: UInt64 = 0
        /// Bytes those new blobs take once compressed and sealed.
        public var newStoredBytes: UInt64 = 0
        /// Raw bytes of new data blobs that compressed by less than the threshold (stored raw):
        /// the ransomware signal.
        public var newIncompressibleBytes: UInt64 = 0
        public var durationSeconds: Double = 0
        public init() {}
    }

    /// An item that could not be backed up; the snapshot is then partial.
    public struct ItemError: Codable, Sendable {
        public var path: String
        public var message: String
        public init(path: String, message: String) { self.path = path; self.message = message }
    }

    /// The ransomware signal: how much changed against the parent, and how much of it did not
    /// compress (docs/FORMAT.md, "Snapshots"; ``RansomwareSignal``).
    public struct ChangeSignal: Codable, Sendable, Equatable {
        /// Items whose content was read: added or modified since the parent.
        public var changedItems: UInt64
        /// `changedItems` over the parent's item count.
        public var changedShare: Double
        /// Bytes of those items, and the new (not deduplicated) bytes they added.
        public var changedBytes: UInt64
        public var newBytes: UInt64
        /// Share of the new bytes that did not compress.
        public var incompressibleShare: Double
        public var flagged: Bool
        public var reason: String?
    }

    public var version: Int = 1
    public var time: Date
    public var host: String
    public var username: String
    /// "local" for directories; the Graph adapter uses its own kinds.
    public var sourceKind: String
    public var paths: [String]
    public var tags: [String]
    /// The snapshot this one was made against, if any.
    public var parent: String?
    /// The root tree blob id.
    public var tree: String
    public var stats: Stats
    /// Opaque state the source needs to continue (Graph delta links), base64 or JSON text.
    public var sourceState: String?
    public var errors: [ItemError]
    public var partial: Bool
    /// Against the parent; absent for a first backup.
    public var signal: ChangeSignal?
    /// A flagged snapshot an administrator has looked at and released (`snapshots release`):
    /// `forget` no longer holds the unflagged snapshot before it.
    public var released: Bool?
    /// Flagged and not released.
    public var isFlagged: Bool { signal?.flagged == true && released != true }
    /// Set by `repair snapshots`: the snapshot this one replaces (whose data was partly lost).
    public var repairedFrom: String?

    public init(time: Date, sourceKind: String, paths: [String], tags: [String], parent: String?, tree: String, stats: Stats) {
        self.time = time
        host = FileSystem.hostName()
        username = FileSystem.userName()
        self.sourceKind = sourceKind
        self.paths = paths
        self.tags = tags
        self.parent = parent
        self.tree = tree
        self.stats = stats
        errors = []
        partial = false
    }
}

/// When a snapshot looks like ransomware: most of what it added is new content that does not
/// compress (encrypted data), and there is enough of it to matter. Ordinary edits (mail,
/// documents) compress; a first backup has no parent and is never flagged.
public struct RansomwareSignal: Sendable, Codable, Equatable {
    /// Flag when at least this share of the new bytes did not compress…
    public var minIncompressibleShare = 0.5
    /// …and they are at least this many bytes.
    public var minIncompressibleBytes: UInt64 = 1 << 20

    public init() {}

    public func evaluate(_ stats: Snapshot.Stats, parent: Snapshot.Stats?) -> Snapshot.ChangeSignal? {
        guard let parent else { return nil }
        let share = stats.newRawBytes == 0 ? 0 : Double(stats.newIncompressibleBytes) / Double(stats.newRawBytes)
        let flagged = share >= minIncompressibleShare && stats.newIncompressibleBytes >= minIncompressibleBytes
        return Snapshot.ChangeSignal(
            changedItems: stats.filesRead,
            changedShare: parent.files == 0 ? 1 : Double(stats.filesRead) / Double(parent.files),
            changedBytes: stats.bytesRead, newBytes: stats.newRawBytes, incompressibleShare: share, flagged: flagged,
            reason: flagged
                ? "\(Int(share * 100))% of \(stats.newRawBytes) new bytes did not compress (threshold \(Int(minIncompressibleShare * 100))% of at least \(minIncompressibleBytes) bytes): encrypted content, possibly ransomware"
                : nil)
    }
}
