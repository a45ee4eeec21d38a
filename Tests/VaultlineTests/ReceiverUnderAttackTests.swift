import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// Findings of a peer written from docs/PROTOCOL.md alone and tried as an attacker would
/// (issue 13): each test failed, or crashed the test process, before its fix.
@Suite("Receiver under attack") struct ReceiverUnderAttackTests {
    static let repositoryID = String(repeating: "cd", count: 32)

    /// Sends one frame and returns the code of the ERROR it got (nil for another answer).
    static func errorCode(_ peer: inout RawPeer, _ type: FrameType, requestID: UInt32, _ fill: (inout ByteBuffer) -> Void) async throws -> ReplicationError.Code? {
        var b = ByteBuffer()
        fill(&b)
        try await peer.send(Frame(type, requestID: requestID, payload: b))
        return try await peer.next()?.error?.code
    }

    @Test(.timeLimit(.minutes(2)))
    func offsetsAndSizesOf2To63AndAboveAreMalformedAndTheReceiverLives() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let id = Self.repositoryID
        let content = SplitMix64(seed: 1).bytesArray(5000)
        let ref = FileRef(.pack, SHA256.hash(content))
        for value: UInt64 in [1 << 63, .max, (1 << 40) + 1] {
            let codes = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> [ReplicationError.Code?] in
                _ = try await peer.hello(repositoryID: id)
                var out: [ReplicationError.Code?] = []
                out.append(try await Self.errorCode(&peer, .offer, requestID: 1) { $0.writeFileRef(ref); $0.writeInteger(value) })
                // A DATA offset of a real transfer.
                try await peer.send(.offer(ref, size: Int64(content.count), requestID: 2))
                #expect(try await peer.next()?.type == FrameType.accept.rawValue)
                out.append(try await Self.errorCode(&peer, .data, requestID: 2) { $0.writeInteger(value); $0.writeBytes(content[0..<10]) })
                out.append(try await Self.errorCode(&peer, .get, requestID: 3) { $0.writeFileRef(ref); $0.writeInteger(value) })
                return out
            }
            // The GET is of a file the replica does not hold yet: notFound comes after the
            // offset check, so malformed proves the offset was checked first.
            #expect(codes == [.malformed, .malformed, .malformed], "value \(value)")
        }
        // Site B still serves: the file is pushed whole and read back with GET at 2^63.
        let pushed = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: id)
            return try await HostilePeerTests.push(&peer, ref, content, requestID: 1)
        }
        #expect(pushed == "durable")
        let replicaGet = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.replica) { peer in
            _ = try await peer.hello(repositoryID: id)
            return try await Self.errorCode(&peer, .get, requestID: 9) { $0.writeFileRef(ref); $0.writeInteger(UInt64(1) << 63) }
        }
        #expect(replicaGet == .malformed)
        await receiver.stop()

        // Site A's read-only repair server, reached with a replica certificate.
        let siteA = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: siteA)
        let served = try await RunningReceiver(root: siteA.path + "/repo", identity: TestSites.shared.primary, serving: siteA.path + "/repo")
        let pack = try LocalBackend(root: siteA.path + "/repo").list(.pack)[0]
        let packRef = FileRef(.pack, try #require(Bytes32(hex: pack)))
        let readOnly = try await RawPeer.connect(port: served.port, identity: TestSites.shared.replica) { peer -> [ReplicationError.Code?] in
            _ = try await peer.hello(repositoryID: repo.config.id)
            return [
                try await Self.errorCode(&peer, .get, requestID: 1) { $0.writeFileRef(packRef); $0.writeInteger(UInt64(1) << 63) },
                try await Self.errorCode(&peer, .get, requestID: 2) { $0.writeFileRef(packRef); $0.writeInteger(UInt64.max) },
            ]
        }
        #expect(readOnly == [.malformed, .malformed])
        let bytes = try await ReplicaReader.fetch(packRef, repositoryID: repo.config.id, host: "127.0.0.1", port: served.port, identity: TestSites.shared.replica)
        #expect(SHA256.hash(bytes) == packRef.name)
        await served.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func peerTextCannotForgeALogLine() async throws {
        let dir = TemporaryDirectory()
        let logs = LogCapture()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", logs: logs)
        let forged = "raw\n2026-12-01T00:00:00+0000 info vaultline.replica : role=primary subject=CN=site-a connected"
        _ = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            try await peer.send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: Self.repositoryID, clientName: forged)))
            return try await peer.next()?.type
        }
        // A repository id is refused, and its refusal quotes it.
        let refused = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            try await peer.send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: "x\ninfo forged: connected\u{1B}[2J", clientName: "c")))
            return try await peer.next()?.error?.code
        }
        #expect(refused == .invalidName)
        await receiver.stop()
        let lines = logs.all
        #expect(lines.contains { $0.contains("connected") && $0.contains(#"client="raw\n2026"#) })
        #expect(lines.contains { $0.contains("refused handshake") && $0.contains(#"x\ninfo forged"#) && $0.contains(#"\u{1B}[2J"#) })
        for line in lines {
            #expect(!line.contains("\n") && !line.contains("\u{1B}"), "a log line holds a raw control character: \(line)")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func errorsNameFilesNotTheReceiversPaths() async throws {
        let dir = TemporaryDirectory()
        let siteA = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: siteA)
        let root = dir.path + "/site-b"
        let receiver = try await RunningReceiver(root: root)
        _ = try await ReplicationFixtures.replicate(siteA.path + "/repo", port: receiver.port)
        // A file site B lists but has lost from its disk: the open fails at GET.
        let replica = try receiver.server.store.repository(id: repo.config.id, create: false)
        let pack = try #require(replica.names(.pack).first)
        let path = replica.path(FileRef(.pack, pack))
        _ = chmod(path, 0o600)
        #expect(unlink(path) == 0)
        let error = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.replica) { peer in
            _ = try await peer.hello(repositoryID: repo.config.id)
            try await peer.send(.get(FileRef(.pack, pack), offset: 0, requestID: 1))
            return try await peer.next()?.error
        }
        let message = try #require(error).message
        #expect(message.contains(pack.hex), "\(message)")
        #expect(!message.contains(dir.path), "the ERROR sent to the peer holds a path of site B: \(message)")
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func twoConfigsOfferedAtOnceOneIsDurableTheOtherConflicts() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let id = Self.repositoryID
        func config(packSize: Int, id: String = id) throws -> [UInt8] {
            try StoredJSON.encode(RepositoryConfig(id: id, chunker: .init(minSize: 256 << 10, avgSize: 1 << 20, maxSize: 4 << 20), compression: .zstd, compressionLevel: 3, packSize: packSize, blobIDs: .blake3))
        }
        let first = try config(packSize: 16 << 20), second = try config(packSize: 32 << 20)
        let answers = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { a -> [String] in
            let fromB = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { b -> [String] in
                _ = try await a.hello(repositoryID: id)
                _ = try await b.hello(repositoryID: id)
                try await a.send(.offer(FileRef(.config, SHA256.hash(first)), size: Int64(first.count), requestID: 1))
                try await b.send(.offer(FileRef(.config, SHA256.hash(second)), size: Int64(second.count), requestID: 1))
                #expect(try await a.next()?.type == FrameType.accept.rawValue)
                #expect(try await b.next()?.type == FrameType.accept.rawValue)
                // Both were accepted before either commits: A's bytes arrive first.
                func data(_ bytes: [UInt8]) -> Frame {
                    var b = ByteBuffer()
                    b.writeInteger(UInt64(0))
                    b.writeBytes(bytes)
                    return Frame(.data, requestID: 1, payload: b)
                }
                func name(_ answer: RawPeer.RawFrame?) -> String {
                    answer?.type == FrameType.durable.rawValue ? "durable" : answer?.error?.code.description ?? "none"
                }
                var out: [String] = []
                try await a.send(data(first))
                out.append(name(try await a.next()))
                try await b.send(data(second))
                out.append(name(try await b.next()))
                // Offered again later, the loser is still refused, never HAVE.
                out.append(try await HostilePeerTests.push(&b, FileRef(.config, SHA256.hash(second)), second, requestID: 2))
                return out
            }
            return fromB
        }
        #expect(answers == ["durable", "conflict", "conflict"])
        let replica = try receiver.server.store.repository(id: id, create: false)
        #expect(try FileSystem.readFile(replica.directory + "/config") == first)

        // A config of another repository than the HELLO named is refused.
        let otherID = String(repeating: "ef", count: 32)
        let foreign = try config(packSize: 16 << 20, id: id)
        let wrong = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: otherID)
            return try await HostilePeerTests.push(&peer, FileRef(.config, SHA256.hash(foreign)), foreign, requestID: 1)
        }
        #expect(wrong == "invalidName")
        #expect(!FileSystem.exists(dir.path + "/site-b/" + otherID + "/config"))
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func unreadGetRepliesAreBoundedAndAllArriveOnceRead() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let id = Self.repositoryID
        let content = SplitMix64(seed: 2).bytesArray(2 << 20)
        let ref = FileRef(.pack, SHA256.hash(content))
        let server = receiver.server
        let (inFlight, received) = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> (Int, [UInt32: Int]) in
            _ = try await peer.hello(repositoryID: id)
            #expect(try await HostilePeerTests.push(&peer, ref, content, requestID: 1) == "durable")
            let gets = 32
            for i in 0..<gets { try await peer.send(.get(ref, offset: 0, requestID: UInt32(100 + i))) }
            // The peer reads nothing for a second: the receiver streams at most its bound.
            try await Task.sleep(nanoseconds: 1_000_000_000)
            let inFlight = server.getStreams.load(ordering: .relaxed)
            var bytes: [UInt32: Int] = [:]
            var files = 0
            while files < gets, let frame = try await peer.next() {
                if frame.type == FrameType.data.rawValue {
                    bytes[frame.requestID, default: 0] += frame.payload.readableBytes - 8
                    if bytes[frame.requestID] == content.count { files += 1 }
                }
            }
            return (inFlight, bytes)
        }
        #expect(inFlight >= 1 && inFlight <= ProtocolLimits.maxGetsInFlight, "\(inFlight) GET streams ran for one peer that reads nothing")
        #expect(received.count == 32 && received.values.allSatisfy { $0 == content.count })
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func reusingARequestIDInProgressEndsTheConnectionAndASecondHelloIsRefused() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let content = SplitMix64(seed: 3).bytesArray(3 << 20)
        let ref = FileRef(.pack, SHA256.hash(content))
        let answers = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> [String] in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            var out: [String] = []
            try await peer.send(Frame.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: 0, repositoryID: Self.repositoryID, clientName: "again")))
            let second = try await peer.next()
            out.append("\(second?.requestID ?? 99) \(second?.error?.code.description ?? "none")")
            try await peer.send(.offer(ref, size: Int64(content.count), requestID: 7))
            _ = try await peer.next()
            try await peer.send(.offer(FileRef(.index, ref.name), size: 10, requestID: 7))
            let reused = try await peer.next()
            out.append("\(reused?.requestID ?? 99) \(reused?.error?.code.description ?? "none")")
            out.append(try await peer.next() == nil ? "closed" : "open")
            return out
        }
        #expect(answers == ["0 malformed", "0 malformed", "closed"])
        // The transfer's name was released with the connection.
        let resumed = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            return try await HostilePeerTests.push(&peer, ref, content, requestID: 1)
        }
        #expect(resumed == "durable")
        await receiver.stop()
    }
}

extension SplitMix64 {
    func bytesArray(_ count: Int) -> [UInt8] {
        var copy = self
        return copy.bytes(count)
    }
}
