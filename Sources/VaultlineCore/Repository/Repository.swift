import Foundation
import Synchronization

/// An open repository: config, master key, backend and (once loaded) the blob index.
///
/// Thread-safe: its mutable parts (the index it has loaded, and the blob opener used by reads
/// that bring none) are behind locks. Reads that pass their own ``BlobOpener`` run in
/// parallel; those that do not take turns on the shared one. Loading the index while other
/// threads read swaps it whole: a read sees the old index or the new one.
public final class Repository: Sendable {
    public let backend: any Backend
    public let config: RepositoryConfig
    public let key: MasterKey
    public let chunker: FastCDC
    /// The key slot that opened the repository.
    public let keySlot: String
    private let loaded = Mutex<(index: BlobIndex, files: [String])>((BlobIndex(), []))
    private let sharedOpener: LockedOpener

    /// The blob index loaded last (``loadIndex()``).
    public internal(set) var index: BlobIndex {
        get { loaded.withLock { $0.index } }
        set { loaded.withLock { $0.index = newValue } }
    }

    /// The index files ``loadIndex()`` read.
    public var indexFiles: [String] { loaded.withLock { $0.files } }

    /// Runs `body` with the shared opener, one caller at a time.
    func withSharedOpener<T>(_ body: (BlobOpener) throws -> T) rethrows -> T {
        try sharedOpener.withLock(body)
    }

    public struct InitOptions: Sendable {
        public var chunker = FastCDC.Parameters.default
        public var compression = Codec.zstd
        public var compressionLevel = 3
        public var packSize = RepositoryConfig.defaultPackSize
        /// scrypt N of the first key slot; at least ``KeySlot/minimumNewN``.
        public var scryptN = KeySlot.defaultN
        /// Tests only: allow a cheap slot below the floor.
        var weakScryptForTests = false
        /// BLAKE3 (format 2) where this CPU hashes it faster, else HMAC-SHA256 (format 1).
        public var blobIDs = BlobIDFunction.fastestHere
        public init() {}
    }

    private init(backend: any Backend, config: RepositoryConfig, key: MasterKey, keySlot: String) throws {
        self.backend = backend
        self.config = config
        var key = key
        key.blobIDs = config.blobIDFunction
        self.key = key
        self.keySlot = keySlot
        chunker = try FastCDC(config.chunker, seed: key.chunkerSeed)
        sharedOpener = LockedOpener(BlobOpener(key: key))
    }

    /// Creates a new repository at `path` (a missing or empty directory).
    public static func initialize(path: String, password: [UInt8], options: InitOptions = InitOptions()) throws -> Repository {
        guard !password.isEmpty else { throw VaultlineError(.invalidArgument, "the password is empty") }
        if FileSystem.exists(path + "/config") {
            throw VaultlineError(.alreadyExists, "a repository already exists here", object: path)
        }
        if FileSystem.isDirectory(path), try !FileSystem.list(path).isEmpty {
            throw VaultlineError(.alreadyExists, "directory is not empty; refusing to create a repository in it", object: path)
        }
        try check(options)
        let backend = LocalBackend(root: path)
        try backend.createLayout()
        return try initialize(backend: backend, name: path, password: password, options: options)
    }

    /// Creates a new repository through `backend`, which the caller has checked is empty (and,
    /// on object storage, that it refuses to replace a name). `name` is for messages.
    public static func initialize(backend: any Backend, name path: String, password: [UInt8], options: InitOptions = InitOptions()) throws -> Repository {
        guard !password.isEmpty else { throw VaultlineError(.invalidArgument, "the password is empty") }
        try check(options)
        let config = RepositoryConfig(
            id: encodeHex(try SecureRandom.bytes(32)), chunker: options.chunker, compression: options.compression,
            compressionLevel: options.compressionLevel, packSize: options.packSize, blobIDs: options.blobIDs)
        let key = try MasterKey.generate()
        let slot = options.weakScryptForTests
            ? try KeySlot.sealUnchecked(key, repositoryID: config.id, password: password, n: options.scryptN)
            : try KeySlot.seal(key, repositoryID: config.id, password: password, n: options.scryptN)
        let slotBytes = try StoredJSON.encode(slot)
        let slotName = SHA256.hash(slotBytes).hex
        try backend.writeIfAbsent(.key, slotName, slotBytes)
        // The config goes last: a directory without it is not (yet) a repository.
        guard try backend.writeIfAbsent(.config, "config", try StoredJSON.encode(config)) else {
            throw VaultlineError(.alreadyExists, "a repository was created here concurrently", object: path)
        }
        return try Repository(backend: backend, config: config, key: key, keySlot: slotName)
    }

