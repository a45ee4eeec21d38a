import Foundation
import Synchronization
import Testing
@testable import VaultlineCore
@testable import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

@Suite("Replication") struct ReplicationTests {
    @Test(.timeLimit(.minutes(2)))
    func replicaHoldsTheSameFilesAndRestores() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let summary = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        let siteA = try ReplicationFixtures.files(dir.path + "/repo")
        let replicaPath = dir.path + "/site-b/" + repo.config.id
        #expect(try ReplicationFixtures.files(replicaPath) == siteA)
        #expect(summary.filesSent == siteA.count)

        // Nothing to do the second time; a new backup sends only its new files.
        let again = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        #expect(again.filesSent == 0 && again.bytesSent == 0)
        var rng = SplitMix64(seed: 99)
        try Fixtures.writeFile(dir.path + "/src/new.bin", rng.bytes(300_000))
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        let incremental = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        let added = try ReplicationFixtures.files(dir.path + "/repo").count - siteA.count
        #expect(incremental.filesSent == added)
        await receiver.stop()

        // Disaster recovery: site B's copy opens with the password, checks, and restores.
        let replica = try Repository.open(path: replicaPath, password: Fixtures.password)
        #expect(try Checker(repository: replica).run(readData: true).ok)
        let latest = try replica.resolveSnapshot("latest")
        try Restorer(repository: replica).restore(snapshotID: latest, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    @Test(.timeLimit(.minutes(5)))
    func peersFromAnotherCAAreRefusedBeforeAnyFrame() async throws {
        let dir = TemporaryDirectory()
        _ = try ReplicationFixtures.siteA(in: dir)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        defer { Task { await receiver.stop() } }
        await expectError(ReplicationError.self, .certificate) {
            try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) {
                $0.identity = TestSites.shared.foreignPrimary
                $0.retries = 0
            }
        }
        #expect(try FileSystem.list(dir.path + "/site-b").isEmpty)
    }

