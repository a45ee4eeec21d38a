import Foundation

/// The engine's write path, used by every source (local directories, Graph):
///
///     caller: chunk (FastCDC) → blob id (BLAKE3 or HMAC) → dedup ─► N workers: compress ─► writer: seal → pack → index file
///
/// The caller's thread chunks and deduplicates; compression runs on one worker per core; one
/// writer thread seals blobs into packs, writes them durably and writes an index file as packs
/// finish. Blobs travel in buffers from two fixed pools (inputs: 3 × workers + 1; outputs:
/// 2 × workers + 1), so memory stays bounded whatever the input size, at about
/// (5 × workers + 2) × max chunk + 2 packs, and nothing is allocated per blob.
///
/// Call ``finish()`` when done, then ``commit(_:)`` to write the snapshot — last, after
/// everything it references is durable.
// @unchecked Sendable: its threads share only the queues, the buffer pool and `failure` (locks); `finished` and the default chunker are the caller's thread's
public final class BackupSession: @unchecked Sendable {
    struct Job: Sendable {
        var id: Bytes32
        var type: BlobType
        var input: PooledBuffer
    }

    struct Compressed: Sendable {
        var id: Bytes32
        var type: BlobType
        var codec: Codec
        var rawLength: Int
        /// From `inputs` when stored raw, from `outputs` when compressed.
        var payload: PooledBuffer
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
    private let flushQueue: BoundedQueue<SealedPack>
    private let inputs: BufferPool
    private let outputs: BufferPool
    private let group = DispatchGroup()
    private let failure = Locked<VaultlineError?>(nil)
    private let writerStats = Locked(WriterStats())
    private let submitted = Locked(Set<Bytes32>())
    private var defaultChunker: ContentChunker?
    private var finished = false
    private let workersLeft: Locked<Int>
    /// Index entries flushed every this many packs (and at the end).
    let packsPerIndexFile: Int
    /// Committed packs not yet in an index file, shared by the flushers so that several of them
    /// still write one index file per `packsPerIndexFile` packs (on object storage every index
    /// file is a PUT, and a GET for every later command); the last flusher out writes the rest.
    private let unindexed: Locked<(packs: [IndexFile.Pack], lastWritten: Date, flushersLeft: Int)>
    /// When set, a pack open this long is sealed even if not full, and its index written, so
    /// that a slow source (Graph) makes what it stored durable and indexed at this interval.
    let checkpointInterval: TimeInterval?

    public init(repository: Repository, workers: Int = ProcessInfo.processInfo.activeProcessorCount, packsPerIndexFile: Int = 16,
                checkpointInterval: TimeInterval? = nil) throws {
        self.repository = repository
        self.packsPerIndexFile = packsPerIndexFile
        self.checkpointInterval = checkpointInterval
        let n = max(1, workers)
        let config = repository.config
        // Queues never hold more than the pools own, so only the pools bound memory.
        inputs = BufferPool(count: 3 * n + 1, capacity: max(config.chunker.maxSize, 1 << 16))
        let bound = try Compressor(codec: config.compression, level: config.compressionLevel).bound(config.chunker.maxSize)
        outputs = BufferPool(count: 2 * n + 1, capacity: max(bound, 1 << 16))
        compressQueue = BoundedQueue(capacity: 4 * n + 2)
        writeQueue = BoundedQueue(capacity: 6 * n + 2)
        workersLeft = Locked(n)
        // A disk commits one pack at a time best; object storage wants several PUTs in flight.
        // Every pack queued or in flight on object storage is in memory (16 MiB each): one
        // waits, so that a flusher that finishes finds the next (usr/lib to SeaweedFS: 140 MiB
        // peak instead of 147–156 with four waiting; 7.8–9.5 s against 8.2–8.7 s, noise).
        let flushers = max(1, min(repository.backend.preferredConcurrentCommits, 16))
        flushQueue = BoundedQueue(capacity: flushers > 1 ? 1 : 2)
        unindexed = Locked(([], Date(), flushers))
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
        for i in 0..<flushers {
            startThread("vaultline-flusher-\(i)") { [self] in flushLoop() }
        }
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
        try bytes.withUnsafeBytes { try store($0, type: type) }
    }

