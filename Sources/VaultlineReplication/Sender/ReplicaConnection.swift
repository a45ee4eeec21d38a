import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A client connection to a replica receiver, after the handshake: requests are multiplexed
/// by request id, and each request's answers arrive on its own stream.
public final class ReplicaConnection: Sendable {
    public let welcome: Welcome
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

    init(welcome: Welcome, outbound: NIOAsyncChannelOutboundWriter<Frame>, allocator: ByteBufferAllocator, eventLoop: any EventLoop) {
        self.welcome = welcome
        self.outbound = outbound
        self.allocator = allocator
        self.eventLoop = eventLoop
    }

    /// Connects, completes TLS and the handshake, runs `body`, and closes.
    public static func with<T: Sendable>(
        host: String, port: Int, identity: SiteIdentity, repositoryID: String, clientName: String,
        group: any EventLoopGroup, _ body: @escaping @Sendable (ReplicaConnection) async throws -> T
    ) async throws -> T {
        let ssl = try identity.clientContext()
        let channel: NIOAsyncChannel<Frame, Frame>
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: nil))
                        try sync.addHandler(FrameAssembler())
                        try sync.addHandler(FrameEncoder())
                        return try NIOAsyncChannel<Frame, Frame>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8)))
                    }
                }
        } catch {
            throw ReplicationError(.connection, "cannot connect", object: "\(host):\(port)", cause: error)
        }
        do {
            return try await exchange(channel, host: host, port: port, repositoryID: repositoryID, clientName: clientName, body)
        } catch let e as ReplicationError {
            throw e
        } catch {
            // Channel, TLS and socket errors: the connection is gone (retryable).
            throw ReplicationError(.connection, "connection lost", object: "\(host):\(port)", cause: error)
        }
    }

    private static func exchange<T: Sendable>(
        _ channel: NIOAsyncChannel<Frame, Frame>, host: String, port: Int, repositoryID: String, clientName: String,
        _ body: @escaping @Sendable (ReplicaConnection) async throws -> T
    ) async throws -> T {
        try await channel.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            // A write that fails because a refused TLS handshake closed the channel says only
            // "closed": the refusal itself is what the inbound side reports, read next.
            var helloError: (any Error)?
            do {
                try await outbound.write(.hello(Hello(
                    minVersion: ProtocolLimits.version, maxVersion: ProtocolLimits.version, capabilities: ProtocolLimits.capabilities,
                    repositoryID: repositoryID, clientName: clientName)))
            } catch {
                helloError = error
            }
            let first: Frame?
            do { first = try await frames.next() } catch let error as NIOSSLError {
                // A refused certificate, either way: retrying cannot help, so it is not `.connection`.
                guard case .handshakeFailed = error else {
                    throw ReplicationError(.connection, "TLS failed", object: "\(host):\(port)", cause: error)
                }
                throw ReplicationError(.certificate, "the TLS handshake was refused: the two sites' certificates do not verify each other (another CA, expired, or the wrong name)", object: "\(host):\(port)", cause: error)
            } catch {
                throw ReplicationError(.connection, "handshake failed", object: "\(host):\(port)", cause: error)
            }
            guard let first else {
                throw ReplicationError(.connection, "the receiver closed the connection during the handshake", object: "\(host):\(port)", cause: helloError)
            }
            if first.type == .error { throw first.decodeError() }
            guard first.type == .welcome else { throw ReplicationError(.malformed, "expected WELCOME, got \(first.type)") }
            let connection = ReplicaConnection(welcome: try first.decodeWelcome(), outbound: outbound, allocator: channel.channel.allocator, eventLoop: channel.channel.eventLoop)
            let raw = channel.channel
            return try await withThrowingTaskGroup(of: T.self) { group in
                group.addTask {
                    // Closing the channel when the body is done ends the reading loop below.
                    defer { raw.close(promise: nil) }
                    return try await body(connection)
                }
                var error = ReplicationError(.connection, "the receiver closed the connection", object: "\(host):\(port)")
                do {
                    while let frame = try await frames.next() { connection.dispatch(frame) }
                } catch let e {
                    error = ReplicationError(.connection, "connection lost", object: "\(host):\(port)", cause: e)
                }
                connection.close(error)
                guard let result = try await group.next() else { throw error }
                return result
            }
        }
    }

    /// A fresh request id.
    func makeRequestID() -> UInt32 { nextID.add(1, ordering: .relaxed).oldValue }

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

    /// One request, one answer; an ERROR answer is thrown.
    func call(_ frame: Frame) async throws -> Frame {
        let stream = try await send(frame)
        defer { finish(frame.requestID) }
        var it = stream.makeAsyncIterator()
        guard let answer = try await it.next() else {
            throw ReplicationError(.connection, "connection closed before the answer to \(frame.type)")
        }
        if answer.type == .error { throw answer.decodeError() }
        return answer
    }

    private func dispatch(_ frame: Frame) {
        if frame.requestID == 0 {
            close(frame.type == .error ? frame.decodeError() : ReplicationError(.malformed, "unexpected \(frame.type) with request id 0"))
            return
        }
        _ = pending.withLock { $0.streams[frame.requestID] }?.yield(frame)
    }

    private func close(_ error: ReplicationError) {
        let streams = pending.withLock { p -> [AsyncThrowingStream<Frame, any Error>.Continuation] in
            if p.closedBy == nil { p.closedBy = error }
            defer { p.streams = [:] }
            return Array(p.streams.values)
        }
        for s in streams { s.finish(throwing: error) }
    }
}
