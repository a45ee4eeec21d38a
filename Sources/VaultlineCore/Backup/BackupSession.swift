import Foundation

/// The engine's write path, used by every source (local directories, Graph):
///
///     caller: chunk (FastCDC) → blob id (HMAC) → dedup ─► N workers: compress ─► writer: seal → pack → index file
///
/// The caller's thread chunks and deduplicates; compression runs on one worker per core; one
/// writer thread seals blobs into packs, writes them durably and writes an index file as packs
/// finish. Queues between stages are bounded, so memory stays bounded whatever the input size:
/// about (2 × workers + 2 × workers) × max chunk + 2 packs.
///
/// Call ``finish()`` when done, then ``commit(_:)`` to write the snapshot — last, after
/// everything it references is durable.
public final class BackupSession: @unchecked Sendable {
    struct Job: Sendable {
        var id: Bytes32
        var type: BlobType
        var bytes: [UInt8]
    }

    struct Compressed: Sendable {
        var id: Bytes32
        var type: BlobType
        var codec: Codec
        var rawLength: Int
        var payload: [UInt8]
    }

    /// Counters kept by the writer thread.
    struct WriterStats {
        var newBlobs: UInt64 = 0
        var newRawBytes: UInt64 = 0
        var newStoredBytes: UInt64 = 0
        var newIncompressibleBytes: UInt64 = 0
        var packs = 0
        var indexFiles: [String] = []
    }

    /// Compression that saves less than this share is not worth it: the blob is stored raw.
    public static let minimumSaving = 0.03

    public let repository: Repository
    private let compressQueue: BoundedQueue<Job>
    private let writeQueue: BoundedQueue<Compressed>
    private let group = DispatchGroup()
    private let failure = Locked<VaultlineError?>(nil)
    private let writerStats = Locked(WriterStats())
    private var submitted = Set<Bytes32>()
    private var stream: ChunkStream?
    private var streamSource: (UnsafeMutableRawBufferPointer) throws -> Int = { _ in 0 }
    private var finished = false
    private let workersLeft: Locked<Int>
    /// Index entries flushed every this many packs (and at the end).
    let packsPerIndexFile: Int

    public init(repository: Repository, workers: Int = ProcessInfo.processInfo.activeProcessorCount, packsPerIndexFile: Int = 8) throws {
        self.repository = repository
        self.packsPerIndexFile = packsPerIndexFile
        let n = max(1, workers)
        compressQueue = BoundedQueue(capacity: 2 * n)
        writeQueue = BoundedQueue(capacity: 2 * n)
        let config = repository.config
        workersLeft = Locked(n)
        _ = try Compressor(codec: config.compression, level: config.compressionLevel)  // fail early
        for i in 0..<n {
            startThread("vaultline-compress-\(i)") { [self] in
                do {
                    compressLoop(try Compressor(codec: config.compression, level: config.compressionLevel))
                } catch {
                    fail(error)
                    compressLoop(nil)
                }
            }
        }
        startThread("vaultline-writer") { [self] in writeLoop() }
    }

