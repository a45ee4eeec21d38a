#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import VaultlineCore

/// Streams a file as DATA frames of at most one chunk, reading on a thread pool so that a
/// slow disk never blocks an event loop or the task pool. Back-pressure comes from the
/// outbound writer, which suspends while the channel is not writable, and from the event loop:
/// a transfer reads its next frame only once the loop has taken the one before the last.
enum FileStreamer {
    /// The DATA payload this side sends (the protocol allows up to a chunk, 1 MiB). At 1 MiB,
    /// TLS's output buffer for a frame reached glibc's mmap threshold and was mapped, faulted
    /// in and unmapped for every frame (3.7% of a replication's CPU at the sender); at 256 KiB
    /// it is reused from the heap (1.4%), and the frames' count costs nothing measurable.
    static let frameSize = 256 << 10

    /// Sends `path` from `offset` to its end. With `announce`, a FILE frame with the total
    /// size goes first (the GET answer). Returns the number of payload bytes sent.
    @discardableResult
    static func stream(
        path: String, from offset: Int64, requestID: UInt32, allocator: ByteBufferAllocator, threadPool: NIOThreadPool,
        eventLoop: any EventLoop, outbound: NIOAsyncChannelOutboundWriter<Frame>, announce: Bool = true, expectedSize: Int64? = nil,
        limiter: RateLimiter? = nil, pool: PayloadPool? = nil, sent: (@Sendable (Int) -> Void)? = nil
    ) async throws -> Int64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw IncomingFile.systemError("open", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IncomingFile.systemError("fstat", path) }
        let size = Int64(st.st_size)
        if let expectedSize, expectedSize != size {
            throw ReplicationError(.damagedSource, "file is \(size) bytes, expected \(expectedSize)", object: path)
        }
        guard offset >= 0, offset <= size else {
            throw ReplicationError(.malformed, "offset \(offset) is past the end (\(size) bytes)", object: path)
        }
        if announce { try await outbound.write(.u64(.file, UInt64(size), requestID: requestID)) }
        var at = offset
        let raw = Int(fd)
        // Under a rate limit, frames of an eighth of a second's budget (16 KiB at least): whole
        // 1 MiB chunks at a low rate would arrive as seconds of silence, and the receiver's
        // progress rule (docs/PROTOCOL.md, "Limits and timeouts") would take them for a stall.
        let chunk = limiter.map { Int(min(Double(frameSize), max(16_384, $0.budget.bytesPerSecond / 8))) } ?? frameSize
        // The outbound writer hands each frame to the event loop without waiting while the
        // channel is writable, so readers faster than TLS queued ~100 frames (25 MiB) there,
        // more than the payload pool holds: 1 frame in 5 got fresh memory (and its page
        // faults), and glibc trimmed and faulted in the heap's top as the queue swung. A no-op
        // on the loop after each write marks when the loop has taken that frame: the next
        // frame but one waits for it, so a transfer has at most two frames queued.
        var taken: EventLoopFuture<Void>?
        while at < size {
            let count = Int(min(Int64(chunk), size - at))
            if let limiter { await limiter.take(count) }
            let position = at
            let payload: ByteBuffer = try await threadPool.runIfActive {
                var b = pool?.take(capacity: 8 + count, allocator: allocator) ?? allocator.buffer(capacity: 8 + count)
                b.writeInteger(UInt64(position))
                try b.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { dst in
                    var done = 0
                    while done < count {
                        let n = pread(Int32(raw), dst.baseAddress! + done, count - done, off_t(position) + off_t(done))
                        if n < 0 && errno == EINTR { continue }
                        if n < 0 { throw IncomingFile.systemError("read", path) }
                        if n == 0 { throw ReplicationError(.damagedSource, "file shrank while being sent", object: path) }
                        done += n
                    }
                    return count
                }
                return b
            }
            pool?.keep(payload)
            try await outbound.write(Frame(.data, requestID: requestID, payload: payload))
            sent?(count)
            at += Int64(count)
            let before = taken
            taken = eventLoop.submit {}
            try await before?.get()
        }
        return size - offset
    }
}

/// `--limit-rate` for the async sender: waits as ``ByteRateBudget`` says.
final class RateLimiter: Sendable {
    let budget: ByteRateBudget

    init(bytesPerSecond: Double) { budget = ByteRateBudget(bytesPerSecond: bytesPerSecond) }

    /// Waits until `count` bytes may be sent.
    func take(_ count: Int) async {
        let wait = budget.reserve(count)
        if wait > 0 { try? await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
    }
}
