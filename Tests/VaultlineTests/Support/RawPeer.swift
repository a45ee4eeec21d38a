import NIOCore
import NIOPosix
import NIOSSL
@testable import VaultlineReplication

/// A TLS client that writes raw bytes and reads frames: a hostile but authenticated peer.
struct RawPeer {
    struct RawFrame {
        var type: UInt8
        var requestID: UInt32
        var payload: ByteBuffer
        var error: ReplicationError? {
            guard type == FrameType.error.rawValue else { return nil }
            return Frame(.error, requestID: requestID, payload: payload).decodeError()
        }
    }

    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()

    /// Connects with `identity` (nil: no client certificate) and runs `body` on the connection.
    static func connect<T: Sendable>(
        port: Int, identity: SiteIdentity?, _ body: (inout RawPeer) async throws -> T
    ) async throws -> T {
        var c = TLSConfiguration.makeClientConfiguration()
        if let identity {
            c.certificateChain = identity.certificateChain.map { .certificate($0) }
            c.privateKey = .privateKey(identity.privateKey)
        }
        c.trustRoots = .certificates(TestSites.shared.primary.trustRoots)
        c.certificateVerification = .noHostnameVerification
        c.minimumTLSVersion = .tlsv13
        let ssl = try NIOSSLContext(configuration: c)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: nil))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        return try await channel.executeThenClose { inbound, outbound in
            var peer = RawPeer(outbound: outbound, inbound: inbound.makeAsyncIterator())
            return try await body(&peer)
        }
    }

    private init(outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) {
        self.outbound = outbound
        self.inbound = inbound
    }

    func send(_ bytes: ByteBuffer) async throws { try await outbound.write(bytes) }

    func send(type: UInt8, requestID: UInt32, payload: ByteBuffer = ByteBuffer(), lengthOverride: UInt32? = nil) async throws {
        var b = ByteBuffer()
        b.writeInteger(lengthOverride ?? UInt32(5 + payload.readableBytes))
        b.writeInteger(type)
        b.writeInteger(requestID)
        b.writeImmutableBuffer(payload)
        try await send(b)
    }

    func send(_ frame: Frame) async throws {
        try await send(type: frame.type.rawValue, requestID: frame.requestID, payload: frame.payload)
    }

    /// The next frame, or nil when the peer closed the connection.
    mutating func next() async throws -> RawFrame? {
        while true {
            if let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), buffer.readableBytes >= 4 + Int(length) {
                buffer.moveReaderIndex(forwardBy: 4)
                let type: UInt8 = buffer.readInteger()!
                let id: UInt32 = buffer.readInteger()!
                return RawFrame(type: type, requestID: id, payload: buffer.readSlice(length: Int(length) - 5)!)
            }
            do {
                guard var more = try await inbound.next() else { return nil }
                buffer.writeBuffer(&more)
            } catch {
                return nil
            }
        }
    }

    /// Sends HELLO and returns the answer.
    mutating func hello(repositoryID: String, capabilities: UInt64 = 0) async throws -> RawFrame? {
        try await send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: capabilities, repositoryID: repositoryID, clientName: "raw")))
        return try await next()
    }

}