    private func startThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
        group.enter()
        let t = Thread { [group] in
            body()
            group.leave()
        }
        t.name = name
        t.stackSize = 1 << 20
        t.start()
    }

    // MARK: Caller side

    /// Stores one blob unless the repository (or this session) has it already; returns its id.
    @discardableResult
    public func store(_ bytes: [UInt8], type: BlobType) throws -> Bytes32 {
        let id = bytes.withUnsafeBytes { repository.key.blobID($0) }
        try submit(id: id, type: type) { bytes }
        return id
    }

    /// Chunks a byte stream of any length and stores its chunks; returns the blob ids in order and
    /// the total length. `read` fills the buffer it is given and returns 0 at the end.
    public func storeStream(read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (ids: [Bytes32], size: UInt64) {
        streamSource = read
        defer { streamSource = { _ in 0 } }
        if stream == nil {
            stream = ChunkStream(chunker: repository.chunker) { [unowned self] in try streamSource($0) }
        } else {
            stream!.reset()
        }
        var ids: [Bytes32] = []
        var size: UInt64 = 0
        let key = repository.key
        while let chunk = try stream!.next() {
            let id = key.blobID(chunk.bytes)
            ids.append(id)
            size += UInt64(chunk.bytes.count)
            try submit(id: id, type: .data) { Array(chunk.bytes) }
        }
        return (ids, size)
    }

    /// Stores a directory tree; returns its id.
    public func store(_ tree: Tree) throws -> Bytes32 {
        try store(try tree.encoded(), type: .tree)
    }

    private func submit(id: Bytes32, type: BlobType, bytes: () -> [UInt8]) throws {
        if let error = failure.withLock({ $0 }) { throw error }
        if repository.index.contains(id) || submitted.contains(id) { return }
        submitted.insert(id)
        compressQueue.push(Job(id: id, type: type, bytes: bytes()))
    }

    /// Waits for every blob to be sealed into packs written durably and indexed.
    public func finish() throws -> Snapshot.Stats {
        if !finished {
            finished = true
            compressQueue.close()
            group.wait()
        }
        if let error = failure.withLock({ $0 }) { throw error }
        let w = writerStats.withLock { $0 }
        var s = Snapshot.Stats()
        s.newBlobs = w.newBlobs
        s.newRawBytes = w.newRawBytes
        s.newStoredBytes = w.newStoredBytes
        s.newIncompressibleBytes = w.newIncompressibleBytes
        return s
    }

    /// Writes the snapshot; call after ``finish()``. Returns the snapshot id.
    public func commit(_ snapshot: Snapshot) throws -> String {
        precondition(finished, "commit before finish")
        if let error = failure.withLock({ $0 }) { throw error }
        return try repository.saveSnapshot(snapshot)
    }

    /// Stops the pipeline after a failure of the caller; nothing more is written.
    public func abort() {
        fail(VaultlineError(.io, "backup aborted"))
        if !finished {
            finished = true
            compressQueue.close()
            group.wait()
        }
    }

    deinit { if !finished { abort() } }

    private func fail(_ error: any Error) {
        let e = error as? VaultlineError ?? VaultlineError(.io, "\(error)", cause: error)
        failure.withLock { if $0 == nil { $0 = e } }
    }

    private var failed: Bool { failure.withLock { $0 != nil } }

    // MARK: Workers

    /// Runs one compression worker; with a nil compressor (it could not be created) it only drains.
    private func compressLoop(_ compressor: Compressor?) {
        defer {
            // The last worker out closes the writer's queue.
            if workersLeft.withLock({ $0 -= 1; return $0 }) == 0 { writeQueue.close() }
        }
        guard let compressor else {
            while compressQueue.pop() != nil {}
            return
        }
        var scratch = [UInt8](repeating: 0, count: compressor.bound(repository.config.chunker.maxSize))
        let store = Compressed(id: .zero, type: .data, codec: .none, rawLength: 0, payload: [])
        while let job = compressQueue.pop() {
            if failed { continue }
            do {
                let bound = compressor.bound(job.bytes.count)
                if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
                let n = try job.bytes.withUnsafeBytes { src in
                    try scratch.withUnsafeMutableBytes { try compressor.compress(src, into: $0) }
                }
                var out = store
                out.id = job.id
                out.type = job.type
                out.rawLength = job.bytes.count
                if compressor.codec != .none && Double(n) <= Double(job.bytes.count) * (1 - Self.minimumSaving) {
                    out.codec = compressor.codec
                    out.payload = Array(scratch[0..<n])
                } else {
                    out.codec = .none
                    out.payload = job.bytes
                }
                writeQueue.push(out)
            } catch {
                fail(error)
            }
        }
    }

    private func writeLoop() {
        let key = repository.key
        let size = repository.config.packSize
        let writers = [BlobType.data: PackWriter(type: .data, key: key, targetSize: size),
                       BlobType.tree: PackWriter(type: .tree, key: key, targetSize: size)]
        var unindexed: [IndexFile.Pack] = []

        func finishPack(_ w: PackWriter) throws {
            let p = try w.finish(to: repository.backend)
            unindexed.append(IndexFile.Pack(id: p.id, salt: p.salt, entries: p.entries))
            writerStats.withLock { $0.packs += 1 }
            if unindexed.count >= packsPerIndexFile { try flushIndex() }
        }
        func flushIndex() throws {
            guard !unindexed.isEmpty else { return }
            let name = try repository.writeIndexFile(unindexed)
            writerStats.withLock { $0.indexFiles.append(name) }
            unindexed.removeAll()
        }

        while let blob = writeQueue.pop() {
            if failed { continue }
            do {
                let w = writers[blob.type]!
                try blob.payload.withUnsafeBytes {
                    try w.add(id: blob.id, codec: blob.codec, rawLength: blob.rawLength, payload: $0)
                }
                writerStats.withLock {
                    $0.newBlobs += 1
                    $0.newRawBytes += UInt64(blob.rawLength)
                    $0.newStoredBytes += UInt64(blob.payload.count + AESGCM.tagSize)
                    if blob.type == .data && blob.codec == .none { $0.newIncompressibleBytes += UInt64(blob.rawLength) }
                }
                if w.isFull { try finishPack(w) }
            } catch {
                fail(error)
            }
        }
        guard !failed else { return }
        do {
            // Data packs before tree packs, and every index entry before the snapshot.
            for type in [BlobType.data, .tree] where !writers[type]!.isEmpty { try finishPack(writers[type]!) }
            try flushIndex()
        } catch {
            fail(error)
        }
    }
}
