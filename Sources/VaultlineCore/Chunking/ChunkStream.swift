/// One chunk produced by ``ChunkStream``. `bytes` points into the stream's buffer and is valid
/// only until the next call to ``ChunkStream/next()``.
public struct ChunkView {
    public var offset: UInt64
    public var bytes: UnsafeRawBufferPointer
    public var fingerprint: UInt64
}

/// Cuts a byte stream of any length into FastCDC chunks while holding at most two maximum-size
/// chunks of it in memory.
///
/// The stream pulls from `read`, which fills the buffer it is given and returns how many bytes it
/// wrote (0 at the end of the input).
public final class ChunkStream {
    private let cdc: FastCDC
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var atEOF = false
    private var consumed: UInt64 = 0
    private let read: (UnsafeMutableRawBufferPointer) throws -> Int

    public init(chunker: FastCDC, bufferSize: Int? = nil, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        cdc = chunker
        let size = max(bufferSize ?? 0, chunker.parameters.maxSize * 2, 64 << 10)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        self.read = read
    }

    deinit { buffer.deallocate() }

    /// Starts over on a new input from the same `read` source (reusing the buffer).
    public func reset() {
        start = 0
        end = 0
        atEOF = false
        consumed = 0
    }

    /// The next chunk, or nil at the end of the input.
    public func next() throws -> ChunkView? {
        let maxSize = cdc.parameters.maxSize
        if end - start < maxSize && !atEOF {
            try refill(wanting: maxSize)
        }
        if start == end { return nil }
        let window = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
        let (length, fp) = cdc.cut(window)
        let view = ChunkView(
            offset: consumed, bytes: UnsafeRawBufferPointer(rebasing: window[0..<length]), fingerprint: fp)
        start += length
        consumed += UInt64(length)
        return view
    }

    private func refill(wanting: Int) throws {
        if start > 0 {
            let live = end - start
            if live > 0 {
                buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: live)
            }
            start = 0
            end = live
        }
        while end < buffer.count && end - start < wanting {
            let n = try read(UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
            if n == 0 { atEOF = true; break }
            end += n
        }
    }
}
