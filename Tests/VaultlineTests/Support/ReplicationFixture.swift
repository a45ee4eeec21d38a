import Foundation
import Logging
@testable import VaultlineCore
@testable import VaultlineReplication

/// A site CA with one certificate per role, and a foreign CA's primary certificate.
struct TestSites: Sendable {
    let ca: SiteCertificates.Issued
    /// The replica's certificate and key as PEM, for a receiver run as a subprocess.
    let replicaPEM: SiteCertificates.Issued
    let primary: SiteIdentity
    let replica: SiteIdentity
    let monitor: SiteIdentity
    let foreignPrimary: SiteIdentity

    static let shared: TestSites = {
        do { return try TestSites() } catch { fatalError("cannot make test certificates: \(error)") }
    }()

    init() throws {
        ca = try SiteCertificates.makeCA(name: "test site CA")
        func issue(_ role: SiteRole, ca: SiteCertificates.Issued) throws -> SiteCertificates.Issued {
            try SiteCertificates.issue(caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.privateKeyPEM, name: "site-\(role)", role: role, hosts: ["127.0.0.1"])
        }
        func identity(_ role: SiteRole, ca: SiteCertificates.Issued) throws -> SiteIdentity {
            let c = try issue(role, ca: ca)
            return try SiteIdentity(certificatePEM: c.certificatePEM, keyPEM: c.privateKeyPEM, caPEM: ca.certificatePEM)
        }
        primary = try identity(.primary, ca: ca)
        replicaPEM = try issue(.replica, ca: ca)
        replica = try SiteIdentity(certificatePEM: replicaPEM.certificatePEM, keyPEM: replicaPEM.privateKeyPEM, caPEM: ca.certificatePEM)
        monitor = try identity(.monitor, ca: ca)
        let other = try SiteCertificates.makeCA(name: "another CA")
        foreignPrimary = try identity(.primary, ca: other)
    }
}

extension ReceiverLimits {
    /// The default limits with the handshake and progress timeouts of a test that runs beside
    /// the whole suite: there the test's own side can wait tens of seconds for a thread of the
    /// two-thread cooperative pool (a hostile-peer test's connection was closed by the 10 s
    /// handshake timeout so, 2026-12-02). The tests of the timeouts set their own.
    static var besideTheSuite: ReceiverLimits {
        var limits = ReceiverLimits()
        limits.handshakeTimeout = .seconds(300)
        limits.progressWindow = .seconds(300)
        return limits
    }
}

/// A receiver on a loopback port, stopped by ``stop()``.
final class RunningReceiver: @unchecked Sendable {
    let server: ReplicaServer
    let task: Task<Void, any Error>
    let port: Int
    let root: String

    /// `logs`: every record the receiver logs goes there (at debug level) instead of nowhere.
    init(root: String, identity: SiteIdentity = TestSites.shared.replica, serving repository: String? = nil,
         limits: ReceiverLimits = .besideTheSuite, logs: LogCapture? = nil,
         receivedFileFault: (@Sendable (String) -> Void)? = nil) async throws {
        var logger = logs.map { capture in Logger(label: "test.receiver") { capture.handler(label: $0) } } ?? Logger(label: "test.receiver")
        logger.logLevel = logs != nil || ProcessInfo.processInfo.environment["VAULTLINE_TEST_LOG"] != nil ? .debug : .critical
        self.root = root
        var configuration = ReplicaServer.Configuration(host: "127.0.0.1", port: 0, identity: identity, root: root, serverName: "test-site-b",
                                                        servedRepository: repository)
        configuration.receivedFileFault = receivedFileFault
        configuration.limits = limits
        server = try ReplicaServer(configuration: configuration, logger: logger)
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        let server = self.server
        task = Task { try await server.run { continuation.yield($0); continuation.finish() } }
        var it = stream.makeAsyncIterator()
        guard let port = await it.next() else { throw ReplicationError(.connection, "receiver did not start") }
        self.port = port
    }

    func stop() async {
        server.shutdown()
        _ = try? await task.value
    }
}

enum ReplicationFixtures {
    /// `vaultline replica serve` as a subprocess on `127.0.0.1:port`, with the shared test
    /// CA and replica certificate written to `certificates`; returns once it listens.
    static func receiverProcess(port: Int, root: String, certificates dir: String, arguments extra: [String] = []) async throws -> Process {
        let sites = TestSites.shared
        try Fixtures.writeFile(dir + "/ca.pem", Array(sites.ca.certificatePEM.utf8))
        try Fixtures.writeFile(dir + "/b.pem", Array(sites.replicaPEM.certificatePEM.utf8))
        try Fixtures.writeFile(dir + "/b-key.pem", Array(sites.replicaPEM.privateKeyPEM.utf8), mode: 0o600)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        p.arguments = ["replica", "serve", "--listen", "127.0.0.1:\(port)", "--root", root, "--cert", dir + "/b.pem",
                       "--key", dir + "/b-key.pem", "--ca", dir + "/ca.pem", "--log-level", "critical"] + extra
        try p.run()
        for _ in 0..<500 { if isListening(port) { break }; try await Task.sleep(nanoseconds: 10_000_000) }
        return p
    }

    static func options(port: Int, identity: SiteIdentity = TestSites.shared.primary) -> ReplicationSender.Options {
        var o = ReplicationSender.Options(host: "127.0.0.1", port: port, identity: identity)
        o.retries = 3
        o.clientName = "test-site-a"
        return o
    }

    static func replicate(_ repoPath: String, port: Int, configure: (inout ReplicationSender.Options) -> Void = { _ in }) async throws -> ReplicationSender.Summary {
        var o = options(port: port)
        configure(&o)
        var logger = Logger(label: "test.sender")
        logger.logLevel = ProcessInfo.processInfo.environment["VAULTLINE_TEST_LOG"] != nil ? .debug : .critical
        return try await ReplicationSender(repositoryPath: repoPath, options: o, logger: logger).run()
    }

    /// Every replicated file of a repository folder: relative path → SHA-256 (locks and
    /// the receiver's `incoming/` excluded).
    static func files(_ root: String) throws -> [String: Bytes32] {
        var out: [String: Bytes32] = [:]
        let backend = LocalBackend(root: root)
        for kind in FileKind.allCases where kind != .lock {
            for name in try backend.list(kind) {
                out[kind == .config ? "config" : "\(kind.rawValue)/\(name)"] = SHA256.hash(try backend.read(kind, name))
            }
        }
        return out
    }

    /// Bytes in regular files anywhere under `root` (partial files included; 0 when absent):
    /// how far a transfer has got.
    static func bytes(under root: String) throws -> Int {
        guard let walk = FileManager.default.enumerator(atPath: root) else { return 0 }
        var total = 0
        while let relative = walk.nextObject() as? String {
            var st = stat()
            if lstat(root + "/" + relative, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { total += Int(st.st_size) }
        }
        return total
    }

    /// A site-A repository with a backed-up tree.
    static func siteA(in dir: TemporaryDirectory, seed: UInt64 = 1, scale: Int = 1) throws -> Repository {
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: seed, scale: scale)
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        return repo
    }
}
