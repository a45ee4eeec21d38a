#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import VaultlineCore

/// The receiver's root folder: one repository replica per repository id, in `<root>/<id>/`,
/// each in the repository layout of docs/FORMAT.md (so site B can restore from it).
public final class ReplicaStore: Sendable {
    public let root: String
    /// Set when serving one existing repository read-only (`replica serve --repository`): the
    /// other site reads from it for `repair --from`; nothing may be pushed.
    public let served: (id: String, directory: String)?
    public var readOnly: Bool { served != nil }
    private let replicas = Mutex<[String: ReplicaRepository]>([:])
    /// See ``ReplicaServer/Configuration/receivedFileFault``.
    let receivedFileFault: (@Sendable (String) -> Void)?

    public convenience init(root: String) throws { try self.init(root: root, receivedFileFault: nil) }

    init(root: String, receivedFileFault: (@Sendable (String) -> Void)?) throws {
        self.receivedFileFault = receivedFileFault
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        served = nil
        do { try FileSystem.makeDirectories(r) } catch {
            throw ReplicationError(.io, "cannot create the receiver's root", object: r, cause: error)
        }
    }

    /// Serves the repository at `repository` only, read-only, under its own id.
    public init(serving repository: String) throws {
        root = repository
        receivedFileFault = nil
        let backend = LocalBackend(root: repository)
        let config = try RepositoryConfig.load(from: backend, path: repository)
        served = (config.id, repository)
    }

    /// Repository ids are 64 lowercase hex digits: nothing else reaches the file system.
    public static func isValidRepositoryID(_ id: String) -> Bool {
        id.utf8.count == 64 && id.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// The replica of repository `id`; created when `create` is true and it does not exist.
    public func repository(id: String, create: Bool) throws -> ReplicaRepository {
        guard Self.isValidRepositoryID(id) else {
            throw ReplicationError(.invalidName, "repository id is not 64 lowercase hex digits", object: String(id.prefix(80)))
        }
        return try replicas.withLock { map in
            if let r = map[id] { return r }
            if let served {
                guard id == served.id else { throw ReplicationError(.notFound, "this peer serves another repository", object: id) }
                let r = try ReplicaRepository(directory: served.directory, readOnly: true)
                map[id] = r
                return r
            }
            let dir = root + "/" + id
            guard create || FileSystem.isDirectory(dir) else {
                throw ReplicationError(.notFound, "no replica of this repository here", object: id)
            }
            let r = try ReplicaRepository(directory: dir, receivedFileFault: receivedFileFault)
            map[id] = r
            return r
        }
    }
}

/// One repository's replica at the receiver: its inventory in memory, the files being
/// received, and the commit that makes a file visible only once its hash matches its name.
public final class ReplicaRepository: Sendable {
    public let directory: String
    let backend: LocalBackend
    let incoming: String

    private struct State {
        var names: [ReplicatedKind: Set<Bytes32>] = [:]
        var sorted: [ReplicatedKind: [Bytes32]] = [:]
        var active: Set<FileRef> = []
    }
    private let state = Mutex(State())
    /// Bytes appended to partial files, over the life of this object (tests read it to prove
    /// that resumed transfers never receive a byte twice).
    public let appendedBytes = Atomic<Int64>(0)

    let receivedFileFault: (@Sendable (String) -> Void)?

    init(directory: String, readOnly: Bool = false, receivedFileFault: (@Sendable (String) -> Void)? = nil) throws {
        self.directory = directory
        self.receivedFileFault = receivedFileFault
        backend = LocalBackend(root: directory)
        incoming = directory + "/incoming"
        do {
            if !readOnly {
                try backend.createLayout()
                try FileSystem.makeDirectories(incoming)
            }
        } catch {
            throw ReplicationError(.io, "cannot create the replica's folders", object: directory, cause: error)
        }
        var names: [ReplicatedKind: Set<Bytes32>] = [:]
        // Names this replica's prune removed count as held: site A never sends them again.
        let pruned = PrunedNames.load(repository: directory)
        for kind in ReplicatedKind.allCases {
            var set = Set<Bytes32>(pruned[kind.fileKind, default: []].compactMap { Bytes32(hex: $0) })
            if kind == .config {
                if let bytes = try? FileSystem.readFile(directory + "/config") { set.insert(SHA256.hash(bytes)) }
            } else {
                let listed: [String]
                do { listed = try backend.list(kind.fileKind) } catch {
                    throw ReplicationError(.io, "cannot list \(kind)", object: directory, cause: error)
                }
                for n in listed { if let id = Bytes32(hex: n) { set.insert(id) } }
            }
            names[kind] = set
        }
        state.withLock { $0.names = names }
    }

    public func contains(_ ref: FileRef) -> Bool {
        state.withLock { $0.names[ref.kind]?.contains(ref.name) ?? false }
    }

    public func count(_ kind: ReplicatedKind) -> Int {
        state.withLock { $0.names[kind]?.count ?? 0 }
    }

    public func names(_ kind: ReplicatedKind) -> [Bytes32] {
        sortedNames(kind)
    }

    private func sortedNames(_ kind: ReplicatedKind) -> [Bytes32] {
        state.withLock { s in
            if let sorted = s.sorted[kind] { return sorted }
            let sorted = (s.names[kind] ?? []).sorted()
            s.sorted[kind] = sorted
            return sorted
        }
    }

    func summary(_ kind: ReplicatedKind, bits: Int) -> InventorySummary {
        InventorySummary(names: sortedNames(kind), bits: bits)
    }

    func list(_ request: ListRequest) -> (names: ArraySlice<Bytes32>, more: Bool) {
        bucketNames(sortedNames(request.kind), bits: request.bits, bucket: request.bucket, after: request.cursor, limit: request.limit)
    }

    /// The path a committed file has.
    public func path(_ ref: FileRef) -> String {
        backend.path(ref.kind.fileKind, ref.kind == .config ? "config" : ref.name.hex)
    }

    func partialPath(_ ref: FileRef) -> String {
        incoming + "/\(ref.kind.fileKind.rawValue)-\(ref.name.hex).partial"
    }

    /// Starts or resumes receiving a file; nil when it is committed already.
    /// Throws `busy` when another connection is receiving it, `conflict` for a different config.
    func beginTransfer(_ ref: FileRef, size: Int64) throws -> IncomingFile? {
        let claimed: Bool = try state.withLock { s in
            if s.names[ref.kind]?.contains(ref.name) == true { return false }
            if ref.kind == .config && !(s.names[.config] ?? []).isEmpty {
                throw ReplicationError(.conflict, "this replica holds another config: a repository's config never changes", object: "config")
            }
            guard !s.active.contains(ref) else {
                throw ReplicationError(.busy, "being received on another connection", object: ref.description)
            }
            s.active.insert(ref)
            return true
        }
        guard claimed else { return nil }
        do {
            return try IncomingFile(repository: self, ref: ref, size: size)
        } catch {
            endTransfer(ref)
            throw error
        }
    }

    func endTransfer(_ ref: FileRef) {
        _ = state.withLock { $0.active.remove(ref) }
    }

    func didCommit(_ ref: FileRef) {
        state.withLock { s in
            if s.names[ref.kind, default: []].insert(ref.name).inserted { s.sorted[ref.kind] = nil }
        }
    }
}
