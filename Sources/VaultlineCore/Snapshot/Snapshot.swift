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
