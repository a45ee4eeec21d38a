/// One entry of a directory tree: a file, directory, symlink or a source item (a mail message,
/// a drive item). Stored as JSON in tree blobs (docs/FORMAT.md, "Trees").
public struct TreeNode: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case file, dir, symlink
    }

    public var name: String
    public var kind: Kind
    /// Permission bits (and setuid/setgid/sticky).
    public var mode: UInt32?
    /// Modification time, nanoseconds since the Unix epoch.
    /// (Access times are not kept: reading a file changes them, so keeping them would make
    /// every backup's trees differ and defeat tree deduplication.)
    public var mtimeNs: Int64?
    public var uid: UInt32?
    public var gid: UInt32?
    public var inode: UInt64?
    public var device: UInt64?
    /// Content size in bytes (files).
    public var size: UInt64?
    /// Content blob ids, in order (files).
    public var content: [String]?
    /// The tree blob id of a directory.
    public var subtree: String?
    public var linkTarget: String?
    /// Source-specific metadata (Graph ids, e-tags...), opaque to the engine.
    public var metadata: [String: String]?
    /// Set by `repair snapshots` when the item's data is lost at every site: what was lost.
    /// A damaged file has no content and is never restored (restore lists it instead).
    public var damaged: String?

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

/// A directory: nodes sorted by name (byte order), so equal directories encode to equal blobs
/// and deduplicate. A large directory is stored as parts (``TreeWriter``): its stored tree has
/// no nodes, only `parts`, the ids of trees whose nodes, concatenated, are the directory's.
/// ``Repository/loadTree(_:)`` reads them and returns the whole directory.
public struct Tree: Codable, Sendable, Equatable {
    public var nodes: [TreeNode]
    /// The part trees of a large directory, in order (only in a stored tree as read by
    /// ``Repository/loadStoredTree(_:)``).
    public var parts: [String]?

    public init(nodes: [TreeNode]) {
        self.nodes = nodes.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    /// The head of a directory stored as parts.
    public init(parts: [String]) {
        self.nodes = []
        self.parts = parts
    }

    /// Nodes already in name order (a directory's parts, concatenated).
    init(sortedNodes: [TreeNode]) {
        self.nodes = sortedNodes
    }

    public func encoded() throws -> [UInt8] { try StoredJSON.encode(self) }

    /// Decodes a stored tree (``TreeDecoder``; the same JSON `Codable` reads, several times faster).
    public static func decode(_ bytes: [UInt8], id: String) throws -> Tree {
        do { return try TreeDecoder.decode(bytes) } catch {
            throw VaultlineError(.corrupt, "cannot decode the tree: \(error)", object: "tree \(id)")
        }
    }

    public func node(named name: String) -> TreeNode? {
        // Nodes are sorted, but names are few per directory; a linear scan is fine for lookups
        // during restore of a sub-path. Backup builds a dictionary instead.
        nodes.first { $0.name == name }
    }
}
