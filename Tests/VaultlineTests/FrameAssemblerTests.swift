import NIOCore
import NIOEmbedded
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// The receiving side's framing: frames come out whole and equal to what was sent however the
/// stream is cut, a bad header is refused before anything is allocated for it, and a chunk's
/// memory is used again once its frame is dropped.
@Suite("Frame assembler")
struct FrameAssemblerTests {
    static func wire(_ frames: [Frame]) -> [UInt8] { frames.flatMap(ProtocolExampleTests.wire) }

    /// The frames sent: small ones when the stream is cut into pieces of a few bytes (every
    /// header split at every point), and chunk-sized ones (pooled payloads) for larger pieces.
    static func frames(large: Bool) -> [Frame] {
        let rng = SplitMix64(seed: 11)
        var frames = [
            Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(3_000))),
            Frame(.have, requestID: 8),
            Frame(.offer, requestID: 9, payload: ByteBuffer(bytes: rng.bytesArray(40))),
        ]
        if large {
            frames.append(Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(300_000))))
            frames.append(Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(ProtocolLimits.chunkSize + 8))))
        }
        return frames
    }

    @Test(arguments: [1, 7, 9, 10, 4096, 70_000, 5_000_000])
    func framesComeOutWholeWhereverTheStreamIsCut(maxPiece: Int) throws {
        let sent = Self.frames(large: maxPiece > 100)
        let bytes = Self.wire(sent)
        var rng = SplitMix64(seed: UInt64(maxPiece))
        let channel = EmbeddedChannel(handler: FrameAssembler())
        var at = 0
        while at < bytes.count {
            let piece = min(bytes.count - at, 1 + Int(rng.next() % UInt64(min(maxPiece, bytes.count))))
            try channel.writeInbound(ByteBuffer(bytes: bytes[at..<(at + piece)]))
            at += piece
        }
        var received: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { received.append(frame) }
        #expect(received.count == sent.count)
        for (got, want) in zip(received, sent) {
            #expect(got.type == want.type)
            #expect(got.requestID == want.requestID)
            #expect(got.payload == want.payload)
        }
        _ = try channel.finish()
    }

    @Test func aBadHeaderIsRefusedBeforeItsPayloadArrives() throws {
        for (header, code) in [([0x00, 0x11, 0x00, 0x00] + [0x23, 0, 0, 0, 1], ReplicationError.Code.frameTooLarge),
                               ([0, 0, 0, 4] + [0x23, 0, 0, 0, 1], .malformed),
                               ([0, 0, 0, 5] + [0x7f, 0, 0, 0, 1], .unknownType)] as [([UInt8], ReplicationError.Code)] {
            let channel = EmbeddedChannel(handler: FrameAssembler())
            expectError(ReplicationError.self, code) { try channel.writeInbound(ByteBuffer(bytes: header)) }
            // Nothing after a refusal is read as frames.
            try channel.writeInbound(ByteBuffer(bytes: ProtocolExampleTests.wire(Frame(.have, requestID: 1))))
            #expect(try channel.readInbound(as: Frame.self) == nil)
            _ = try? channel.finish()
        }
    }

    @Test func aChunksMemoryIsUsedAgainOnceItsFrameIsDropped() throws {
        let pool = PayloadPool()
        let allocator = ByteBufferAllocator()
        func address(_ buffer: ByteBuffer) -> UInt { buffer.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) } }
        var first = pool.take(capacity: 256 << 10, allocator: allocator)
        first.writeBytes([1, 2, 3])
        let firstAddress = address(first)
        pool.keep(first)
        // Still held (a frame not yet written out): the next take gets other memory.
        let second = pool.take(capacity: 256 << 10, allocator: allocator)
        #expect(address(second) != firstAddress)
        first = ByteBuffer()
        // Dropped: the same memory comes back, empty.
        let third = pool.take(capacity: 256 << 10, allocator: allocator)
        #expect(address(third) == firstAddress && third.readableBytes == 0)
        // Small payloads are not pooled.
        #expect(pool.take(capacity: 100, allocator: allocator).capacity < PayloadPool.pooledMinimum)
        withExtendedLifetime(second) {}
    }
}
