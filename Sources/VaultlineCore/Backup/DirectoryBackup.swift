import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Backs up local directories: the engine's own source and our benchmark anchor.
///
/// Each path given becomes one node of the snapshot's root tree, named by its last component.
/// A file whose size, mtime and inode match its node in the parent snapshot is not read again
/// (its content list is reused) unless `force` is set. An unreadable item is recorded in the
/// snapshot's error list and the backup goes on; the snapshot is then marked partial.
/// O_NOATIME from <fcntl.h> (a GNU extension the Glibc module does not export): 01000000 on Linux.
private let linuxNoATime: Int32 = 0o1000000

public final class DirectoryBackup {
    public struct Options: Sendable {
        public var paths: [String]
        public var tags: [String] = []
        public var force = false
        /// Parent snapshot id; nil picks the latest snapshot of the same paths and host.
        public var parent: String?
        public var noParent = false
        public var workers = ProcessInfo.processInfo.activeProcessorCount
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

    let repository: Repository
    let options: Options
    var stats = Snapshot.Stats()
    var errors: [Snapshot.ItemError] = []
    let progress: ((Progress) -> Void)?

    public init(repository: Repository, options: Options, progress: ((Progress) -> Void)? = nil) {
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

        let parentID = try options.noParent ? nil : (options.parent.map(repository.resolveSnapshot) ?? findParent(absolute))
        var parentRoot: [String: TreeNode] = [:]
        if let parentID {
            let parent = try repository.loadSnapshot(parentID)
            parentRoot = Dictionary(try repository.loadTree(parent.tree).nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }

        let session = try BackupSession(repository: repository, workers: options.workers)
        var rootNodes: [TreeNode] = []
        do {
            for (path, name) in zip(absolute, names) {
                var st = stat()
                guard lstat(path, &st) == 0 else { throw VaultlineError.system("lstat", object: path) }
                if let node = try backupEntry(path: path, name: name, st: st, parent: parentRoot[name], session: session) {
                    rootNodes.append(node)
                }
            }
            let root = try session.store(Tree(nodes: rootNodes))
            let written = try session.finish()
            stats.newBlobs = written.newBlobs
            stats.newRawBytes = written.newRawBytes
            stats.newStoredBytes = written.newStoredBytes
            stats.newIncompressibleBytes = written.newIncompressibleBytes
            stats.durationSeconds = Date().timeIntervalSince(started)
            var snapshot = Snapshot(
                time: started, sourceKind: "local", paths: absolute, tags: options.tags, parent: parentID,
                tree: root.hex, stats: stats)
            snapshot.errors = errors
            snapshot.partial = !errors.isEmpty
            let id = try session.commit(snapshot)
            return Result(snapshotID: id, snapshot: snapshot)
        } catch {
            session.abort()
            throw error
        }
    }

    static func absolutePath(_ path: String) throws -> String {
        guard let real = realpath(path, nil) else { throw VaultlineError.system("realpath", object: path) }
        defer { free(real) }
        return String(cString: real)
    }

    func findParent(_ paths: [String]) throws -> String? {
        let host = FileSystem.hostName()
        return try repository.listSnapshots().last {
            $0.snapshot.sourceKind == "local" && $0.snapshot.host == host && $0.snapshot.paths == paths
        }?.id
    }

    /// Backs up one directory entry; nil for kinds not backed up (sockets, devices, fifos).
    func backupEntry(path: String, name: String, st: stat, parent: TreeNode?, session: BackupSession) throws -> TreeNode? {
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
            stats.files += 1
            stats.totalBytes += UInt64(st.st_size)
            if !options.force, let p = parent, p.kind == .file, p.size == node.size, p.mtimeNs == node.mtimeNs,
               p.inode == node.inode, let content = p.content,
               content.allSatisfy({ Bytes32(hex: $0).map(repository.index.contains) ?? false })
            {
                node.content = content
                return node
            }
            do {
                node.content = try readFile(path: path, session: session).map(\.hex)
            } catch let e as VaultlineError where e.code == .io || e.code == .notFound {
                errors.append(.init(path: path, message: e.description))
                return nil
            }
            return node
        case S_IFDIR:
            node.kind = .dir
            stats.dirs += 1
            node.subtree = try backupDirectory(path: path, parent: parent?.kind == .dir ? parent?.subtree : nil, session: session).hex
            return node
        case S_IFLNK:
            node.kind = .symlink
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buf, buf.count - 1)
            guard n >= 0 else {
                errors.append(.init(path: path, message: VaultlineError.system("readlink", object: path).description))
                return nil
            }
            node.linkTarget = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return node
        default:
            return nil
        }
    }

    func backupDirectory(path: String, parent: String?, session: BackupSession) throws -> Bytes32 {
        var parentNodes: [String: TreeNode] = [:]
        if let parent, let tree = try? repository.loadTree(parent) {
            parentNodes = Dictionary(tree.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        }
        var nodes: [TreeNode] = []
        let names: [String]
        do {
            names = try FileSystem.list(path).sorted()
        } catch let e as VaultlineError {
            errors.append(.init(path: path, message: e.description))
            return try session.store(Tree(nodes: []))
        }
        for name in names {
            let child = path == "/" ? "/" + name : path + "/" + name
            var st = stat()
            guard lstat(child, &st) == 0 else {
                errors.append(.init(path: child, message: VaultlineError.system("lstat", object: child).description))
                continue
            }
            if let node = try backupEntry(path: child, name: name, st: st, parent: parentNodes[name], session: session) {
                nodes.append(node)
            }
        }
        return try session.store(Tree(nodes: nodes))
    }

    /// Streams a file through the chunker into the session.
    func readFile(path: String, session: BackupSession) throws -> [Bytes32] {
        // O_NOATIME (allowed for the file's owner and root) keeps the backup from touching atimes.
        let file = try (try? FileDescriptor(open: path, flags: O_RDONLY | O_NOFOLLOW | linuxNoATime))
            ?? FileDescriptor(open: path, flags: O_RDONLY | O_NOFOLLOW)
        posix_fadvise(file.raw, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        let (ids, size) = try session.storeStream { buf in try file.readSome(into: buf) }
        stats.filesRead += 1
        stats.bytesRead += size
        progress?(Progress(files: stats.files, bytes: stats.bytesRead, currentPath: path))
        return ids
    }
}
