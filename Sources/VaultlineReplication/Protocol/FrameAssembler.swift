import NIOCore
import Synchronization

/// Splits the byte stream into frames (docs/PROTOCOL.md, "Frames"), refusing an oversized
/// length or an unknown type as soon as the 9-byte header is in, before allocating for it.
///
/// Each payload is copied once, from the TLS layer's plaintext buffer into a buffer of its
/// own taken from a ``PayloadPool``. NIO's `ByteToMessageHandler` kept a cumulation buffer that
/// payload slices shared, so compacting it after every 1 MiB frame copied the buffer into fresh
/// memory (16% of a replication's CPU, and as much again in page faults on that memory); here
/// nothing is compacted and a payload's memory is used again once its frame is dropped.
final class FrameAssembler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Frame

    let maxLength: Int
    private let pool: PayloadPool
    /// The header bytes of the next frame while fewer than 9 have arrived.
    private var header: ByteBuffer
    /// The frame whose payload is arriving, and how many of its bytes are still to come.
    private var current: (type: FrameType, requestID: UInt32, remaining: Int)?
    private var payload = ByteBuffer()
    private var failed = false

    init(maxLength: Int = ProtocolLimits.maxFrameLength, pool: PayloadPool = PayloadPool()) {
        self.maxLength = maxLength
        self.pool = pool
        header = ByteBuffer()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }  // after an error nothing more of this stream is trusted
        var input = unwrapInboundIn(data)
        do {
            while input.readableBytes > 0 {
                if let frame = current {
                    let count = min(frame.remaining, input.readableBytes)
                    if let piece = input.readSlice(length: count) { payload.writeImmutableBuffer(piece) }
                    current?.remaining -= count
                    if frame.remaining == count { emit(context) }
                } else {
                    try readHeader(from: &input, context: context)
                }
            }
        } catch {
            failed = true
            context.fireErrorCaught(error)
        }
    }

    /// Takes header bytes from `input`; once all 9 are in, starts the frame (or emits it, when
    /// it has no payload).
    private func readHeader(from input: inout ByteBuffer, context: ChannelHandlerContext) throws {
        let fields: (length: UInt32, type: UInt8, requestID: UInt32)
        if header.readableBytes == 0, input.readableBytes >= ProtocolLimits.headerSize,
           let length = input.readInteger(as: UInt32.self), let type = input.readInteger(as: UInt8.self),
           let requestID = input.readInteger(as: UInt32.self) {
            fields = (length, type, requestID)
        } else {
            let missing = ProtocolLimits.headerSize - header.readableBytes
            if let piece = input.readSlice(length: min(missing, input.readableBytes)) { header.writeImmutableBuffer(piece) }
            guard header.readableBytes == ProtocolLimits.headerSize,
                  let length = header.readInteger(as: UInt32.self), let type = header.readInteger(as: UInt8.self),
                  let requestID = header.readInteger(as: UInt32.self) else { return }
            header.clear()
            fields = (length, type, requestID)
        }
        guard fields.length <= maxLength else {
            throw ReplicationError(.frameTooLarge, "frame of \(fields.length) bytes is larger than the maximum \(maxLength)")
        }
        guard fields.length >= 5 else { throw ReplicationError(.malformed, "frame length \(fields.length) is below 5") }
        guard let type = FrameType(rawValue: fields.type) else {
            throw ReplicationError(.unknownType, "unknown frame type 0x\(String(fields.type, radix: 16))")
        }
        let payloadLength = Int(fields.length) - 5
        current = (type, fields.requestID, payloadLength)
        payload = pool.take(capacity: payloadLength, allocator: context.channel.allocator)
        if payloadLength == 0 { emit(context) }
    }

    private func emit(_ context: ChannelHandlerContext) {
        guard let frame = current else { return }
        current = nil
        let done = payload
        payload = ByteBuffer()
        pool.keep(done)
        context.fireChannelRead(wrapInboundOut(Frame(frame.type, requestID: frame.requestID, payload: done)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A partial frame at the end of the stream is dropped: only whole frames count.
        current = nil
        payload = ByteBuffer()
        context.fireChannelInactive()
    }
}

/// Buffers for frame payloads of a chunk's size, used again once every other holder has
/// dropped them: no allocation, and no page faults on fresh memory, per 1 MiB frame. (At 1 MiB
/// glibc maps each allocation on its own, see `Memory.tuneAllocator`, so a new buffer per frame
/// meant an mmap, 256 page faults that zero the memory, and an munmap.)
///
/// The pool holds a reference to each buffer it lent; a buffer is free when that reference is
/// the only one left (`modifyIfUniquelyOwned`). Smaller payloads are allocated as usual.
final class PayloadPool: Sendable {
    /// Payloads below this are not pooled: control frames, and small files' last chunks.
    static let pooledMinimum = 64 << 10
    static let capacity = ProtocolLimits.maxFrameLength
    private let buffers = Mutex<[ByteBuffer]>([])
    /// How many buffers it keeps at most: enough for the frames in flight on one connection
    /// (a transfer's chunks queued to the socket or to the session, 16 transfers at most).
    let limit: Int

    init(limit: Int = 24) { self.limit = limit }

    /// A buffer with room for `capacity` bytes, empty.
    func take(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard capacity >= Self.pooledMinimum, capacity <= Self.capacity else { return allocator.buffer(capacity: capacity) }
        let reused: ByteBuffer? = buffers.withLock { buffers in
            for index in buffers.indices {
                var candidate = buffers[index]
                buffers[index] = ByteBuffer()  // the pool's own reference, dropped for the check
                if candidate.modifyIfUniquelyOwned({ $0.clear() }) != nil {
                    buffers.remove(at: index)
                    return candidate
                }
                buffers[index] = candidate
            }
            return nil
        }
        return reused ?? allocator.buffer(capacity: Self.capacity)
    }

    /// Keeps a reference to a buffer `take` lent, so that it can be lent again once its frame
    /// has been dropped.
    func keep(_ buffer: ByteBuffer) {
        guard buffer.capacity >= Self.capacity else { return }
        buffers.withLock { if $0.count < limit { $0.append(buffer) } }
    }
}
