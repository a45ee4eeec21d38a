import Foundation
import VaultlineCore

/// What a Microsoft 365 snapshot keeps in its source state so that the next run (on this node,
/// another node or site B) continues with delta queries: the delta link of every collection and
/// the items that failed and must be tried again. Stored as JSON (docs/GRAPH.md).
public struct M365State: Codable, Sendable, Equatable {
    public var version = 1
    public var graphBase: String
    public var users: [String: UserState] = [:]
    /// By drive id, for SharePoint document libraries.
    public var libraries: [String: String] = [:]
    /// Library file ids that failed last time, by drive id (absent in states written before).
    public var libraryRetries: [String: [String]]?

    public struct UserState: Codable, Sendable, Equatable {
        public var upn: String
        public var mailFoldersDelta: String?
        /// Message delta link per mail folder id.
        public var folderDeltas: [String: String] = [:]
        public var eventsDelta: String?
        /// Contact delta link per contact folder id.
        public var contactDeltas: [String: String] = [:]
        public var driveDelta: String?
        /// Message ids that failed last time, retried first.
        public var retryMessages: [String] = []
        /// OneDrive file ids that failed last time (absent in states written before).
        public var retryFiles: [String]?
    }

    public init(graphBase: String) { self.graphBase = graphBase }

    /// The items to try again, by user and library, without the delta links.
    var retries: [String: [String]] {
        var out: [String: [String]] = [:]
        for (id, user) in users {
            let items = user.retryMessages.sorted() + (user.retryFiles ?? []).sorted()
            if !items.isEmpty { out["user:" + id] = items }
        }
        for (drive, items) in libraryRetries ?? [:] where !items.isEmpty { out["library:" + drive] = items.sorted() }
        return out
    }

    public static func decode(_ text: String?) -> M365State? {
        guard let text, let data = text.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode(M365State.self, from: data)
    }

    public func encoded() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? String(decoding: e.encode(self), as: UTF8.self)) ?? "{}"
    }
}

/// A directory being assembled for the new snapshot: file nodes and subdirectories by name.
struct DirBuilder: Sendable {
    var files: [String: TreeNode] = [:]
    var dirs: [String: DirBuilder] = [:]
    var metadata: [String: String]?
    /// Set once the directory's tree is stored (``M365Backup/sealed(_:_:)``): then `files` and
    /// `dirs` are empty and only the tree id and the counts remain in memory.
    var stored: (tree: Bytes32, items: Int, bytes: UInt64)?

    var itemCount: Int { stored?.items ?? files.count + dirs.values.reduce(0) { $0 + $1.itemCount } }

    /// The bytes of every file below.
    var totalBytes: UInt64 {
        stored?.bytes ?? files.values.reduce(0) { $0 + ($1.size ?? 0) } + dirs.values.reduce(0) { $0 + $1.totalBytes }
    }
}

/// Names that are safe as one path component: Graph ids and folder names may hold `/`.
func safeName(_ s: String) -> String {
    var t = s.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "\0", with: "")
    if t.isEmpty || t == "." || t == ".." { t = "_" + t }
    return t
}

/// File name of an item stored by Graph id: base64 ids made path- and URL-safe.
func itemFileName(_ id: String, ext: String) -> String {
    id.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") + ext
}
