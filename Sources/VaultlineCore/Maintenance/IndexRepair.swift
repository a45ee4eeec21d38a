/// `vaultline repair index`: rebuilds the index from pack headers alone.
///
/// New index files are written first, and only then are the old ones removed, so a crash at
/// any point leaves an index that covers every readable pack. Packs whose header cannot be read
/// are reported and left in place.
public enum IndexRepair {
    public struct Result: Codable, Sendable {
        public var packs = 0
        public var blobs = 0
        public var unreadablePacks: [String] = []
        public var indexFilesWritten = 0
        public var indexFilesRemoved = 0
    }

    public static let packsPerFile = 1000

    public static func run(_ repository: Repository) throws -> Result {
        let lock = try RepositoryLock.acquire(repository.backend, exclusive: true, command: "repair index")
        defer { lock.release() }
        return try rebuild(repository)
    }

    /// The rebuild itself; the caller holds an exclusive lock.
    static func rebuild(_ repository: Repository) throws -> Result {
        let backend = repository.backend
        var result = Result()
        let old = try backend.list(.index)
        var batch: [IndexFile.Pack] = []
        var written = Set<String>()
        for name in try backend.list(.pack).sorted() {
            do {
                let (salt, entries) = try PackReader.readHeader(backend: backend, pack: name, key: repository.key)
                guard let id = Bytes32(hex: name) else { continue }
                batch.append(IndexFile.Pack(id: id, salt: salt, entries: entries))
                result.packs += 1
                result.blobs += entries.count
            } catch let e as VaultlineError {
                result.unreadablePacks.append("\(name): \(e.message)")
            }
            if batch.count >= packsPerFile {
                written.insert(try repository.writeIndexFile(batch))
                batch.removeAll()
            }
        }
        if !batch.isEmpty { written.insert(try repository.writeIndexFile(batch)) }
        result.indexFilesWritten = written.count
        for name in old where !written.contains(name) {
            try backend.delete(.index, name)
            result.indexFilesRemoved += 1
        }
        return result
    }
}
