import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// OFFER_HELD (docs/PROTOCOL.md, "Transfer"): a file of the next group is accepted early and
/// committed only once the sender sends its DATA, so a group's order holds at site B.
@Suite("Held offers") struct HeldOfferTests {
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
}
