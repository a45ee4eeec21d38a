import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

/// Replication between two network stacks: site B's receiver runs in a network namespace the
/// test creates, behind a veth link limited to 40 Mbit/s. During one pass the link goes down for
/// two seconds, site B's receiver is killed with `kill -9` while it is down and restarted a
/// second after it comes back: the same pass must reconnect and finish, a second pass must find nothing to send, and site B must
/// hold exactly site A's files, pass `check --read-data` and restore byte for byte. Runs where
/// the kernel allows it (root, `ip`, `tc`); elsewhere it is skipped, and the loopback tests cover
/// the same faults through the fault proxy.
@Suite("Replication between network namespaces", .enabled(if: NetnsLink.available))
struct NetnsReplicationTests {
    @Test(.timeLimit(.minutes(3)))
    func aSiteBehindACutAndKilledLinkConvergesAndRestores() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 41, scale: 24)  // ~17 MB of random data
        let link = try NetnsLink(rateMbit: 40)
        defer { link.close() }
        let c = dir.path + "/ca"
        let cli = Fixtures.cli
        #expect(try cli(["site", "init", "--out", c]).status == 0)
        #expect(try cli(["site", "issue-cert", "--ca", c + "/ca.pem", "--ca-key", c + "/ca-key.pem", "--name", "a", "--role", "primary", "--out", c]).status == 0)
        #expect(try cli(["site", "issue-cert", "--ca", c + "/ca.pem", "--ca-key", c + "/ca-key.pem", "--name", "b", "--role", "replica",
                         "--host", link.siteBAddress, "--out", c]).status == 0)
        let port = Int.random(in: 20_000..<40_000)
        let root = dir.path + "/site-b"
        func startReceiver() async throws -> Process {
            let p = link.process(FaultTests.cliPath, ["replica", "serve", "--listen", "\(link.siteBAddress):\(port)", "--root", root,
                                                      "--cert", c + "/b.pem", "--key", c + "/b-key.pem", "--ca", c + "/ca.pem", "--log-level", "critical"])
            try p.run()
            let listening = Date().addingTimeInterval(60)  // a deadline: the receiver starts late beside the suite
            while Date() < listening, !link.isListening(port) { try await Task.sleep(nanoseconds: 10_000_000) }
            #expect(link.isListening(port), "site B's receiver listens in its namespace")
            return p
        }
        var receiver = try await startReceiver()
        let site = ["--cert", c + "/a.pem", "--key", c + "/a-key.pem", "--ca", c + "/ca.pem",
                    "--to", "\(link.siteBAddress):\(port)", "--repo", dir.path + "/repo"]

        // The pass: once site B has received its first megabyte the link goes down; site B is
        // killed while the link is down (so the pass cannot finish in between), the link comes
        // back two seconds after the cut and site B a second after that. Events follow progress
        // at site B, not the clock, so a faster or slower machine plays the same script.
        let pass = Process()
        pass.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        pass.arguments = ["replicate"] + site
        pass.environment = ["VAULTLINE_PASSWORD": String(decoding: Fixtures.password, as: UTF8.self), "HOME": NSTemporaryDirectory()]
        pass.standardOutput = FileHandle.nullDevice
        pass.standardError = FileHandle.nullDevice
        let total = try ReplicationFixtures.bytes(under: dir.path + "/repo")
        try pass.run()
        var received = 0
        for _ in 0..<6000 where pass.isRunning {
            received = try ReplicationFixtures.bytes(under: root)
            if received >= 1 << 20 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        link.setLink(up: false)
        let cutMidPass = pass.isRunning
        #expect(cutMidPass, "the pass was still under way when the link went down (\(received) of \(total) bytes at site B)")
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let killedMidPass = pass.isRunning
        kill(receiver.processIdentifier, SIGKILL)
        receiver.waitUntilExit()
        #expect(killedMidPass, "the pass was still under way when site B was killed behind the cut link")
        try await Task.sleep(nanoseconds: 1_000_000_000)
        link.setLink(up: true)

        // Site B comes back a second later; the same pass reconnects and finishes.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        receiver = try await startReceiver()
        defer { receiver.terminate(); receiver.waitUntilExit() }
        pass.waitUntilExit()
        #expect(pass.terminationStatus == 0, "the pass rode out the outage and the restart")
        // A second pass has nothing to send.
        #expect(try cli(["replicate", "--json"] + site).out.contains("\"filesSent\" : 0"))
        let replica = root + "/" + repo.config.id
        #expect(try ReplicationFixtures.files(replica) == ReplicationFixtures.files(dir.path + "/repo"))
        let status2 = try cli(["replica", "status", "--exact", "--json"] + site)
        #expect(status2.out.contains("\"upToDate\" : true"))
        #expect(try cli(["check", "--read-data", "--repo", replica]).status == 0)
        #expect(try cli(["restore", "latest", "--repo", replica, "--target", dir.path + "/out"]).status == 0)
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }
}