    /// Stores one blob given as raw bytes (at most the chunker's maximum size).
    @discardableResult
    public func store(_ bytes: UnsafeRawBufferPointer, type: BlobType) throws -> Bytes32 {
        guard bytes.count < 1 << 28 else {
            throw VaultlineError(.invalidArgument, "a \(type) blob of \(bytes.count) bytes exceeds the 256 MiB blob limit")
        }
        let id = repository.key.blobID(bytes)
        try submit(id: id, type: type, bytes: bytes)
        return id
    }

    /// A chunker for one thread: each thread that stores content streams needs its own.
    public func makeChunker() -> ContentChunker { ContentChunker(session: self) }

    /// Chunks a byte stream of any length and stores its chunks; returns the blob ids in order and
    /// the total length. `read` fills the buffer it is given and returns 0 at the end.
    /// Single-threaded convenience; threads of their own use ``makeChunker()``.
    public func storeStream(read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (ids: [Bytes32], size: UInt64) {
        if defaultChunker == nil { defaultChunker = makeChunker() }
        return try defaultChunker!.store(read: read)
    }

    /// Stores a directory tree; returns its id.
    public func store(_ tree: Tree) throws -> Bytes32 {
        try store(try tree.encoded(), type: .tree)
    }

    /// Thread-safe: the index is only read during a backup, and the set of blobs this session
    /// has taken is locked.
    func submit(id: Bytes32, type: BlobType, bytes: UnsafeRawBufferPointer) throws {
        if let error = failure.withLock({ $0 }) { throw error }
        if repository.index.contains(id) { return }
        guard submitted.withLock({ $0.insert(id).inserted }) else { return }
        let buffer = inputs.acquire(size: bytes.count)
        if bytes.count > 0 { buffer.storage.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        buffer.count = bytes.count
        compressQueue.push(Job(id: id, type: type, input: buffer))
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
        let id = try repository.saveSnapshot(snapshot)
        // Written first, checked second: see Repository.reindexAfterConcurrentPrune.
        try repository.reindexAfterConcurrentPrune(snapshotTree: snapshot.tree)
        return id
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
            while let job = compressQueue.pop() { inputs.release(job.input) }
            return
        }
        while let job = compressQueue.pop() {
            if failed { inputs.release(job.input); continue }
            let raw = job.input.count
            var out = Compressed(id: job.id, type: job.type, codec: .none, rawLength: raw, payload: job.input)
            if compressor.codec != .none {
                let target = outputs.acquire(size: compressor.bound(raw))
                do {
                    let n = try compressor.compress(job.input.bytes, into: target.storage)
                    if Double(n) <= Double(raw) * (1 - Self.minimumSaving) {
                        target.count = n
                        out.codec = compressor.codec
                        out.payload = target
                        inputs.release(job.input)
                    } else {
                        outputs.release(target)
                    }
                } catch {
                    outputs.release(target)
                    inputs.release(job.input)
                    fail(error)
                    continue
                }
            }
            writeQueue.push(out)
        }
    }

    private func releasePayload(_ blob: Compressed) {
        if blob.codec == .none { inputs.release(blob.payload) } else { outputs.release(blob.payload) }
    }

    /// Seals compressed blobs into pack files; hands each full pack to the flusher.
    private func writeLoop() {
        defer { flushQueue.close() }
        let key = repository.key, backend = repository.backend
        let size = repository.config.packSize
        let dataWriter = PackWriter(type: .data, key: key, backend: backend, targetSize: size)
        let treeWriter = PackWriter(type: .tree, key: key, backend: backend, targetSize: size)
        func writer(_ type: BlobType) -> PackWriter { type == .data ? dataWriter : treeWriter }
        var openedAt: [BlobType: Date] = [:]
        receiving: while true {
            let blob: Compressed
            if let interval = checkpointInterval, let oldest = openedAt.values.min() {
                switch writeQueue.pop(until: oldest.addingTimeInterval(interval)) {
                case .item(let b): blob = b
                case .closed: break receiving
                case .timedOut:
                    // Checkpoint: seal the packs that have waited too long.
                    for (type, since) in openedAt where Date().timeIntervalSince(since) >= interval {
                        openedAt[type] = nil
                        let w = writer(type)
                        guard !failed, !w.isEmpty else { continue }
                        do { flushQueue.push(try w.seal()) } catch { fail(error) }
                    }
                    continue
                }
            } else {
                guard let b = writeQueue.pop() else { break }
                blob = b
            }
            defer { releasePayload(blob) }
            if failed { continue }
            do {
                let w = writer(blob.type)
                if w.isEmpty { openedAt[blob.type] = Date() }
                try w.add(id: blob.id, codec: blob.codec, rawLength: blob.rawLength, payload: blob.payload.bytes)
                writerStats.withLock {
                    $0.newBlobs += 1
                    $0.newRawBytes += UInt64(blob.rawLength)
                    $0.newStoredBytes += UInt64(blob.payload.count + AESGCM.tagSize)
                    if blob.type == .data && blob.codec == .none { $0.newIncompressibleBytes += UInt64(blob.rawLength) }
                }
                if w.isFull {
                    openedAt[blob.type] = nil
                    flushQueue.push(try w.seal())
                }
            } catch {
                fail(error)
            }
        }
        guard !failed else { return }
        do {
            // Data packs before tree packs.
            for w in [dataWriter, treeWriter] where !w.isEmpty { flushQueue.push(try w.seal()) }
        } catch {
            fail(error)
        }
    }

    /// Makes sealed packs durable, then writes an index file for every few of them (and for the
    /// rest at the end): an index entry never names a pack that is not durable, since a pack
    /// joins ``unindexed`` only once committed.
    private func flushLoop() {
        func write(_ packs: [IndexFile.Pack]) {
            guard !packs.isEmpty, !failed else { return }
            do {
                let name = try repository.writeIndexFile(packs)
                writerStats.withLock { $0.indexFiles.append(name) }
            } catch {
                fail(error)
            }
        }
        while let sealed = flushQueue.pop() {
            if failed { sealed.abandon(); continue }
            do {
                try sealed.commit()
            } catch {
                sealed.abandon()
                fail(error)
                continue
            }
            let pack = sealed.pack
            writerStats.withLock { $0.packs += 1 }
            let due: [IndexFile.Pack]? = unindexed.withLock { state in
                state.packs.append(IndexFile.Pack(id: pack.id, salt: pack.salt, entries: pack.entries))
                let checkpointDue = checkpointInterval.map { Date().timeIntervalSince(state.lastWritten) >= $0 } ?? false
                guard state.packs.count >= packsPerIndexFile || checkpointDue else { return nil }
                defer { state = ([], Date(), state.flushersLeft) }
                return state.packs
            }
            if let due { write(due) }
        }
        let rest: [IndexFile.Pack] = unindexed.withLock { state in
            state.flushersLeft -= 1
            guard state.flushersLeft == 0 else { return [] }
            defer { state.packs = [] }
            return state.packs
        }
        write(rest)
    }
}

/// Cuts content streams into chunks and stores them through a session. One per thread.
public final class ContentChunker {
    private let session: BackupSession
    private var source: (UnsafeMutableRawBufferPointer) throws -> Int = { _ in 0 }
    private var stream: ChunkStream!

    init(session: BackupSession) {
        self.session = session
        stream = ChunkStream(chunker: session.repository.chunker) { [unowned self] in try source($0) }
    }

    /// Chunks everything `read` yields and stores the chunks; returns their ids and the length.
    public func store(read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> (ids: [Bytes32], size: UInt64) {
        source = read
        defer { source = { _ in 0 } }
        stream.reset()
        var ids: [Bytes32] = []
        var size: UInt64 = 0
        let key = session.repository.key
        while let chunk = try stream.next() {
            let id = key.blobID(chunk.bytes)
            ids.append(id)
            size += UInt64(chunk.bytes.count)
            try session.submit(id: id, type: .data, bytes: chunk.bytes)
        }
        return (ids, size)
    }
}