    @Test(.timeLimit(.minutes(5)))
    func rolesLimitWhatAPeerMayDo() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        // A monitor may not create a replica, nor push into one.
        await expectError(ReplicationError.self, .notFound) { try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) { $0.identity = TestSites.shared.monitor; $0.retries = 0 } }
        _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        await expectError(ReplicationError.self, .forbidden) { try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) { $0.identity = TestSites.shared.monitor; $0.retries = 0 } }
        // A replica-role peer may read a file back, verified by its hash.
        let pack = try #require(try repo.backend.list(.pack).first)
        let bytes = try await ReplicaReader.fetch(
            FileRef(.pack, try #require(Bytes32(hex: pack))), repositoryID: repo.config.id,
            host: "127.0.0.1", port: receiver.port, identity: TestSites.shared.replica)
        #expect(bytes == (try repo.backend.read(.pack, pack)))
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(3)))
    func cutConnectionsConvergeAndResumeWithoutResendingWholeFiles() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 5, scale: 6)
        let siteA = try ReplicationFixtures.files(dir.path + "/repo")
        let inventory = try LocalInventory(repositoryPath: dir.path + "/repo")
        var total: Int64 = 0
        for (kind, names) in inventory.names { for n in names { total += try inventory.size(FileRef(kind, n)) } }
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let trials = Int(ProcessInfo.processInfo.environment["VAULTLINE_CUT_TRIALS"] ?? "") ?? 50
        let seed = UInt64(time(nil))
        // Cuts average half a trial's share of the data: more than `trials` connections are needed.
        let span = UInt64(max(1, total / Int64(trials)))
        // Connection i < trials is cut after a random number of client-to-server bytes.
        let proxy = try FaultProxy(upstreamPort: receiver.port) { i in
            var rng = SplitMix64(seed: seed &+ UInt64(i))
            return i < trials ? .init(cutAfter: 200 + Int(rng.next() % span)) : .init()
        }
        var passes = 0
        while true {
            passes += 1
            do {
                _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: proxy.port) { $0.retries = 1_000; $0.transfers = 1 }
                break
            } catch {
                #expect(passes < 5, "replication failed: \(error)")
                if passes >= 5 { break }
            }
        }
        #expect(proxy.connectionCount > trials)
        let replicaPath = dir.path + "/site-b/" + repo.config.id
        #expect(try ReplicationFixtures.files(replicaPath) == siteA)
        // Resume: the receiver appended every byte exactly once, whatever the cuts.
        let replica = try receiver.server.store.repository(id: repo.config.id, create: false)
        #expect(replica.appendedBytes.load(ordering: .relaxed) == total)
        #expect(try FileSystem.list(replicaPath + "/incoming").isEmpty)
        proxy.stop()
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func bytesAlteredOnTheReceiversDiskAreCaughtAndSentAgain() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 8)
        // The first pack received is altered on disk after it is written and fsync'd, before it
        // is hashed back, as a faulty disk (or a bug below us) would.
        let altered = Atomic<Int>(0)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b") { path in
            guard path.contains("/incoming/packs-"), altered.compareExchange(expected: 0, desired: 1, ordering: .relaxed).exchanged else { return }
            let fd = open(path, O_RDWR)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var byte: UInt8 = 0
            _ = pread(fd, &byte, 1, 0)
            byte ^= 0xff
            _ = pwrite(fd, &byte, 1, 0)
        }
        let summary = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) { $0.transfers = 1 }
        #expect(altered.load(ordering: .relaxed) == 1)
        #expect(summary.hashMismatchesResent == 1)
        #expect(try ReplicationFixtures.files(dir.path + "/site-b/" + repo.config.id) == ReplicationFixtures.files(dir.path + "/repo"))
        await receiver.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func receiverKilledMidTransferAndRestartedConverges() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 9, scale: 4)
        let port = try freeLoopbackPort()
        let root = dir.path + "/site-b"
        func startReceiver() async throws -> Process {
            try await ReplicationFixtures.receiverProcess(port: port, root: root, certificates: dir.path)
        }
        var receiver = try await startReceiver()
        let proxy = try FaultProxy(upstreamPort: port) { _ in .init(bytesPerSecond: 3_000_000) }
        let replication = Task { try await ReplicationFixtures.replicate(dir.path + "/repo", port: proxy.port) { $0.retries = 100 } }

        // Kill it while a pack is being received.
        let incoming = root + "/" + repo.config.id + "/incoming"
        let deadline = Date().addingTimeInterval(60)
        var receiving = false
        while !receiving && Date() < deadline {
            var st = stat()
            receiving = ((try? FileSystem.list(incoming)) ?? []).contains { $0.hasPrefix("packs-") && stat(incoming + "/" + $0, &st) == 0 && st.st_size > 0 }
            // Sleep without holding a thread of the task pool: the replication runs on it.
            if !receiving { try await Task.sleep(nanoseconds: 2_000_000) }
        }
        kill(receiver.processIdentifier, SIGKILL)
        receiver.waitUntilExit()
        #expect(receiving, "no pack was being received within a minute")
        // Nothing partial is visible under a final name: every committed file is site A's.
        let siteA = try ReplicationFixtures.files(dir.path + "/repo")
        let committed = try ReplicationFixtures.files(root + "/" + repo.config.id)
        #expect(committed.count < siteA.count)
        for (path, hash) in committed { #expect(siteA[path] == hash, "\(path)") }

        receiver = try await startReceiver()
        let summary = try await replication.value
        #expect(summary.reconnects >= 1)
        #expect(try ReplicationFixtures.files(root + "/" + repo.config.id) == siteA)
        // SIGTERM: a graceful stop.
        receiver.terminate()
        receiver.waitUntilExit()
        #expect(receiver.terminationStatus == 0)
        proxy.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func theCommandLineSetsUpBothSitesAndReportsStatus() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 3)
        let c = dir.path + "/ca"
        let cli = Fixtures.cli
        #expect(try cli(["site", "init", "--out", c]).status == 0)
        #expect(try cli(["site", "issue-cert", "--ca", c + "/ca.pem", "--ca-key", c + "/ca-key.pem", "--name", "a", "--role", "primary", "--out", c]).status == 0)
        #expect(try cli(["site", "issue-cert", "--ca", c + "/ca.pem", "--ca-key", c + "/ca-key.pem", "--name", "b", "--role", "replica", "--host", "127.0.0.1", "--out", c]).status == 0)
        #expect(try cli(["site", "issue-cert", "--ca", c + "/ca.pem", "--ca-key", c + "/ca-key.pem", "--name", "x", "--role", "admin", "--out", c]).status == 64)
        // Keys are never overwritten.
        #expect(try cli(["site", "init", "--out", c]).status != 0)

        let port = try freeLoopbackPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        server.arguments = ["replica", "serve", "--listen", "127.0.0.1:\(port)", "--root", dir.path + "/site-b",
                            "--cert", c + "/b.pem", "--key", c + "/b-key.pem", "--ca", c + "/ca.pem", "--log-level", "critical"]
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        // A deadline, not a measure: beside the release suite the receiver once took over the 5 s
        // this allowed to listen, and `replica status` found nobody (2026-12-03).
        let listening = Date().addingTimeInterval(60)
        while Date() < listening, !isListening(port) { try await Task.sleep(nanoseconds: 10_000_000) }
        let site = ["--cert", c + "/a.pem", "--key", c + "/a-key.pem", "--ca", c + "/ca.pem", "--to", "127.0.0.1:\(port)", "--repo", dir.path + "/repo", "--json"]

        let before = try cli(["replica", "status"] + site)
        #expect(before.status == 0)
        #expect(before.out.contains("\"upToDate\" : false"))
        let pushed = try cli(["replicate"] + site)
        #expect(pushed.status == 0)
        let summary = try JSONDecoder().decode(ReplicationSender.Summary.self, from: Data(pushed.out.utf8))
        #expect(summary.filesSent == (try ReplicationFixtures.files(dir.path + "/repo")).count)
        let after = try cli(["replica", "status"] + site + ["--exact"])
        #expect(after.out.contains("\"upToDate\" : true"))
        #expect(after.out.contains("newestSnapshotAtReplica"))
        // The replica restores with the password, through the CLI.
        let restored = try cli(["restore", "latest", "--repo", dir.path + "/site-b/" + repo.config.id, "--target", dir.path + "/out"])
        #expect(restored.status == 0)
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    @Test(.timeLimit(.minutes(5)))
    func limitRateKeepsTheSenderUnderItsRate() async throws {
        let dir = TemporaryDirectory()
        let repo = try ReplicationFixtures.siteA(in: dir, seed: 6, scale: 3)
        let receiver = try await RunningReceiver(root: dir.path + "/site-b")
        let rate = 1_000_000.0
        let summary = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) { $0.limitRate = rate }
        // One second of burst, then the rate: the pass cannot be faster than that.
        #expect(Double(summary.bytesSent) <= rate * (summary.seconds + 1) * 1.02, "\(summary.bytesSent) bytes in \(summary.seconds) s")
        #expect(summary.bytesSent > Int64(rate) * 2, "too little data to test the limit")
        #expect(try ReplicationFixtures.files(dir.path + "/site-b/" + repo.config.id) == ReplicationFixtures.files(dir.path + "/repo"))
        await receiver.stop()
    }

    @Test(.enabled(if: geteuid() == 0), .timeLimit(.minutes(2)))
    func aFullDiskAtSiteBIsReportedAndReplicationResumesWhenSpaceReturns() async throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try FileSystem.makeDirectories(dir.path + "/src")
        var rng = SplitMix64(seed: 21)
        try Fixtures.writeFile(dir.path + "/src/random.bin", rng.bytes(8_000_000))
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        let mnt = dir.path + "/site-b"
        try FileSystem.makeDirectories(mnt)
        guard FaultTests.shell("mount -t tmpfs -o size=3m vaultline-test \(mnt)") == 0 else { return }
        defer { _ = FaultTests.shell("umount -l \(mnt)") }
        let receiver = try await RunningReceiver(root: mnt)
        await expectError(ReplicationError.self, .noSpace) { try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port) { $0.retries = 1 } }
        // Nothing half-committed: every file under its final name hashes to that name.
        let replicaPath = mnt + "/" + repo.config.id
        let siteA = try ReplicationFixtures.files(dir.path + "/repo")
        for (path, hash) in try ReplicationFixtures.files(replicaPath) { #expect(siteA[path] == hash, "\(path)") }
        #expect(try LocalBackend(root: replicaPath).list(.snapshot).isEmpty)
        #expect(FaultTests.shell("mount -o remount,size=64m \(mnt)") == 0)
        _ = try await ReplicationFixtures.replicate(dir.path + "/repo", port: receiver.port)
        #expect(try ReplicationFixtures.files(replicaPath) == siteA)
        await receiver.stop()
    }
}
