import NIOCore
import NIOPosix
import NIOSSL

/// A client connection to a replica receiver, after the handshake: requests are multiplexed
/// by request id (``RequestMux``), and each request's answers arrive on its own stream.
public final class ReplicaConnection: ReplicaRequests {
    public let welcome: Welcome
    let requests: RequestMux
    var outbound: NIOAsyncChannelOutboundWriter<Frame> { requests.outbound }
    var allocator: ByteBufferAllocator { requests.allocator }
    var eventLoop: any EventLoop { requests.eventLoop }
    var payloads: PayloadPool { requests.payloads }

    init(welcome: Welcome, requests: RequestMux) {
        self.welcome = welcome
        self.requests = requests
    }

    public func makeRequestID() -> UInt32 { requests.makeRequestID() }
    func send(_ frame: Frame) async throws -> AsyncThrowingStream<Frame, any Error> { try await requests.send(frame) }
    func finish(_ requestID: UInt32) { requests.finish(requestID) }
    func write(_ frame: Frame) async throws { try await requests.write(frame) }
    public func call(_ frame: Frame) async throws -> Frame { try await requests.call(frame) }

    /// Connects, completes TLS and the handshake, runs `body`, and closes.
    public static func with<T: Sendable>(
        host: String, port: Int, identity: SiteIdentity, repositoryID: String, clientName: String,
        group: any EventLoopGroup, _ body: @escaping @Sendable (ReplicaConnection) async throws -> T
    ) async throws -> T {
        try await with(host: host, port: port, identity: identity, repositoryID: repositoryID, clientName: clientName, group: group,
                       early: { _ in () }, { connection, _ in try await body(connection) })
    }

    /// Connects, sends HELLO and runs `early` at once, without waiting for the WELCOME (it may
    /// send only what docs/PROTOCOL.md allows before it: SUMMARY and LIST); once the WELCOME
    /// is in and `early` is done, runs `body` with its result; then closes. A refused handshake
    /// is what is thrown, whatever `early` met meanwhile.
    public static func with<E: Sendable, T: Sendable>(
        host: String, port: Int, identity: SiteIdentity, repositoryID: String, clientName: String,
        group: any EventLoopGroup, early: @escaping @Sendable (RequestMux) async throws -> E,
        _ body: @escaping @Sendable (ReplicaConnection, E) async throws -> T
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
            return try await exchange(channel, host: host, port: port, repositoryID: repositoryID, clientName: clientName, early: early, body)
        } catch let e as ReplicationError {
            throw e
        } catch {
            // Channel, TLS and socket errors: the connection is gone (retryable).
            throw ReplicationError(.connection, "connection lost", object: "\(host):\(port)", cause: error)
        }
    }

    private static func exchange<E: Sendable, T: Sendable>(
        _ channel: NIOAsyncChannel<Frame, Frame>, host: String, port: Int, repositoryID: String, clientName: String,
        early: @escaping @Sendable (RequestMux) async throws -> E,
        _ body: @escaping @Sendable (ReplicaConnection, E) async throws -> T
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
            let raw = channel.channel
            let requests = RequestMux(outbound: outbound, allocator: raw.allocator, eventLoop: raw.eventLoop)
            // The connection reaches the body once the WELCOME is in (or the handshake's error).
            let (connections, deliver) = AsyncThrowingStream<ReplicaConnection, any Error>.makeStream()
            return try await withThrowingTaskGroup(of: T.self) { group in
                group.addTask {
                    // Closing the channel when the body is done ends the reading loop below.
                    defer { raw.close(promise: nil) }
                    let prepared = try await early(requests)
                    var delivered = connections.makeAsyncIterator()
                    guard let connection = try await delivered.next() else {
                        throw ReplicationError(.connection, "the handshake did not complete", object: "\(host):\(port)")
                    }
                    return try await body(connection, prepared)
                }
                do {
                    let connection = ReplicaConnection(
                        welcome: try await handshake(&frames, host: host, port: port, helloError: helloError), requests: requests)
                    deliver.yield(connection)
                    deliver.finish()
                } catch {
                    // What `early` meets now is this error's consequence: this one is thrown.
                    let reason = error as? ReplicationError ?? ReplicationError(.connection, "handshake failed", object: "\(host):\(port)", cause: error)
                    requests.close(reason)
                    deliver.finish(throwing: reason)
                    group.cancelAll()
                    throw error
                }
                var error = ReplicationError(.connection, "the receiver closed the connection", object: "\(host):\(port)")
                do {
                    while let frame = try await frames.next() { requests.dispatch(frame) }
                } catch let e {
                    error = ReplicationError(.connection, "connection lost", object: "\(host):\(port)", cause: e)
                }
                requests.close(error)
                guard let result = try await group.next() else { throw error }
                return result
            }
        }
    }

    /// Reads the answer to HELLO: the WELCOME, or the refusal as an error.
    private static func handshake(
        _ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator, host: String, port: Int, helloError: (any Error)?
    ) async throws -> Welcome {
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
        return try first.decodeWelcome()
    }
}