    private static func check(_ options: InitOptions) throws {
        _ = try FastCDC(options.chunker)
        guard options.packSize >= 1 << 20, options.packSize <= 1 << 30 else {
            throw VaultlineError(.invalidArgument, "pack size must be between 1 MiB and 1 GiB")
        }
    }

    /// Opens the repository at `path` with `password`, trying every key slot.
    public static func open(path: String, password: [UInt8]) throws -> Repository {
        try open(backend: LocalBackend(root: path), password: password, name: path)
    }

    /// Opens a repository through any backend (tests inject faults this way).
    public static func open(backend: any Backend, password: [UInt8], name path: String) throws -> Repository {
        let config = try RepositoryConfig.load(from: backend, path: path)
        guard RepositoryConfig.supportedVersions.contains(config.version) else {
            throw VaultlineError(
                .unsupported, "repository format version \(config.version) is not supported (this build reads \(RepositoryConfig.supportedVersions))",
                object: path)
        }
        guard (config.version == 1) == (config.blobIDs == nil) else {
            throw VaultlineError(.corrupt, "config: version \(config.version) and blobIDs \(config.blobIDs?.rawValue ?? "absent") do not go together", object: path + "/config")
        }
        let slots = try backend.list(.key).sorted()
        guard !slots.isEmpty else { throw VaultlineError(.corrupt, "repository has no key slots", object: path + "/keys") }
        for name in slots {
            let slot = try loadKeySlot(backend, name)
            if let key = try slot.open(password: password, repositoryID: config.id, name: name) {
                return try Repository(backend: backend, config: config, key: key, keySlot: name)
            }
        }
        throw VaultlineError(.wrongPassword, "wrong password: no key slot opens with it (\(slots.count) tried)", object: path)
    }

    static func loadKeySlot(_ backend: any Backend, _ name: String) throws -> KeySlot {
        let bytes = try backend.read(.key, name)
        guard SHA256.hash(bytes).hex == name else {
            throw VaultlineError(.corrupt, "key slot content does not match its name", object: "keys/\(name)")
        }
        return try StoredJSON.decode(KeySlot.self, from: bytes, object: "keys/\(name)")
    }

    // MARK: Index

    /// Reads every index file into memory.
    public func loadIndex() throws {
        let fresh = BlobIndex()
        let names = try backend.list(.index).sorted()
        for name in names {
            for pack in try readIndexFile(name) {
                fresh.add(pack: pack.id, salt: pack.salt, entries: pack.entries)
            }
        }
        fresh.compact()
        loaded.withLock { $0 = (fresh, names) }
        Memory.returnFreedToSystem()
    }

    public func readIndexFile(_ name: String) throws -> [IndexFile.Pack] {
        let plain = try SealedFile.open(try backend.read(.index, name), kind: .index, key: key, name: name, folder: "index")
        return try IndexFile.decode(plain, object: "index/\(name)")
    }

    /// Writes an index file covering `packs`; returns its name.
    @discardableResult
    public func writeIndexFile(_ packs: [IndexFile.Pack]) throws -> String {
        let sealed = try SealedFile.seal(IndexFile.encode(packs), kind: .index, key: key)
        let name = SHA256.hash(sealed).hex
        try backend.writeIfAbsent(.index, name, sealed)
        return name
    }

    // MARK: Blobs

    /// Reads, authenticates and decompresses a blob.
    public func readBlob(_ id: Bytes32) throws -> [UInt8] {
        try withSharedOpener { try readBlob(id, using: $0) }
    }

