import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication

/// A receiver (`vaultline replica serve`, a subprocess) under a flood bounded in count and
/// time: silent TCP connections from 15 addresses kept at the per-address cap, senders that
/// dribble, and peers that send GETs and read nothing. A legitimate sender must still
/// replicate within 30 s, and the receiver's peak RSS stay under 512 MiB (measured: 174 MiB
/// with the suite alone, 418 MiB while the whole suite runs beside it; idle: 40 MiB).
///
/// It loads both cores for its 12 s, so it runs only with `VAULTLINE_FLOOD=1` (CI runs it on
/// its own after the suite: `VAULTLINE_FLOOD=1 swift test --skip-build --filter ReceiverFlood`).
@Suite("Receiver under a flood", .enabled(if: ProcessInfo.processInfo.environment["VAULTLINE_FLOOD"] != nil))
struct ReceiverFloodTests {
    static let floodSeconds = 12.0

    @Test(.timeLimit(.minutes(2)))
    func aLegitimateSenderReplicatesWhileTheReceiverIsFlooded() async throws {
        let dir = TemporaryDirectory()
        let siteA = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: siteA, seed: 11, scale: 2)
        let sites = TestSites.shared
        let port = try freeLoopbackPort()
        let receiver = try await ReplicationFixtures.receiverProcess(
            port: port, root: dir.path + "/site-b", certificates: dir.path,
            arguments: ["--handshake-timeout", "3", "--idle-timeout", "4", "--progress-window", "3", "--min-transfer-rate", "64K"])
        defer { if receiver.isRunning { kill(receiver.processIdentifier, SIGKILL); receiver.waitUntilExit() } }

        // A file the GET flooders ask for, pushed before the flood.
        let big = SplitMix64(seed: 12).bytesArray(2 << 20)
        let bigRef = FileRef(.pack, SHA256.hash(big))
        let floodRepository = String(repeating: "fe", count: 32)
        let pushed = try await RawPeer.connect(port: port, identity: sites.primary) { peer in
            _ = try await peer.hello(repositoryID: floodRepository)
            return try await HostilePeerTests.push(&peer, bigRef, big, requestID: 1)
        }
        #expect(pushed == "durable")

        let until = Date().addingTimeInterval(Self.floodSeconds)
        let started = Date()
        let (elapsed, summary) = try await withThrowingTaskGroup(of: (Double, ReplicationSender.Summary)?.self) { group in
            // Silent TCP: 15 addresses, each topped up to its cap of 16 every half second.
            group.addTask {
                var open: [String: [BareSocket]] = [:]
                while Date() < until {
                    for host in 10..<25 {
                        let address = "127.0.0.\(host)"
                        var sockets: [BareSocket] = []
                        for s in open[address, default: []] {
                            if s.closedByPeer(within: 0.001) { s.close() } else { sockets.append(s) }
                        }
                        while sockets.count < 16, let s = try? BareSocket(port: port, from: address) { sockets.append(s) }
                        open[address] = sockets
                    }
                    try await Task.sleep(nanoseconds: 500_000_000)
                }
                for s in open.values.joined() { s.close() }
                return nil
            }
            // Dribbling senders: one byte every 200 ms into a DATA frame.
            for i in 0..<8 {
                group.addTask {
                    while Date() < until {
                        _ = try? await RawPeer.connect(port: port, identity: sites.primary) { peer in
                            _ = try await peer.hello(repositoryID: floodRepository)
                            let ref = FileRef(.pack, Bytes32(a: UInt64(i), b: 1, c: 2, d: 3))
                            try await peer.send(.offer(ref, size: 1 << 20, requestID: 1))
                            _ = try await peer.next()
                            try await peer.send(type: FrameType.data.rawValue, requestID: 1, lengthOverride: 5 + 8 + 4096)
                            while Date() < until {
                                try await peer.send(ByteBuffer(bytes: [0]))
                                try await Task.sleep(nanoseconds: 200_000_000)
                            }
                        }
                    }
                    return nil
                }
            }
            // GET flooders: 128 GETs of the 2 MiB file, none of the replies read.
            for _ in 0..<4 {
                group.addTask {
                    while Date() < until {
                        _ = try? await RawPeer.connect(port: port, identity: sites.primary) { peer in
                            _ = try await peer.hello(repositoryID: floodRepository)
                            for id in 1...128 { try await peer.send(.get(bigRef, offset: 0, requestID: UInt32(id))) }
                            while Date() < until { try await Task.sleep(nanoseconds: 200_000_000) }
                        }
                    }
                    return nil
                }
            }
            // The legitimate sender, once the flood is under way.
            group.addTask {
                try await Task.sleep(nanoseconds: 2_000_000_000)
                let begin = Date()
                let summary = try await ReplicationFixtures.replicate(siteA.path + "/repo", port: port) { $0.retries = 20 }
                return (Date().timeIntervalSince(begin), summary)
            }
            var result: (Double, ReplicationSender.Summary)?
            for try await r in group { if let r { result = r } }
            return try #require(result)
        }
        #expect(elapsed < 30, "the legitimate replication took \(elapsed) s under the flood")
        #expect(try ReplicationFixtures.files(dir.path + "/site-b/" + repo.config.id) == ReplicationFixtures.files(siteA.path + "/repo"))
        let peak = Self.peakRSSMiB(of: receiver.processIdentifier)
        print("flood: legitimate replication \(String(format: "%.2f", elapsed)) s (\(summary.filesSent) files, \(summary.reconnects) reconnects), receiver peak RSS \(peak) MiB, flood \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        #expect(peak > 0 && peak < 512, "receiver peak RSS \(peak) MiB")
        receiver.terminate()
        receiver.waitUntilExit()
        #expect(receiver.terminationStatus == 0)
    }

    /// VmHWM of a process, in MiB (0 when it cannot be read).
    static func peakRSSMiB(of pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }
}
