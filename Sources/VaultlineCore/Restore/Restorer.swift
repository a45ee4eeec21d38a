import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Restores a snapshot, or a sub-path of it, into a directory: contents byte-identical, with
/// modes, times and (when running as root) owners.
///
/// `SNAPSHOT:/a/b` restores the contents of directory `b` into the target, or file `b` as
/// `target/b`. Existing files in the target are replaced; symlinks in the target are never
/// followed.
/// UTIME_OMIT from <sys/stat.h> ((1 << 30) - 2), which Glibc's module does not export.
private let utimeOmit = (1 << 30) - 2

// @unchecked Sendable: shared only with the writer threads of one restore() at a time (a second
// at once is refused), which read `jobs` (set before they start) and `shared` (a lock);
// `directories`, `planner` and `inFlight` are touched by the calling thread alone.
public final class Restorer: @unchecked Sendable {
    public struct Stats: Codable, Sendable {
        public var files: UInt64 = 0
        public var dirs: UInt64 = 0
        public var symlinks: UInt64 = 0
        public var bytes: UInt64 = 0
        public var durationSeconds: Double = 0
        /// Items marked damaged by `repair snapshots` (data lost at every site): not restored.
        public var damaged: [String] = []
    }

    let repository: Repository
    let isRoot = geteuid() == 0
    let threads: Int
    let shared = Locked((stats: Stats(), error: (any Error)?.none))
    private let running = Locked(false)
    public var stats: Stats { shared.withLock { $0.stats } }
    let progress: (@Sendable (Stats) -> Void)?
    var jobs = BoundedQueue<PackJob>(capacity: 64)
    var planner: RestorePlanner
    /// The batch the restore threads are working on, waited for before the next is handed over.
    var inFlight: DispatchGroup?
    /// Directories whose metadata is applied last, deepest first (writing files changes mtimes).
    private var directories: [(node: TreeNode, path: String)] = []

    /// Files gathered per batch at most (see ``RestorePlanner``).
    let filesPerBatch: Int

    public init(repository: Repository, threads: Int = ProcessInfo.processInfo.activeProcessorCount, filesPerBatch: Int? = nil,
                progress: (@Sendable (Stats) -> Void)? = nil) {
        self.repository = repository
        self.threads = max(1, threads)
        self.filesPerBatch = max(1, filesPerBatch ?? 1 << 15)
        self.progress = progress
        planner = RestorePlanner(index: repository.index, maxFiles: 1, maxReferences: 1)
    }

    /// Finds the node at `path` ("/" or "" for the root) in a snapshot's tree.
    public func resolve(snapshot: Snapshot, path: String) throws -> (tree: Tree?, node: TreeNode?) {
        let (treeID, node) = try locate(snapshot: snapshot, path: path)
        return (try treeID.map { try repository.loadTree($0) } ?? (node == nil || node?.kind == .dir ? Tree(nodes: []) : nil), node)
    }

    /// The tree id of the folder at `path` in a snapshot (the index loaded first), for exports
    /// that read it a part at a time; an error when `path` is not a folder.
    public func folderTree(snapshotID: String, path: String) throws -> String {
        try repository.loadIndex()
        let (treeID, node) = try locate(snapshot: try repository.loadSnapshot(snapshotID), path: path)
        guard node == nil || node?.kind == .dir, let treeID else { throw VaultlineError(.invalidArgument, "not a folder in the snapshot", object: path) }
        return treeID
    }

    /// The node at `path` and, when it is a directory (or the root), its tree id, without
    /// reading that tree.
    public func locate(snapshot: Snapshot, path: String) throws -> (treeID: String?, node: TreeNode?) {
        var id: String? = snapshot.tree
        let parts = path.split(separator: "/").map(String.init)
        var node: TreeNode?
        for (i, part) in parts.enumerated() {
            guard let dir = id, let n = try repository.loadTree(dir).node(named: part) else {
                throw VaultlineError(.notFound, i > 0 && id == nil ? "not a directory in the snapshot" : "no such path in the snapshot",
                                     object: "/" + parts[0...(id == nil ? i - 1 : i)].joined(separator: "/"))
            }
            node = n
            id = n.kind == .dir ? n.subtree : nil
        }
        return (node == nil || node?.kind == .dir ? id : nil, node)
    }

