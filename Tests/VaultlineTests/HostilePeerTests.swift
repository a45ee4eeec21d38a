import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// Authenticated peers that misbehave: each refusal is an ERROR with a reason, nothing is
/// written outside the receiver's root, and the receiver keeps serving other peers.
@Suite("Hostile peers") struct HostilePeerTests {
    static let repositoryID = String(repeating: "ab", count: 32)

    @Test(.timeLimit(.minutes(2)))
    func everyHostileRequestIsRefusedAndTheReceiverKeepsServing() async throws {
        let dir = TemporaryDirectory()
        let root = dir.path + "/site-b"
        let receiver = try await RunningReceiver(root: root)
        let port = receiver.port
        let id = Self.repositoryID

        // No client certificate at all: the TLS handshake fails, no frame is read.
        let anonymous = try? await RawPeer.connect(port: port, identity: nil) { peer in try await peer.hello(repositoryID: id) }
        #expect(anonymous?.type != FrameType.welcome.rawValue)
        #expect(!FileSystem.exists(root + "/" + id))

        // A repository id that tries to leave the root.
        let traversal = try await RawPeer.connect(port: port, identity: TestSites.shared.primary) { peer in
            try await peer.hello(repositoryID: "../../../../tmp/escape")?.error?.code
        }
        #expect(traversal == .invalidName)

        // An oversized frame: refused by its length, before the body is even sent.
        let oversized = try await RawPeer.connect(port: port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: id)
            try await peer.send(type: FrameType.data.rawValue, requestID: 1, lengthOverride: 1 << 30)
            return try await peer.next()?.error?.code
        }
        #expect(oversized == .frameTooLarge)

        // An unknown frame type.
        let unknown = try await RawPeer.connect(port: port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: id)
            try await peer.send(type: 0x7f, requestID: 1)
            return try await peer.next()?.error?.code
        }
        #expect(unknown == .unknownType)

        // An unknown file kind (the only way a name could be anything but a hash).
        let badKind = try await RawPeer.connect(port: port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: id)
            var b = ByteBuffer()
            b.writeInteger(UInt8(42))
            b.writeName(.zero)
            b.writeInteger(UInt64(10))
            try await peer.send(type: FrameType.offer.rawValue, requestID: 1, payload: b)
            return try await peer.next()?.error?.code
        }
        #expect(badKind == .invalidName)

        // Content that does not hash to its name, then an overwrite of a committed file.
        var rng = SplitMix64(seed: 4)
        let content = rng.bytes(3000)
        let other = rng.bytes(100)
        let name = SHA256.hash(content)
        let results = try await RawPeer.connect(port: port, identity: TestSites.shared.primary) { peer -> [String] in
            _ = try await peer.hello(repositoryID: id)
            var out: [String] = []
            var wrong = content
            wrong[17] ^= 1
            out.append(try await Self.push(&peer, FileRef(.pack, name), wrong, requestID: 1))
            out.append(try await Self.push(&peer, FileRef(.pack, name), content, requestID: 2))
            out.append(try await Self.push(&peer, FileRef(.pack, name), wrong, requestID: 3))
            // DATA out of order.
            try await peer.send(.offer(FileRef(.index, SHA256.hash(other)), size: 100, requestID: 4))
            _ = try await peer.next()
            var b = ByteBuffer()
            b.writeInteger(UInt64(50))
            b.writeBytes(other[50...])
            try await peer.send(Frame(.data, requestID: 4, payload: b))
            out.append("\(try await peer.next()?.error?.code.description ?? "none")")
            return out
        }
        #expect(results == ["hashMismatch", "durable", "have", "malformed"])
        let replica = try receiver.server.store.repository(id: id, create: false)
        #expect(try FileSystem.readFile(replica.path(FileRef(.pack, name))) == content)
        #expect(try LocalBackend(root: replica.directory).list(.index).isEmpty)

        // Nothing was created outside the root's repository folders.
        #expect(try FileSystem.list(root) == [id])
        #expect(!FileSystem.exists("/tmp/escape"))

        // And the receiver still serves a well-behaved primary.
        let siteA = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: siteA)
        _ = try await ReplicationFixtures.replicate(siteA.path + "/repo", port: port)
        #expect(try ReplicationFixtures.files(root + "/" + repo.config.id) == ReplicationFixtures.files(siteA.path + "/repo"))
        await receiver.stop()
    }

    /// OFFERs and sends a file from the offset the receiver accepts, in chunks; returns the
    /// name of the final answer.
    static func push(_ peer: inout RawPeer, _ ref: FileRef, _ bytes: [UInt8], requestID: UInt32) async throws -> String {
        try await peer.send(.offer(ref, size: Int64(bytes.count), requestID: requestID))
        guard let answer = try await peer.next() else { return "closed" }
        if answer.type == FrameType.have.rawValue { return "have" }
        if let e = answer.error { return e.code.description }
        var offset = Int(try Frame(.accept, requestID: requestID, payload: answer.payload).decodeU64())
        while offset < bytes.count {
            let end = min(bytes.count, offset + ProtocolLimits.chunkSize)
            var b = ByteBuffer()
            b.writeInteger(UInt64(offset))
            b.writeBytes(bytes[offset..<end])
            try await peer.send(Frame(.data, requestID: requestID, payload: b))
            offset = end
        }
        guard let last = try await peer.next() else { return "closed" }
        if last.type == FrameType.durable.rawValue { return "durable" }
        return last.error?.code.description ?? "unexpected"
    }
}