    /// Thread-safe form: each thread passes its own opener (the index must not change meanwhile).
    public func readBlob(_ id: Bytes32, using opener: BlobOpener) throws -> [UInt8] {
        guard let loc = index.lookup(id) else {
            throw VaultlineError(.notFound, "blob \(id.hex) is not in the index")
        }
        let sealed = try backend.read(.pack, loc.pack.hex, offset: Int64(loc.offset), length: Int(loc.storedLength))
        return try sealed.withUnsafeBytes {
            try opener.open(
                sealed: $0, id: id, salt: loc.salt, offset: loc.offset, codec: loc.codec,
                rawLength: Int(loc.rawLength), object: "packs/\(loc.pack.hex)")
        }
    }

    /// Reads, authenticates and decompresses a blob into memory `opener` reuses, and hands its
    /// plaintext to `body` (valid only there). Thread-safe as ``readBlob(_:using:)`` is.
    public func withBlob<R>(_ id: Bytes32, using opener: BlobOpener, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let loc = index.lookup(id) else {
            throw VaultlineError(.notFound, "blob \(id.hex) is not in the index")
        }
        let sealed = opener.sealedBuffer(count: Int(loc.storedLength))
        try backend.read(.pack, loc.pack.hex, offset: Int64(loc.offset), into: sealed)
        return try opener.withOpened(
            sealed: UnsafeRawBufferPointer(sealed), id: id, salt: loc.salt, offset: loc.offset, codec: loc.codec,
            rawLength: Int(loc.rawLength), object: "packs/\(loc.pack.hex)", body)
    }

