import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// The receiver's timeouts and connection caps (docs/PROTOCOL.md, "Limits and timeouts"),
/// with limits shortened to seconds so that each is seen to fire.
@Suite("Receiver limits") struct ReceiverLimitsTests {
    static let repositoryID = String(repeating: "da", count: 32)

    static var short: ReceiverLimits {
        var l = ReceiverLimits()
        // TLS and HELLO take well under a second, but the whole suite may load the machine.
        l.handshakeTimeout = .seconds(5)
        l.idleTimeout = .milliseconds(1500)
        l.minTransferRate = 64 << 10
        l.progressWindow = .seconds(1)
        return l
    }

    @Test(.timeLimit(.minutes(2)))
    func silentTCPAndTLSWithoutHelloAreCutAtTheHandshakeTimeout() async throws {
        let dir = TemporaryDirectory()
        let logs = LogCapture()
        var limits = Self.short
        limits.handshakeTimeout = .seconds(1)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: limits, logs: logs)
        let bare = try BareSocket(port: receiver.port)
        defer { bare.close() }
        let started = Date()
        #expect(bare.closedByPeer(within: 5), "a silent TCP connection was not cut")
        #expect(Date().timeIntervalSince(started) >= 0.9)
        // TLS completes, then nothing: no HELLO. (On a loaded machine the cut may come before
        // the client's TLS is done: a closed channel is the same answer.)
        let tlsOnly = (try? await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            try await peer.next() == nil ? "closed" : "answered"
        }) ?? "closed"
        #expect(tlsOnly == "closed")
        // A HELLO that never ends (its length promises more than arrives).
        let partial = (try? await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            try await peer.send(type: FrameType.hello.rawValue, requestID: 0, lengthOverride: 200)
            return try await peer.next() == nil ? "closed" : "answered"
        }) ?? "closed"
        #expect(partial == "closed")
        await receiver.stop()
        #expect(logs.all.filter { $0.contains("closing the connection") && $0.contains("no handshake") }.count >= 3)
    }

    @Test(.timeLimit(.minutes(2)))
    func anIdleConnectionIsClosed() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: Self.short)
        let (answer, idle) = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> (UInt8?, Double) in
            // Timed from before HELLO: the receiver's last activity is no earlier than that.
            let since = Date()
            let welcome = try await peer.hello(repositoryID: Self.repositoryID)?.type
            _ = try await peer.next()
            return (welcome, Date().timeIntervalSince(since))
        }
        #expect(answer == FrameType.welcome.rawValue)
        #expect(idle >= 1.4 && idle < 6, "closed after \(idle) s idle")
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func aPeerThatReadsNoReplyIsClosedAsIdle() async throws {
        let dir = TemporaryDirectory()
        // An idle timeout long enough that a loaded machine still shows the blocked streams
        // before it fires.
        var limits = Self.short
        limits.idleTimeout = .seconds(4)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: limits)
        let content = SplitMix64(seed: 6).bytesArray(2 << 20)
        let ref = FileRef(.pack, SHA256.hash(content))
        let server = receiver.server
        let (streaming, after) = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> (Int, Int) in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            #expect(try await HostilePeerTests.push(&peer, ref, content, requestID: 1) == "durable")
            for i in 0..<32 { try await peer.send(.get(ref, offset: 0, requestID: UInt32(10 + i))) }
            var streaming = 0
            for _ in 0..<30 where streaming == 0 {
                try await Task.sleep(nanoseconds: 100_000_000)
                streaming = server.getStreams.load(ordering: .relaxed)
            }
            // Nothing is read: once the socket is full the replies stop leaving, and the
            // connection counts as idle (4 s here).
            var left = streaming
            for _ in 0..<150 {
                if left == 0 { break }
                try await Task.sleep(nanoseconds: 100_000_000)
                left = server.getStreams.load(ordering: .relaxed)
            }
            return (streaming, left)
        }
        #expect(streaming > 0, "no GET stream was blocked on the unread socket")
        #expect(after == 0, "\(after) GET streams still ran 15 s after the peer stopped reading")
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func aDribblingSenderIsCutAndItsFileResumesOnAnotherConnection() async throws {
        let dir = TemporaryDirectory()
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: Self.short)
        let content = SplitMix64(seed: 5).bytesArray(ProtocolLimits.chunkSize + 1000)
        let ref = FileRef(.pack, SHA256.hash(content))
        let dribbled = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer -> Double in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            try await peer.send(.offer(ref, size: Int64(content.count), requestID: 1))
            _ = try await peer.next()
            var first = ByteBuffer()
            first.writeInteger(UInt64(0))
            first.writeBytes(content[0..<ProtocolLimits.chunkSize])
            try await peer.send(Frame(.data, requestID: 1, payload: first))
            // The second frame's header, then one byte every 50 ms.
            var header = ByteBuffer()
            header.writeInteger(UInt32(5 + 8 + 1000))
            header.writeInteger(FrameType.data.rawValue)
            header.writeInteger(UInt32(1))
            header.writeInteger(UInt64(ProtocolLimits.chunkSize))
            let since = Date()
            // Once the receiver cuts the connection, a send or the read of its answer may fail:
            // what counts is how soon the cut came.
            do {
                try await peer.send(header)
                for byte in content[ProtocolLimits.chunkSize..<(ProtocolLimits.chunkSize + 200)] {
                    var one = ByteBuffer()
                    one.writeInteger(byte)
                    try await peer.send(one)
                    try await Task.sleep(nanoseconds: 50_000_000)
                    if Date().timeIntervalSince(since) > 8 { break }
                }
            } catch {}
            _ = try? await peer.next()
            return Date().timeIntervalSince(since)
        }
        #expect(dribbled < 6, "a sender at 20 bytes/s was not cut within 6 s (\(dribbled) s)")
        // Its name is free again, and the whole first frame stayed: the transfer resumes there.
        let replica = try receiver.server.store.repository(id: Self.repositoryID, create: false)
        let appendedBefore = replica.appendedBytes.load(ordering: .relaxed)
        let resumed = try await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
            _ = try await peer.hello(repositoryID: Self.repositoryID)
            return try await HostilePeerTests.push(&peer, ref, content, requestID: 1)
        }
        #expect(resumed == "durable")
        #expect(replica.appendedBytes.load(ordering: .relaxed) - appendedBefore == Int64(content.count - ProtocolLimits.chunkSize))
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func connectionsOverTheCapsAreRefusedAndLogged() async throws {
        let dir = TemporaryDirectory()
        let logs = LogCapture()
        var limits = ReceiverLimits()
        limits.maxConnections = 5
        limits.maxConnectionsPerAddress = 3
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: limits, logs: logs)
        // Four from one address: one of them is over the cap of three.
        let fromOne = try (0..<4).map { _ in try BareSocket(port: receiver.port, from: "127.0.0.2") }
        // (Waited for up to 5 s: under the whole suite, accepts can lag.)
        var refusedFromOne = 0
        for _ in 0..<50 {
            try await Task.sleep(nanoseconds: 100_000_000)
            refusedFromOne = fromOne.filter { $0.closedByPeer(within: 0.001) }.count
            if refusedFromOne > 0 { break }
        }
        #expect(refusedFromOne == 1 && fromOne.filter { $0.closedByPeer(within: 0.3) }.count == 1)
        // Two more from another address reach the cap of five in all; a sixth is refused.
        let fromTwo = try (0..<2).map { _ in try BareSocket(port: receiver.port, from: "127.0.0.3") }
        for _ in 0..<50 { if receiver.server.openConnections >= 5 { break }; try await Task.sleep(nanoseconds: 100_000_000) }
        let sixth = try BareSocket(port: receiver.port, from: "127.0.0.4")
        // (A wait, not a deadline: it ends as soon as the refusal arrives; long for a loaded machine.)
        #expect(sixth.closedByPeer(within: 10))
        #expect(fromTwo.allSatisfy { !$0.closedByPeer(within: 0.2) })
        #expect(logs.all.contains { $0.contains("refused a connection") && $0.contains("127.0.0.2") })
        for s in fromOne + fromTwo + [sixth] { s.close() }
        // Once they are gone, a sender gets in.
        var welcome: UInt8?
        for _ in 0..<50 where welcome != FrameType.welcome.rawValue {
            welcome = try? await RawPeer.connect(port: receiver.port, identity: TestSites.shared.primary) { peer in
                try await peer.hello(repositoryID: Self.repositoryID)?.type
            }
            if welcome != FrameType.welcome.rawValue { try await Task.sleep(nanoseconds: 100_000_000) }
        }
        #expect(welcome == FrameType.welcome.rawValue)
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func aSenderWithinTheLimitsReplicatesUntouched() async throws {
        // A short window, and a sender slowed by --limit-rate to eight times the minimum rate
        // (the margin, and a window of 5 s, are for a machine loaded by the rest of the suite).
        let dir = TemporaryDirectory()
        let siteA = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: siteA)
        var limits = ReceiverLimits()
        limits.progressWindow = .seconds(5)
        limits.minTransferRate = 32 << 10
        limits.idleTimeout = .seconds(6)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b", limits: limits)
        let summary = try await ReplicationFixtures.replicate(siteA.path + "/repo", port: receiver.port) {
            $0.limitRate = Double(8 * limits.minTransferRate)
            $0.retries = 0
        }
        #expect(summary.reconnects == 0)
        #expect(try ReplicationFixtures.files(dir.path + "/site-b/" + repo.config.id) == ReplicationFixtures.files(siteA.path + "/repo"))
        await receiver.stop()
    }
}
