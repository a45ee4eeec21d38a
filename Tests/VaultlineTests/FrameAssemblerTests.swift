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

    @Test func framesComeOutWholeWhereverTheStreamIsCut() throws {
        var rng = SplitMix64(seed: 11)
        let small = [
            Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(3_000))),
            Frame(.have, requestID: 8),
            Frame(.offer, requestID: 9, payload: ByteBuffer(bytes: rng.bytesArray(40))),
        ]
        let large = small + [
            Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(300_000))),
            Frame(.data, requestID: 7, payload: ByteBuffer(bytes: rng.bytesArray(ProtocolLimits.chunkSize + 8))),
        ]
        for (sent, maxPiece) in [(small, 1), (small, 7), (small, 9), (small, 10), (large, 4096), (large, 70_000), (large, Int.max)] {
            let bytes = Self.wire(sent)
            let channel = EmbeddedChannel(handler: FrameAssembler())
            var at = 0
            while at < bytes.count {
                let piece = min(bytes.count - at, 1 + Int(rng.next() % UInt64(min(maxPiece, bytes.count))))
                try channel.writeInbound(ByteBuffer(bytes: bytes[at..<(at + piece)]))
                at += piece
            }
            var received: [Frame] = []
            while let frame = try channel.readInbound(as: Frame.self) { received.append(frame) }
            #expect(received.map(\.type) == sent.map(\.type) && received.map(\.requestID) == sent.map(\.requestID), "pieces up to \(maxPiece)")
            #expect(received.map(\.payload) == sent.map(\.payload), "pieces up to \(maxPiece)")
            _ = try channel.finish()
        }
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
