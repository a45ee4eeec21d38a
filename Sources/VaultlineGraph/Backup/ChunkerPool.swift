import Foundation
import NIOCore
import Synchronization
import VaultlineCore

/// Bridges async producers (HTTP bodies) to the engine's chunker, which pulls bytes on a thread
/// of its own and may block while the compression pipeline catches up.
///
/// A fixed set of threads each owns a ``ContentChunker``. A producer takes a thread for one item
/// (``store(_:)``) and hands it the item's bytes piece by piece through a ``StreamFeed``; each
/// `append` returns once the chunker has consumed the piece, so at most one body piece per
/// stream is held in memory and no task-pool thread ever blocks.
///
/// Two lanes share the threads. Mailbox content (mail, events, contacts) is paced by Exchange's
/// per-mailbox request budget, which is lost if it waits, so it goes first; bulk content (drive
/// files, which stream for as long as their download takes) uses what is left and never holds
/// more than `bulkThreads`. Without the lanes, drive downloads held every thread (and the
/// compression pipeline's buffers) for the first seconds of a tenant backup, and the mailboxes
/// fell behind a budget that cannot be made up later.
final class ChunkerPool: Sendable {
    private struct Job: Sendable {
        var run: @Sendable (ContentChunker) -> Void
    }

    private let jobs = Mutex<[Job]>([])
    private let available = DispatchSemaphore(value: 0)
    private let slots: AsyncLimiter
    private let bulkSlots: AsyncLimiter
    private let closed = Mutex(false)
    private let group = DispatchGroup()

    init(session: BackupSession, threads: Int, bulkThreads: Int) {
        slots = AsyncLimiter(threads)
        bulkSlots = AsyncLimiter(max(1, min(threads, bulkThreads)))
        threadCount = max(1, threads)
        for i in 0..<max(1, threads) {
            group.enter()
            let t = Thread { [self] in
                let chunker = session.makeChunker()
                while true {
                    available.wait()
                    guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { break }
                    job.run(chunker)
                }
                group.leave()
            }
            t.name = "vaultline-graph-chunker-\(i)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private let threadCount: Int

    /// Stores one content stream: `produce` appends its bytes to the feed; returns the blob ids
    /// and length. `bulk` content takes the bulk lane.
    func store(bulk: Bool = false, _ produce: (StreamFeed) async throws -> Void) async throws -> (ids: [Bytes32], size: UInt64) {
        if bulk { try await bulkSlots.acquire() }
        do { try await slots.acquire(urgent: !bulk) } catch {
            if bulk { await bulkSlots.release() }
            throw error
        }
        let feed = StreamFeed()
        let (results, continuation) = AsyncStream.makeStream(of: Result<(ids: [Bytes32], size: UInt64), any Error>.self)
        jobs.withLock { $0.append(Job { chunker in
            let r = Result { try chunker.store(read: feed.read) }
            if case .failure(let e) = r { feed.fail(e) }
            continuation.yield(r)
            continuation.finish()
        }) }
        available.signal()
        var produced: (any Error)?
        do { try await produce(feed) } catch { produced = error }
        feed.close()
        var iterator = results.makeAsyncIterator()
        let result = await iterator.next()
        await slots.release()
        if bulk { await bulkSlots.release() }
        if let produced { throw produced }
        guard let result else { throw VaultlineError(.io, "chunker thread ended without a result") }
        return try result.get()
    }

    /// Runs blocking engine work (storing a tree) on a pool thread, in the mailbox lane (a
    /// mailbox waits for its folder's tree before it goes on).
    func run<T: Sendable>(_ work: @escaping @Sendable (ContentChunker) throws -> T) async throws -> T {
        try await slots.acquire(urgent: true)
        let (results, continuation) = AsyncStream.makeStream(of: Result<T, any Error>.self)
        jobs.withLock { $0.append(Job { chunker in
            continuation.yield(Result { try work(chunker) })
            continuation.finish()
        }) }
        available.signal()
        var iterator = results.makeAsyncIterator()
        let result = await iterator.next()
        await slots.release()
        guard let result else { throw VaultlineError(.io, "chunker thread ended without a result") }
        return try result.get()
    }

    /// Ends the threads (after every `store` has returned) and waits for them off the
    /// cooperative pool: `group.wait()` would block one of its few threads.
    func shutdown() async {
        guard !closed.withLock({ c in defer { c = true }; return c }) else { return }
        for _ in 0..<threadCount { available.signal() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            group.notify(queue: .global()) { done.resume() }
        }
    }
}

/// One stream's hand-over point between an async producer and a chunker thread.
// @unchecked Sendable: every mutable field is read and written under `lock`
final class StreamFeed: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: ByteBuffer?
    private var eof = false
    private var failure: (any Error)?
    private var producer: CheckedContinuation<Void, any Error>?
    private let ready = DispatchSemaphore(value: 0)

    /// Chunker side: fills `dst` from the pending piece, waiting for one; 0 at the end.
    func read(_ dst: UnsafeMutableRawBufferPointer) -> Int {
        while true {
            lock.lock()
            if var piece = pending, piece.readableBytes > 0 {
                let n = min(dst.count, piece.readableBytes)
                piece.withUnsafeReadableBytes { src in
                    dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n)
                }
                piece.moveReaderIndex(forwardBy: n)
                if piece.readableBytes == 0 {
                    pending = nil
                    let waiting = producer
                    producer = nil
                    lock.unlock()
                    waiting?.resume()
                } else {
                    pending = piece
                    lock.unlock()
                }
                return n
            }
            if eof || failure != nil {
                lock.unlock()
                return 0
            }
            lock.unlock()
            ready.wait()
        }
    }

    /// Producer side: hands one piece over and returns once the chunker has taken all of it.
    func append(_ piece: ByteBuffer) async throws {
        guard piece.readableBytes > 0 else { return }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            lock.lock()
            if let failure {
                lock.unlock()
                c.resume(throwing: failure)
                return
            }
            pending = piece
            producer = c
            lock.unlock()
            ready.signal()
        }
    }

    func close() {
        lock.lock()
        eof = true
        lock.unlock()
        ready.signal()
    }

    /// The chunker failed: the producer stops at its next append.
    func fail(_ error: any Error) {
        lock.lock()
        failure = error
        let waiting = producer
        producer = nil
        pending = nil
        lock.unlock()
        waiting?.resume(throwing: error)
    }
}
