import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Appends to a file through two aligned buffers, writing each full one with direct I/O
/// (``DirectIO``) on a queue of its own while the caller fills the other: the caller's thread
/// copies, the disk writes, and neither waits for the other until both buffers are full.
///
/// What is on the file is always a prefix of what was appended: writes go in order, one at a
/// time, and a failed one stops every later one. Bytes still in a buffer are not on the file
/// until ``flush()``; a crash loses them (and whatever the disk had not made durable: fsync
/// the descriptor after ``flush()`` for that). The part of a flush that is not whole aligned
/// blocks (the head of a file resumed at an unaligned length, its last partial block) is
/// written through the page cache, so nothing is ever padded and cut back.
///
/// The descriptor stays the caller's (it closes it, after the last ``flush()``); the writer
/// switches `O_DIRECT` on it on and off as it needs.
public final class DirectFileWriter: @unchecked Sendable {
    // @unchecked: `append` and `flush` come from one owner at a time; the queue touches only
    // the buffer handed to it, the descriptor's mode, and `failure`, which is in a Mutex.
    public let path: String
    private let fd: Int32
    private let capacity: Int
    private var current: UnsafeMutableRawBufferPointer
    /// The other buffer, once one write has been handed to the queue.
    private var other: UnsafeMutableRawBufferPointer?
    /// The file offset of `current[0]`: a multiple of the block size.
    private var base: Int64
    /// `current[0..<skip]` lies before where the writer started: never written.
    private var skip: Int
    private var filled: Int
    private let queue = DispatchQueue(label: "vaultline.direct-writer")
    /// One write in flight at a time: waited for before the next is handed over.
    private let idle = DispatchSemaphore(value: 1)
    private let shared: Mutex<Shared>

    private struct Shared {
        var failure: (any Error)?
        var direct: Bool
        /// Whether the descriptor has `O_DIRECT` on now.
        var descriptorDirect: Bool
    }

    /// A writer appending at `offset` (the file's length) of `fd`, open for writing at `path`
    /// (for errors). `bufferSize` is rounded down to whole blocks (at least one).
    public init(fd: Int32, path: String, offset: Int64, bufferSize: Int = 1 << 20, direct: Bool = DirectIO.isEnabled) {
        self.fd = fd
        self.path = path
        capacity = max(DirectIO.blockSize, bufferSize & ~(DirectIO.blockSize - 1))
        current = .allocate(byteCount: capacity, alignment: DirectIO.blockSize)
        base = DirectIO.alignDown(offset)
        skip = Int(offset - base)
        filled = skip
        let on = direct && DirectIO.set(fd, direct: true)
        shared = Mutex(Shared(failure: nil, direct: on, descriptorDirect: on))
    }

    deinit {
        // The write in flight (if any) ends first; libdispatch refuses to free a semaphore
        // below its initial value, hence the signal.
        idle.wait()
        idle.signal()
        current.deallocate()
        other?.deallocate()
    }

    /// The file offset the next appended byte goes to.
    public var offset: Int64 { base + Int64(filled) }

    /// Whether full blocks go to the disk directly (false on a file system that refused).
    public var isDirect: Bool { shared.withLock { $0.direct } }

    /// Copies `bytes` into the buffer, handing each full buffer to the write queue. Throws the
    /// error of an earlier write that failed (nothing after it is written).
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard var source = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = min(capacity - filled, left)
            (current.baseAddress! + filled).copyMemory(from: source, byteCount: n)
            filled += n
            source += n
            left -= n
            if filled == capacity { try handOver() }
        }
    }

    /// Writes everything appended so far and waits for it; throws the first write error.
    public func flush() throws {
        if filled > skip { try handOver() }
        idle.wait()
        idle.signal()
        if let failure = shared.withLock({ $0.failure }) { throw failure }
    }

    /// Hands `current[skip..<filled]` to the queue and continues in the other buffer at the
    /// next offset.
    private func handOver() throws {
        idle.wait()
        if let failure = shared.withLock({ $0.failure }) {
            idle.signal()
            throw failure
        }
        let handed = HandedBuffer(bytes: UnsafeRawBufferPointer(current))
        let bufferBase = base, from = skip, to = filled
        queue.async { [self] in
            defer { idle.signal() }
            do {
                try write(handed.bytes, from: from, to: to, at: bufferBase)
            } catch {
                shared.withLock { $0.failure = error }
            }
        }
        let next = base + Int64(filled)
        current = other ?? .allocate(byteCount: capacity, alignment: DirectIO.blockSize)
        other = UnsafeMutableRawBufferPointer(mutating: handed.bytes)
        base = DirectIO.alignDown(next)
        skip = Int(next - base)
        filled = skip
    }

    /// A buffer on its way to the queue.
    private struct HandedBuffer: @unchecked Sendable {
        // @unchecked: the owner touches the buffer again only after `idle` says its write ended.
        let bytes: UnsafeRawBufferPointer
    }

    /// Writes `buffer[from..<to]` at `base + from` (base aligned): the unaligned head and tail
    /// through the page cache, the whole blocks between them directly.
    private func write(_ buffer: UnsafeRawBufferPointer, from: Int, to: Int, at base: Int64) throws {
        let block = DirectIO.blockSize
        var position = from
        let direct = shared.withLock { $0.direct }
        if direct {
            let headEnd = min((from + block - 1) & ~(block - 1), to)
            if headEnd > position {
                try writeRange(buffer, position..<headEnd, at: base, direct: false)
                position = headEnd
            }
            let bodyEnd = to & ~(block - 1)
            if bodyEnd > position {
                try writeRange(buffer, position..<bodyEnd, at: base, direct: true)
                position = bodyEnd
            }
        }
        if to > position {
            try writeRange(buffer, position..<to, at: base, direct: false)
            if !direct { FileSystem.startWriteBack(fd, offset: base + Int64(position), length: Int64(to - position)) }
        }
    }

    private func writeRange(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, at base: Int64, direct wanted: Bool) throws {
        var direct = wanted
        if !setMode(direct: direct) {
            if direct { direct = false; _ = setMode(direct: false) }
        }
        var done = range.lowerBound
        while done < range.upperBound {
            let n = pwrite(fd, buffer.baseAddress! + done, range.upperBound - done, off_t(base) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL && direct {
                    // The file system took the flag but refuses the transfer: buffered from here.
                    shared.withLock { $0.direct = false }
                    direct = false
                    _ = setMode(direct: false)
                    continue
                }
                throw VaultlineError.system("pwrite", object: path)
            }
            done += n
            // A short direct write leaves `done` unaligned: the rest goes through the page cache.
            if direct && done < range.upperBound && done & (DirectIO.blockSize - 1) != 0 {
                direct = false
                _ = setMode(direct: false)
            }
        }
    }

    /// Puts the descriptor in the wanted mode; false when that failed (it is as it was).
    private func setMode(direct: Bool) -> Bool {
        let now = shared.withLock { $0.descriptorDirect }
        if now == direct { return true }
        guard DirectIO.set(fd, direct: direct) else {
            if direct { shared.withLock { $0.direct = false } }
            return false
        }
        shared.withLock { $0.descriptorDirect = direct }
        return true
    }
}
