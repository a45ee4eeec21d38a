import Foundation
import Synchronization
import Testing
@testable import VaultlineCore
@testable import VaultlineS3
#if canImport(Glibc)
import Glibc
#endif

/// The S3 backend when the server misbehaves: storms of `503 SlowDown` (ridden out, restic's
/// issue 4018), throttling past the retry budget (a clear error, nothing half-written), and a
/// server that ignores `If-None-Match` (refused at `init`). A fault proxy sits in between.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3FaultTests {
    static func location(through proxy: S3FaultProxy, _ label: String) throws -> S3Location {
        let direct = try S3TestServer.freshLocation(label)
        return try S3Location(parsing: "s3:http://127.0.0.1:\(proxy.port)/\(direct.bucket)/repo")
    }

    @Test(.timeLimit(.minutes(2)))
    func aStormOfSlowDownIsRiddenOutAndTheBackupIsWhole() async throws {
        let upstream = try S3TestServer.endpoint.url
        // Two requests in three refused, over the first 120: a prefix being partitioned.
        let proxy = try await S3FaultProxy.start(upstream: upstream) { number, _ in
            number % 3 != 2 && number < 120 ? .refuse(status: 503, code: "SlowDown") : nil
        }
        let location = try Self.location(through: proxy, "storm")
        var options = S3TestServer.quickOptions
        options.retryFor = 60
        let client = try S3TestServer.client(location, options: options)
        let outcome = try await onOwnThread {
            // Packs streamed from spool files: each refused PUT is streamed again.
            let backend = S3Backend(client: client, spoolFolder: NSTemporaryDirectory())
            try backend.prepareForInitialize()
            let repo = try Repository.initialize(backend: backend, name: "storm", password: Fixtures.password, options: Fixtures.options)
            let dir = TemporaryDirectory()
            try Fixtures.makeTree(at: dir.path + "/src", seed: 5)
            let snapshot = try Fixtures.backup(repo, [dir.path + "/src"]).snapshotID
            try Restorer(repository: repo).restore(snapshotID: snapshot, path: "/", target: dir.path + "/out")
            try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
            return try Checker(repository: repo).run(readData: true).ok
        }
        #expect(outcome)
        #expect(proxy.injected >= 60, "the run made \(proxy.requests) requests")
        #expect(client.stats.throttled == proxy.injected)
        #expect(client.limiter.snapshot.throttled == proxy.injected)
        await proxy.stop()
    }

    @Test(.timeLimit(.minutes(5)))
    func throttlingPastTheRetryBudgetFailsWithTheServersWord() async throws {
        let proxy = try await S3FaultProxy.start(upstream: try S3TestServer.endpoint.url) { _, request in
            request.method == "PUT" && request.path.contains("/keys/") ? .refuse(status: 503, code: "SlowDown") : nil
        }
        let location = try Self.location(through: proxy, "budget")
        var options = S3TestServer.quickOptions
        options.retryFor = 2
        let client = try S3TestServer.client(location, options: options)
        let backend = S3Backend(client: client)
        let failure = try await onOwnThread { () -> VaultlineError? in
            try backend.prepareForInitialize()
            do {
                _ = try Repository.initialize(backend: backend, name: "budget", password: Fixtures.password, options: Fixtures.options)
                return nil
            } catch let error as VaultlineError {
                return error
            }
        }
        let error = try #require(failure)
        #expect(error.code == .io)
        let cause = try #require(error.cause as? S3Error)
        #expect(cause.code == .throttled)
        #expect(cause.s3Code == "SlowDown")
        #expect(client.stats.retries >= 2)
        // No config was written: the location is still not a repository.
        #expect(try await onOwnThread { try backend.stat(.config, "config") } == nil)
        await proxy.stop()
    }

    @Test(.timeLimit(.minutes(5)))
    func initRefusesAServerThatReplacesAName() async throws {
        let probes = Mutex<[String: Int]>([:])
        let proxy = try await S3FaultProxy.start(upstream: try S3TestServer.endpoint.url) { _, request in
            guard request.method == "PUT", request.path.contains("/locks/probe-"), request.ifNoneMatch else { return nil }
            // The second conditional PUT of the probe "succeeds": what a server that ignores
            // If-None-Match answers.
            let count = probes.withLock { seen in defer { seen[request.path, default: 0] += 1 }; return seen[request.path, default: 0] }
            return count >= 1 ? .pretendStored : nil
        }
        let backend = S3Backend(client: try S3TestServer.client(try Self.location(through: proxy, "probe")))
        let failure = try await onOwnThread { () -> VaultlineError? in
            do { try backend.prepareForInitialize(); return nil } catch let error as VaultlineError { return error }
        }
        let error = try #require(failure)
        #expect(error.code == .unsupported)
        #expect((error.cause as? S3Error)?.code == .unsupportedServer)
        // The probe's object is removed again, so the location is still empty.
        #expect(try await onOwnThread { try backend.list(.lock) }.isEmpty)
        await proxy.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func aMultipartUploadKilledPartWayResumesFromItsParts() async throws {
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 99)
        let bytes = (0..<(40 << 20) + 1234).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try Fixtures.writeFile(dir.path + "/big", bytes)
        let name = VaultlineCore.SHA256.hash(bytes).hex
        // A slow link: every part takes a quarter of a second to go through.
        let proxy = try await S3FaultProxy.start(upstream: try S3TestServer.endpoint.url) { _, request in
            request.query.contains("partNumber") ? .delay(0.25) : nil
        }
        let slow = try Self.location(through: proxy, "resume")
        let direct = try S3Location(parsing: "s3:\(try S3TestServer.endpoint.url)/\(slow.bucket)/repo")
        let watcher = S3Backend(client: try S3TestServer.client(direct))
        let objectKey = watcher.key(.pack, name)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        process.arguments = ["debug", "s3-upload", "--repo", "\(slow)", "--transfers", "1", dir.path + "/big"]
        var environment = try S3TestServer.environment
        environment["VAULTLINE_S3_PART_MIB"] = "5"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var partsThere = 0
        for _ in 0..<400 where process.isRunning {
            partsThere = try await onOwnThread { (try? watcher.unfinishedUpload(of: objectKey))??.parts.count ?? 0 }
            if partsThere >= 3 { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        await proxy.stop()
        #expect(process.terminationReason == .uncaughtSignal, "killed part way")
        #expect(partsThere >= 3)
        #expect(try await onOwnThread { try watcher.stat(.pack, name) } == nil, "no object yet")
        // Run again, straight to the server: the parts that are there are kept.
        let again = try await onOwnThread {
            try S3CLITests.vaultline(["debug", "s3-upload", "--repo", "\(direct)", dir.path + "/big"], environment: ["VAULTLINE_S3_PART_MIB": "5"])
        }
        #expect(again.status == 0, "\(again.errors)")
        let resumed = again.output.components(separatedBy: "requests (").last.flatMap { $0.split(separator: ",").last }
            .flatMap { Int($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") }
        #expect((resumed ?? 0) >= partsThere, "\(again.output)")
        #expect(try await onOwnThread { try watcher.read(.pack, name) } == bytes)
        #expect(try await onOwnThread { try watcher.unfinishedUpload(of: objectKey)?.id } == nil, "the upload was completed")
    }
}
