import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// O_NOATIME from <fcntl.h> (a GNU extension the Glibc module does not export): 01000000 on Linux.
private let linuxNoATime: Int32 = 0o1000000

/// Backs up local directories: the engine's own source and our benchmark anchor.
///
/// Each path given becomes one node of the snapshot's root tree, named by its last component.
/// A file whose size, mtime and inode match its node in the parent snapshot is not read again
/// (its content list is reused) unless `force` is set. An unreadable item is recorded in the
/// snapshot's error list and the backup goes on; the snapshot is then marked partial.
///
/// Threads: the caller walks the directories; files to read go to `readers` threads, each with
/// its own chunker. A directory's tree is stored by whichever thread completes its last child
/// (see ``DirectoryState``), so no thread waits at directory boundaries.
// @unchecked Sendable: its reader threads share only the file queue and locked state; `session` is set before they start
public final class DirectoryBackup: @unchecked Sendable {
    public struct Options: Sendable {
        public var paths: [String]
        public var tags: [String] = []
        public var force = false
        /// Parent snapshot id; nil picks the latest snapshot of the same paths and host.
        public var parent: String?
        public var noParent = false
        public var signal = RansomwareSignal()
        public var workers = ProcessInfo.processInfo.activeProcessorCount
        public var readers = ProcessInfo.processInfo.activeProcessorCount
        public init(paths: [String]) { self.paths = paths }
    }

    public struct Progress: Sendable {
        public var files: UInt64
        public var bytes: UInt64
        public var currentPath: String
    }

    public struct Result: Sendable {
        public var snapshotID: String
        public var snapshot: Snapshot
    }

    struct Shared {
        var stats = Snapshot.Stats()
        var errors: [Snapshot.ItemError] = []
        var fatal: (any Error)?
        var root: Bytes32?
    }

    struct FileJob: Sendable {
        var path: String
        var node: TreeNode
        var directory: DirectoryState
        var slot: Int
    }

    let repository: Repository
    let options: Options
    let shared = Locked(Shared())
    let progress: (@Sendable (Progress) -> Void)?
    private var session: BackupSession!
    private let files = BoundedQueue<FileJob>(capacity: 256)
    private let rootDone = DispatchSemaphore(value: 0)

    public init(repository: Repository, options: Options, progress: (@Sendable (Progress) -> Void)? = nil) {
        self.repository = repository
        self.options = options
        self.progress = progress
    }

