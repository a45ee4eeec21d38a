import NIOCore
import Synchronization

/// What a request needs of a connection: a fresh id and one answer (``RequestMux`` before the
/// WELCOME, ``ReplicaConnection`` after it).
public protocol ReplicaRequests: Sendable {
    func makeRequestID() -> UInt32
    /// One request, one answer; an ERROR answer is thrown.
    func call(_ frame: Frame) async throws -> Frame
}

/// The client side's requests on one connection, multiplexed by request id: each request's
/// answers arrive on a stream of its own. It exists from the HELLO on, so that requests the
/// protocol allows before the WELCOME (SUMMARY, LIST) can go out with the HELLO.
public final class RequestMux: ReplicaRequests {
    let outbound: NIOAsyncChannelOutboundWriter<Frame>
    let allocator: ByteBufferAllocator
    let eventLoop: any EventLoop
    /// DATA payload buffers, used again frame after frame by every transfer on this connection.
    let payloads = PayloadPool()
    private let pending = Mutex<Pending>(Pending())
    private let nextID = Atomic<UInt32>(1)

    private struct Pending {
        var streams: [UInt32: AsyncThrowingStream<Frame, any Error>.Continuation] = [:]
        var closedBy: ReplicationError?
    }

    init(outbound: NIOAsyncChannelOutboundWriter<Frame>, allocator: ByteBufferAllocator, eventLoop: any EventLoop) {
        self.outbound = outbound
        self.allocator = allocator
        self.eventLoop = eventLoop
    }

    /// A fresh request id.
    public func makeRequestID() -> UInt32 { nextID.add(1, ordering: .relaxed).oldValue }

    /// Registers a request and sends its first frame; its answers arrive on the stream.
    func send(_ frame: Frame) async throws -> AsyncThrowingStream<Frame, any Error> {
        let (stream, continuation) = AsyncThrowingStream<Frame, any Error>.makeStream()
        if let closed = pending.withLock({ p -> ReplicationError? in
            if let c = p.closedBy { return c }
            p.streams[frame.requestID] = continuation
            return nil
        }) { throw closed }
        try await outbound.write(frame)
        return stream
    }

    /// Ends a request's stream (its last answer has arrived).
    func finish(_ requestID: UInt32) {
        pending.withLock { $0.streams.removeValue(forKey: requestID) }?.finish()
    }

    /// Sends a frame of a request that is registered already (DATA).
    func write(_ frame: Frame) async throws { try await outbound.write(frame) }

    public func call(_ frame: Frame) async throws -> Frame {
        let stream = try await send(frame)
        defer { finish(frame.requestID) }
        var it = stream.makeAsyncIterator()
        guard let answer = try await it.next() else {
            throw ReplicationError(.connection, "connection closed before the answer to \(frame.type)")
        }
        if answer.type == .error { throw answer.decodeError() }
        return answer
    }

    /// Hands an answer to its request (request id 0, a connection-level ERROR, ends them all).
    func dispatch(_ frame: Frame) {
        if frame.requestID == 0 {
            close(frame.type == .error ? frame.decodeError() : ReplicationError(.malformed, "unexpected \(frame.type) with request id 0"))
            return
        }
        _ = pending.withLock { $0.streams[frame.requestID] }?.yield(frame)
    }

    /// Ends every request with `error`; later requests fail with it at once.
    func close(_ error: ReplicationError) {
        let streams = pending.withLock { p -> [AsyncThrowingStream<Frame, any Error>.Continuation] in
            if p.closedBy == nil { p.closedBy = error }
            defer { p.streams = [:] }
            return Array(p.streams.values)
        }
        for s in streams { s.finish(throwing: error) }
    }
}