    public func restore(snapshotID: String, path: String, target: String) throws {
        guard running.withLock({ r in defer { r = true }; return !r }) else {
            throw VaultlineError(.invalidArgument, "this restorer is already restoring: one restore at a time per Restorer")
        }
        defer { running.withLock { $0 = false } }
        let started = Date()
        // A restorer may be used again after a failed restore: start clean.
        shared.withLock { $0 = (Stats(), nil) }
        try repository.loadIndex()
        let snapshot = try repository.loadSnapshot(snapshotID)
        let (treeID, node) = try locate(snapshot: snapshot, path: path)
        try FileSystem.makeDirectories(target, mode: 0o755)
        jobs = BoundedQueue(capacity: 64)
        planner = RestorePlanner(index: repository.index, maxFiles: filesPerBatch, maxReferences: 1 << 16)
        inFlight = nil
        directories = []
        let group = DispatchGroup()
        for i in 0..<threads {
            group.enter()
            let t = Thread { [self] in
                packLoop()
                group.leave()
            }
            t.name = "vaultline-restore-\(i)"
            t.start()
        }
        do {
            if node == nil || node?.kind == .dir {
                if let treeID { try repository.forEachTreePart(treeID) { try restoreTree($0, into: target) } }
                if let node { directories.append((node, target)) }
            } else if let node {
                try restoreNode(node, into: target)
            }
            handOver()
        } catch {
            fail(error)
            planner.seal().forEach { $0.done.leave() }
        }
        jobs.close()
        group.wait()
        if let error = shared.withLock({ $0.error }) { throw error }
        for (node, path) in directories.reversed() { try applyMetadata(node, path: path, isLink: false) }
        shared.withLock { $0.stats.durationSeconds = Date().timeIntervalSince(started) }
    }

    func restoreTree(_ tree: Tree, into dir: String) throws {
        for node in tree.nodes {
            try restoreNode(node, into: dir)
        }
    }

    func restoreNode(_ node: TreeNode, into dir: String) throws {
        guard !node.name.isEmpty, node.name != ".", node.name != "..", !node.name.contains("/") else {
            throw VaultlineError(.corrupt, "tree holds an unsafe name", object: node.name)
        }
        let path = dir + "/" + node.name
        if shared.withLock({ $0.error != nil }) { return }
        if let lost = node.damaged {
            shared.withLock { $0.stats.damaged.append("\(path): \(lost)") }
            if node.kind != .dir || node.subtree == nil { return }
        }
        switch node.kind {
        case .dir:
            if mkdir(path, 0o700) != 0 && errno != EEXIST { throw VaultlineError.system("mkdir", object: path) }
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                throw VaultlineError(.alreadyExists, "exists in the target and is not a directory", object: path)
            }
            if let sub = node.subtree { try repository.forEachTreePart(sub) { try restoreTree($0, into: path) } }
            directories.append((node, path))
            shared.withLock { $0.stats.dirs += 1 }
        case .file:
            if let empty = try planner.add(node, path: path) {
                let fd = try empty.open()
                defer { _ = close(fd) }
                try finish(empty, descriptor: fd)
            }
            if planner.isFull { handOver() }
        case .symlink:
            unlink(path)
            guard symlink(node.linkTarget ?? "", path) == 0 else { throw VaultlineError.system("symlink", object: path) }
            try applyMetadata(node, path: path, isLink: true)
            shared.withLock { $0.stats.symlinks += 1 }
        }
    }

    func applyMetadata(_ node: TreeNode, fd: Int32, path: String) throws {
        if isRoot, let uid = node.uid, let gid = node.gid { _ = fchown(fd, uid, gid) }
        if let mode = node.mode, fchmod(fd, mode_t(mode)) != 0 { throw VaultlineError.system("fchmod", object: path) }
        var times = timesOf(node)
        if futimens(fd, &times) != 0 { throw VaultlineError.system("futimens", object: path) }
    }

    func applyMetadata(_ node: TreeNode, path: String, isLink: Bool) throws {
        if isRoot, let uid = node.uid, let gid = node.gid { _ = lchown(path, uid, gid) }
        if !isLink, let mode = node.mode, chmod(path, mode_t(mode)) != 0 { throw VaultlineError.system("chmod", object: path) }
        var times = timesOf(node)
        if utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw VaultlineError.system("utimensat", object: path) }
    }

    func timesOf(_ node: TreeNode) -> [timespec] {
        func ts(_ ns: Int64?) -> timespec {
            guard let ns else { return timespec(tv_sec: 0, tv_nsec: utimeOmit) }
            let (q, r) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
            return r >= 0 ? timespec(tv_sec: Int(q), tv_nsec: Int(r)) : timespec(tv_sec: Int(q - 1), tv_nsec: Int(r + 1_000_000_000))
        }
        return [ts(node.mtimeNs), ts(node.mtimeNs)]
    }
}