    public func run() throws -> Result {
        let started = Date()
        let absolute = try options.paths.map(Self.absolutePath)
        let names = absolute.map { $0 == "/" ? "root" : String($0.split(separator: "/").last ?? "root") }
        guard Set(names).count == names.count else {
            throw VaultlineError(.invalidArgument, "two backup paths end in the same name: \(names)")
        }
        let lock = try RepositoryLock.acquire(repository.backend, exclusive: false, command: "backup")
        defer { lock.release() }
        try repository.loadIndex()

        let found = options.noParent ? nil : try options.parent.map { given in
            let id = try repository.resolveSnapshot(given)
            return (id: id, snapshot: try repository.loadSnapshot(id))
        } ?? findParent(absolute)
        let parentID = found?.id
        var parentRoot: [String: TreeNode] = [:]
        var parentStats: Snapshot.Stats?
        if let parent = found?.snapshot {
            parentStats = parent.stats
            parentRoot = Dictionary(try repository.loadTree(parent.tree).nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }

        session = try BackupSession(repository: repository, workers: options.workers)
        let readerGroup = DispatchGroup()
        for i in 0..<max(1, options.readers) {
            readerGroup.enter()
            let t = Thread { [self] in
                readLoop()
                readerGroup.leave()
            }
            t.name = "vaultline-reader-\(i)"
            t.start()
        }
        do {
            let root = DirectoryState(parent: nil, slot: 0, node: nil) { [self] id in
                shared.withLock { $0.root = id }
                rootDone.signal()
            }
            for (path, name) in zip(absolute, names) {
                var st = stat()
                guard lstat(path, &st) == 0 else { throw VaultlineError.system("lstat", object: path) }
                try visit(path: path, name: name, st: st, parent: parentRoot[name], in: root)
            }
            try finishEnumerating(root)
            files.close()
            rootDone.wait()
            readerGroup.wait()
            if let fatal = shared.withLock({ $0.fatal }) { throw fatal }
            guard let rootID = shared.withLock({ $0.root }) else {
                throw VaultlineError(.io, "backup ended without a root tree")
            }
            let written = try session.finish()
            var (stats, errors) = shared.withLock { ($0.stats, $0.errors) }
            stats.newBlobs = written.newBlobs
            stats.newRawBytes = written.newRawBytes
            stats.newStoredBytes = written.newStoredBytes
            stats.newIncompressibleBytes = written.newIncompressibleBytes
            stats.durationSeconds = Date().timeIntervalSince(started)
            var snapshot = Snapshot(
                time: started, sourceKind: "local", paths: absolute, tags: options.tags, parent: parentID,
                tree: rootID.hex, stats: stats)
            snapshot.errors = errors.sorted { $0.path < $1.path }
            snapshot.partial = !errors.isEmpty
            snapshot.signal = options.signal.evaluate(stats, parent: parentStats)
            try lock.ensureHeld()
            let id = try session.commit(snapshot)
            return Result(snapshotID: id, snapshot: snapshot)
        } catch {
            fail(error)
            files.close()
            readerGroup.wait()
            session.abort()
            throw error
        }
    }

    static func absolutePath(_ path: String) throws -> String {
        guard let real = realpath(path, nil) else { throw VaultlineError.system("realpath", object: path) }
        defer { free(real) }
        return String(cString: real)
    }

    func findParent(_ paths: [String]) throws -> (id: String, snapshot: Snapshot)? {
        let host = FileSystem.hostName()
        return try repository.listSnapshots().last {
            $0.snapshot.sourceKind == "local" && $0.snapshot.host == host && $0.snapshot.paths == paths
        }.map { ($0.id, $0.snapshot) }
    }

    func fail(_ error: any Error) {
        shared.withLock { if $0.fatal == nil { $0.fatal = error } }
        rootDone.signal()
    }

    func recordError(_ path: String, _ message: String) {
        shared.withLock { $0.errors.append(.init(path: path, message: message)) }
    }

    // MARK: Walking (caller's thread)

    /// Visits one directory entry and fills its slot in `dir` (now, or later by a reader).
    func visit(path: String, name: String, st: stat, parent: TreeNode?, in dir: DirectoryState) throws {
        if let fatal = shared.withLock({ $0.fatal }) { throw fatal }
        var node = TreeNode(name: name, kind: .file)
        node.mode = UInt32(st.st_mode & 0o7777)
        node.mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        node.uid = st.st_uid
        node.gid = st.st_gid
        node.inode = UInt64(st.st_ino)
        node.device = UInt64(st.st_dev)
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            node.size = UInt64(st.st_size)
            shared.withLock { $0.stats.files += 1; $0.stats.totalBytes += UInt64(st.st_size) }
            let slot = dir.reserve()
            if !options.force, let p = parent, p.kind == .file, p.size == node.size, p.mtimeNs == node.mtimeNs,
               p.inode == node.inode, let content = p.content,
               content.allSatisfy({ Bytes32(hex: $0).map(repository.index.contains) ?? false })
            {
                node.content = content
                try complete(dir, slot: slot, node: node)
            } else {
                files.push(FileJob(path: path, node: node, directory: dir, slot: slot))
            }
        case S_IFDIR:
            node.kind = .dir
            shared.withLock { $0.stats.dirs += 1 }
            let slot = dir.reserve()
            let child = DirectoryState(parent: dir, slot: slot, node: node) { _ in }
            try walkDirectory(path: path, parentTree: parent?.kind == .dir ? parent?.subtree : nil, into: child)
            try finishEnumerating(child)
        case S_IFLNK:
            node.kind = .symlink
            var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = buf.withUnsafeMutableBufferPointer {
                readlink(path, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count - 1)
            }
            guard n >= 0 else {
                recordError(path, VaultlineError.system("readlink", object: path).description)
                return
            }
            node.linkTarget = String(decoding: buf[0..<n], as: UTF8.self)
            try complete(dir, slot: dir.reserve(), node: node)
        default:
            return  // sockets, fifos and devices are not backed up
        }
    }

