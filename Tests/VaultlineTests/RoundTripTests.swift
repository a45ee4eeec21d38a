import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// What saves round trips on a long link and must keep the protocol's guarantees: OFFER_HELD
/// (docs/PROTOCOL.md, "Transfer"), a file of the next group accepted early and committed only
/// once the sender sends its DATA, so a group's order holds at site B; and the inventory's
/// requests sent with the HELLO ("Handshake").
@Suite("Round trips") struct RoundTripTests {
    static let repositoryID = String(repeating: "cd", count: 32)

    @Test(.timeLimit(.minutes(2)))
    func aHeldFileIsCommittedOnlyAtItsFirstData() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        defer { Task { await receiver.stop() } }
        let empty = FileRef(.snapshot, SHA256.hash([UInt8]()))
        let content: [UInt8] = Array("an index file".utf8)
        let index = FileRef(.index, SHA256.hash(content))
        let committed = { (ref: FileRef) in FileSystem.exists(dir.path + "/site-b/\(Self.repositoryID)/\(ref.kind.fileKind.rawValue)/\(ref.name.hex)") }

        // Not asked for in the HELLO: refused, the connection stays.
        let refused = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            try await peer.send(.offer(empty, size: 0, requestID: 1, held: true))
            return try await peer.next()?.error?.code
        }
        #expect(refused == .malformed)
        #expect(!committed(empty))

        let answers = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            let welcome = try await peer.hello(repositoryID: Self.repositoryID, capabilities: ProtocolLimits.heldOffers)
            let granted = try welcome.map { try Frame(.welcome, requestID: 0, payload: $0.payload).decodeWelcome().capabilities }
            // An empty file is complete at its ACCEPT; held, it waits for the sender's word.
            try await peer.send(.offer(empty, size: 0, requestID: 1, held: true))
            let accept = try await peer.next()
            try await peer.send(.offer(index, size: Int64(content.count), requestID: 2, held: true))
            let acceptIndex = try await peer.next()
            try await Task.sleep(nanoseconds: 300_000_000)
            let earlyCommit = committed(empty) || committed(index)
            var b = ByteBuffer()
            b.writeInteger(UInt64(0))
            try await peer.send(Frame(.data, requestID: 1, payload: b))
            let durable = try await peer.next()
            var d = ByteBuffer()
            d.writeInteger(UInt64(0))
            d.writeBytes(content)
            try await peer.send(Frame(.data, requestID: 2, payload: d))
            let durableIndex = try await peer.next()
            return (granted, accept?.type, acceptIndex?.type, earlyCommit, durable?.type, durableIndex?.type)
        }
        #expect(answers.0 == ProtocolLimits.heldOffers)
        #expect(answers.1 == FrameType.accept.rawValue && answers.2 == FrameType.accept.rawValue)
        #expect(answers.3 == false)
        #expect(answers.4 == FrameType.durable.rawValue && answers.5 == FrameType.durable.rawValue)
        #expect(committed(empty) && committed(index))
    }

    @Test(.timeLimit(.minutes(2)))
    func aSummarySentWithTheHelloIsAnsweredAfterTheWelcome() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        defer { Task { await receiver.stop() } }
        let types = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            try await peer.send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: Self.repositoryID, clientName: "raw")))
            try await peer.send(.summary(.pack, bits: 0, requestID: 1))
            return [try await peer.next()?.type, try await peer.next()?.type]
        }
        #expect(types == [FrameType.welcome.rawValue, FrameType.summaryReply.rawValue])
        // Refused (a monitor may not create a repository): nothing after the HELLO is answered.
        let refused = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.monitor) { peer in
            try await peer.send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: String(repeating: "ef", count: 32), clientName: "raw")))
            try await peer.send(.summary(.pack, bits: 0, requestID: 1))
            let first = try await peer.next()
            return (first?.error?.code, try? await peer.next())
        }
        #expect(refused.0 == .notFound)
        #expect(refused.1 == nil)
    }
}
