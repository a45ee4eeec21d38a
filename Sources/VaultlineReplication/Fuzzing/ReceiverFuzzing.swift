import Foundation
import Logging
import NIOCore
import NIOEmbedded
import VaultlineCore

/// Entry point for the receiver fuzzer (`Fuzz/`, `tools/fuzz receiver`) and for the tests
/// that replay its corpus: arbitrary bytes, as they would arrive after TLS, through the frame
/// decoder into a receiver session, in process, over an in-memory channel. The receiver
/// stores what it accepts under a temporary root. Every input must end with the session done
/// and the receiver still standing; a trap, a hang or a memory error is a finding.
@_spi(Fuzzing)
public final class ReceiverFuzzing: Sendable {
    let server: ReplicaServer

    /// A receiver rooted at `root` (tmpfs makes the fuzzer's commits cheap).
    public init(root: String) throws {
        let ca = try SiteCertificates.makeCA(name: "fuzz CA")
        let issued = try SiteCertificates.issue(caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.privateKeyPEM, name: "fuzz", role: .replica, hosts: [])
        let identity = try SiteIdentity(certificatePEM: issued.certificatePEM, keyPEM: issued.privateKeyPEM, caPEM: ca.certificatePEM)
        var logger = Logger(label: "fuzz.receiver")
        logger.logLevel = .critical
        server = try ReplicaServer(configuration: .init(host: "127.0.0.1", port: 0, identity: identity, root: root, serverName: "fuzz"), logger: logger)
    }

    /// The first byte picks the peer's role (primary, replica, monitor, or no role); the rest
    /// arrives in pieces whose sizes the next bytes choose, so frames split at every point.
    /// Returns the bytes the receiver answered.
    @discardableResult
    public func run(_ input: [UInt8]) async -> Int {
        guard let first = input.first else { return 0 }
        let roles: [SiteRole?] = [.primary, .replica, .monitor, nil]
        let role = roles[Int(first) % roles.count]
        let stream = input.dropFirst()
        let channel = NIOAsyncTestingChannel()
        do {
            let connection = try await channel.testingEventLoop.executeInContext {
                try channel.pipeline.syncOperations.addHandlers([FrameAssembler(), FrameEncoder()])
                return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
            }
            let server = self.server
            let session = Task {
                try? await connection.executeThenClose { inbound, outbound in
                    var session = ReceiverSession(server: server, channel: channel, outbound: outbound, activity: ConnectionActivity(), logger: server.logger)
                    session.identify = { _ in PeerIdentity(role: role, subject: "CN=fuzz") }
                    try await session.run(inbound)
                }
            }
            var at = stream.startIndex
            var piece = 1
            while at < stream.endIndex {
                let end = stream.index(at, offsetBy: min(piece, stream.endIndex - at))
                try await channel.writeInbound(ByteBuffer(bytes: stream[at..<end]))
                piece = piece * 7 % 4093 + 1
                at = end
            }
            // The peer's input ends; the session finishes its commits and GETs, then closes.
            try await channel.testingEventLoop.executeInContext {
                channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
            await session.value
            try? await channel.close()
        } catch {
            try? await channel.close()
        }
        var answered = 0
        while let out = try? await channel.readOutbound(as: ByteBuffer.self) { answered += out.readableBytes }
        return answered
    }
}

@_spi(Fuzzing)
extension ReceiverFuzzing {
    static let repositoryID = String(repeating: "5a", count: 32)

    /// Seed inputs made by the protocol's own encoders: a push, a config, reads by each role,
    /// and the refusals of the hostile-peer tests.
    public static func seeds() -> [[UInt8]] {
        let content = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let pack = FileRef(.pack, SHA256.hash(content))
        let empty = FileRef(.index, SHA256.hash([]))
        var stored = RepositoryConfig(
            id: repositoryID, chunker: FastCDC.Parameters(minSize: 256 << 10, avgSize: 1 << 20, maxSize: 4 << 20),
            compression: .zstd, compressionLevel: 3, packSize: 16 << 20, blobIDs: .blake3)
        stored.created = Date(timeIntervalSince1970: 1_796_083_200)
        let config = (try? stored.encoded()) ?? []
        let configRef = FileRef(.config, SHA256.hash(config))
        let hello = Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: repositoryID, clientName: "fuzz"))
        func data(_ bytes: [UInt8], at offset: UInt64, id: UInt32) -> Frame {
            var b = ByteBuffer()
            b.writeInteger(offset)
            b.writeBytes(bytes)
            return Frame(.data, requestID: id, payload: b)
        }
        let list = ListRequest(kind: .pack, bits: 0, bucket: 0, cursor: nil, limit: 100).encode(requestID: 3)
        let push: [Frame] = [
            hello, .summary(.pack, bits: 2, requestID: 2), list,
            .offer(pack, size: Int64(content.count), requestID: 4),
            data(Array(content[0..<1000]), at: 0, id: 4), data(Array(content[1000...]), at: 1000, id: 4),
            .offer(empty, size: 0, requestID: 5), .get(pack, offset: 10, requestID: 6),
        ]
        let hostile: [Frame] = [
            hello, data([1, 2, 3], at: 0, id: 9), .offer(pack, size: 1 << 41, requestID: 10),
            .offer(pack, size: 3000, requestID: 11), data([9], at: 7, id: 11), .u64(.accept, 0, requestID: 12), hello,
        ]
        return [
            [0] + encode(push),
            [0] + encode([hello, .offer(configRef, size: Int64(config.count), requestID: 1), data(config, at: 0, id: 1)]),
            [1] + encode([hello, .get(pack, offset: 0, requestID: 1), .summary(.index, bits: 0, requestID: 2)]),
            [2] + encode([hello, list, .offer(pack, size: 3000, requestID: 4)]),
            [3] + encode([hello]),
            [0] + encode(hostile),
        ]
    }

    /// Frames as they are on the wire.
    public static func encode(_ frames: [Frame]) -> [UInt8] {
        var out: [UInt8] = []
        for frame in frames {
            var header = ByteBuffer()
            header.writeInteger(UInt32(5 + frame.payload.readableBytes))
            header.writeInteger(frame.type.rawValue)
            header.writeInteger(frame.requestID)
            out += header.readableBytesView
            out += frame.payload.readableBytesView
        }
        return out
    }
}