    func walkDirectory(path: String, parentTree: String?, into dir: DirectoryState) throws {
        var parentNodes: [String: TreeNode] = [:]
        if let parentTree, let tree = try? repository.loadTree(parentTree) {
            parentNodes = Dictionary(tree.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }
        let names: [String]
        do {
            names = try FileSystem.list(path).sorted()
        } catch let e as VaultlineError {
            recordError(path, e.description)
            return
        }
        for name in names {
            let child = path == "/" ? "/" + name : path + "/" + name
            var st = stat()
            guard lstat(child, &st) == 0 else {
                recordError(child, VaultlineError.system("lstat", object: child).description)
                continue
            }
            try visit(path: child, name: name, st: st, parent: parentNodes[name], in: dir)
        }
    }

    // MARK: Completion (any thread)

    func finishEnumerating(_ dir: DirectoryState) throws {
        if let nodes = dir.finishEnumerating() { try storeTree(of: dir, nodes) }
    }

    func complete(_ dir: DirectoryState, slot: Int, node: TreeNode?) throws {
        if let nodes = dir.complete(slot: slot, node: node) { try storeTree(of: dir, nodes) }
    }

    /// Stores a finished directory's tree and completes its slot in the parent, upwards.
    func storeTree(of dir: DirectoryState, _ nodes: [TreeNode]) throws {
        let id = try TreeWriter.write(nodes, store: session.store)
        if let parent = dir.parent, var node = dir.node {
            node.subtree = id.hex
            try complete(parent, slot: dir.slot, node: node)
        } else {
            dir.onRoot(id)
        }
    }

    // MARK: Readers

    private func readLoop() {
        let chunker = session.makeChunker()
        while let job = files.pop() {
            if shared.withLock({ $0.fatal != nil }) { continue }
            var node: TreeNode? = job.node
            do {
                let (ids, size) = try read(job.path, with: chunker)
                node!.content = ids.map(\.hex)
                let p = shared.withLock { s -> Progress in
                    s.stats.filesRead += 1
                    s.stats.bytesRead += size
                    return Progress(files: s.stats.filesRead, bytes: s.stats.bytesRead, currentPath: job.path)
                }
                progress?(p)
            } catch let e as VaultlineError where e.code == .io || e.code == .notFound {
                recordError(job.path, e.description)
                node = nil
            } catch {
                fail(error)
                continue
            }
            do {
                try complete(job.directory, slot: job.slot, node: node)
            } catch {
                fail(error)
            }
        }
    }

    /// Streams a file through the chunker into the session.
    func read(_ path: String, with chunker: ContentChunker) throws -> (ids: [Bytes32], size: UInt64) {
        // O_NOATIME (allowed for the file's owner and root) keeps the backup from touching atimes.
        let file = try (try? FileDescriptor(open: path, flags: O_RDONLY | O_NOFOLLOW | linuxNoATime))
            ?? FileDescriptor(open: path, flags: O_RDONLY | O_NOFOLLOW)
        posix_fadvise(file.raw, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let fd = file.raw
        return try withExtendedLifetime(file) {
            try chunker.store { buf in
                while true {
                    let n = Glibc.read(fd, buf.baseAddress, buf.count)
                    if n >= 0 { return n }
                    if errno != EINTR { throw VaultlineError.system("read", object: path) }
                }
            }
        }
    }
}

/// A directory being backed up: one slot per child, filled by the walker or by readers. When
/// the walker has enumerated it and every slot is filled, the thread that filled the last one
/// receives the nodes and stores the tree.
// @unchecked Sendable: `nodes`, `pending` and `enumerated` are touched only under `lock`
final class DirectoryState: @unchecked Sendable {
    let parent: DirectoryState?
    let slot: Int
    /// This directory's own node (nil for the snapshot root).
    let node: TreeNode?
    let onRoot: @Sendable (Bytes32) -> Void
    private let lock = NSLock()
    private var nodes: [TreeNode?] = []
    private var pending = 0
    private var enumerated = false

    init(parent: DirectoryState?, slot: Int, node: TreeNode?, onRoot: @escaping @Sendable (Bytes32) -> Void) {
        self.parent = parent
        self.slot = slot
        self.node = node
        self.onRoot = onRoot
    }

    func reserve() -> Int {
        lock.lock()
        defer { lock.unlock() }
        nodes.append(nil)
        pending += 1
        return nodes.count - 1
    }

    /// Fills a slot (nil: the child is left out); returns the nodes when the directory is done.
    func complete(slot: Int, node: TreeNode?) -> [TreeNode]? {
        lock.lock()
        defer { lock.unlock() }
        nodes[slot] = node
        pending -= 1
        return enumerated && pending == 0 ? nodes.compactMap { $0 } : nil
    }

    func finishEnumerating() -> [TreeNode]? {
        lock.lock()
        defer { lock.unlock() }
        enumerated = true
        return pending == 0 ? nodes.compactMap { $0 } : nil
    }
}