    /// A file node's content, whole (small items: a message, an event's JSON).
    public func readContent(of node: TreeNode) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for id in node.content ?? [] {
            guard let blob = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "bad blob id in a tree", object: node.name) }
            bytes += try readBlob(blob)
        }
        return bytes
    }

    /// A directory's tree, with every node of a directory stored as parts. `opener`: the
    /// caller's own, to read from several threads at once (see ``readBlob(_:using:)``).
    public func loadTree(_ id: String, using opener: BlobOpener? = nil) throws -> Tree {
        try loadTreeAndParts(id, using: opener).tree
    }

    /// A directory's tree and the ids of the part trees it was read from (empty when it is
    /// stored whole): for walks that account for every tree blob.
    public func loadTreeAndParts(_ id: String, using opener: BlobOpener? = nil) throws -> (tree: Tree, parts: [String]) {
        let head = try loadStoredTree(id, using: opener)
        guard let parts = head.parts else { return (head, []) }
        var nodes = head.nodes
        for part in parts { nodes += try loadTreePart(part, of: id, using: opener).nodes }
        return (Tree(sortedNodes: nodes), parts)
    }

    /// One stored tree blob as it is: the head of a directory stored as parts has only `parts`.
    public func loadStoredTree(_ id: String, using opener: BlobOpener? = nil) throws -> Tree {
        let bytes = try opener.map { try readBlob(treeID(id), using: $0) } ?? readBlob(treeID(id))
        return try Tree.decode(bytes, id: id)
    }

    /// A part of directory `head`, which holds nodes only.
    public func loadTreePart(_ id: String, of head: String, using opener: BlobOpener? = nil) throws -> Tree {
        let part = try loadStoredTree(id, using: opener)
        guard part.parts == nil else { throw VaultlineError(.corrupt, "a part of tree \(head) has parts of its own", object: "tree \(id)") }
        return part
    }

    /// Calls `body` with directory `id`'s stored tree, or with each of its parts in order when it
    /// is a large one: one part in memory at a time (restoring a folder of a million items).
    public func forEachTreePart(_ id: String, using opener: BlobOpener? = nil, _ body: (Tree) throws -> Void) throws {
        let head = try loadStoredTree(id, using: opener)
        guard let parts = head.parts else { return try body(head) }
        for part in parts { try body(try loadTreePart(part, of: id, using: opener)) }
    }

    func treeID(_ id: String) throws -> Bytes32 {
        guard let bid = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "malformed tree id", object: id) }
        return bid
    }

    // MARK: Snapshots

    @discardableResult
    public func saveSnapshot(_ snapshot: Snapshot) throws -> String {
        let sealed = try SealedFile.seal(try StoredJSON.encode(snapshot), kind: .snapshot, key: key)
        let name = SHA256.hash(sealed).hex
        try backend.writeIfAbsent(.snapshot, name, sealed)
        return name
    }

    public func loadSnapshot(_ name: String) throws -> Snapshot {
        let plain = try SealedFile.open(try backend.read(.snapshot, name), kind: .snapshot, key: key, name: name, folder: "snapshots")
        return try StoredJSON.decode(Snapshot.self, from: plain, object: "snapshots/\(name)")
    }

    /// All snapshots, oldest first.
    public func listSnapshots() throws -> [(id: String, snapshot: Snapshot)] {
        try backend.list(.snapshot).map { ($0, try loadSnapshot($0)) }.sorted { $0.1.time < $1.1.time }
    }

    /// Resolves "latest", a full id or a unique prefix of at least 4 hex digits.
    public func resolveSnapshot(_ ref: String) throws -> String {
        let names = try backend.list(.snapshot)
        if ref == "latest" {
            guard let last = try listSnapshots().last else {
                throw VaultlineError(.notFound, "the repository has no snapshots")
            }
            return last.id
        }
        guard ref.count >= 4 else { throw VaultlineError(.invalidArgument, "snapshot id prefix must have at least 4 digits", object: ref) }
        let matches = names.filter { $0.hasPrefix(ref.lowercased()) }
        guard matches.count == 1 else {
            throw VaultlineError(matches.isEmpty ? .notFound : .invalidArgument,
                                 matches.isEmpty ? "no such snapshot" : "snapshot prefix is ambiguous (\(matches.count) match)", object: ref)
        }
        return matches[0]
    }

    // MARK: Keys

    /// Adds a key slot for another password; returns its name.
    public func addKey(password: [UInt8], scryptN: UInt64 = KeySlot.defaultN) throws -> String {
        try addKey(password: password, scryptN: scryptN, weakForTests: false)
    }

    func addKey(password: [UInt8], scryptN: UInt64, weakForTests: Bool) throws -> String {
        guard !password.isEmpty else { throw VaultlineError(.invalidArgument, "the password is empty") }
        let slot = weakForTests ? try KeySlot.sealUnchecked(key, repositoryID: config.id, password: password, n: scryptN)
            : try KeySlot.seal(key, repositoryID: config.id, password: password, n: scryptN)
        let bytes = try StoredJSON.encode(slot)
        let name = SHA256.hash(bytes).hex
        try backend.writeIfAbsent(.key, name, bytes)
        return name
    }

    public func listKeys() throws -> [(name: String, slot: KeySlot)] {
        try backend.list(.key).sorted().map { ($0, try Self.loadKeySlot(backend, $0)) }
    }

    /// Removes a key slot; refuses to remove the one in use or the last one.
    public func removeKey(_ prefix: String) throws {
        let matches = try backend.list(.key).filter { $0.hasPrefix(prefix) }
        guard matches.count == 1 else {
            throw VaultlineError(matches.isEmpty ? .notFound : .invalidArgument, matches.isEmpty ? "no such key slot" : "key prefix is ambiguous", object: prefix)
        }
        guard matches[0] != keySlot else {
            throw VaultlineError(.invalidArgument, "refusing to remove the key slot this session opened with; open with another password first", object: prefix)
        }
        try backend.delete(.key, matches[0])
    }
}

extension Repository {
    /// Replaces the key slot this session opened with by one for `newPassword`.
    public func changePassword(_ newPassword: [UInt8], scryptN: UInt64 = KeySlot.defaultN) throws -> String {
        try changePassword(newPassword, scryptN: scryptN, weakForTests: false)
    }

    func changePassword(_ newPassword: [UInt8], scryptN: UInt64, weakForTests: Bool) throws -> String {
        let added = try addKey(password: newPassword, scryptN: scryptN, weakForTests: weakForTests)
        try backend.delete(.key, keySlot)
        return added
    }
}

/// A ``BlobOpener`` (not thread-safe) shared by taking turns.
final class LockedOpener: @unchecked Sendable {  // @unchecked Sendable: `opener` is touched only under `lock`
    private let lock = NSLock()
    private let opener: BlobOpener

    init(_ opener: BlobOpener) { self.opener = opener }

    func withLock<T>(_ body: (BlobOpener) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(opener)
    }
}
