import Foundation
import GraphSimulator
import VaultlineCore
import VaultlineGraph
import VaultlineReplication
import VaultlineService
#if canImport(Glibc)
import Glibc
#endif

/// The harness behind `vaultline debug rpo`: a simulated tenant in this process, `m365 serve`
/// and site B's receiver as subprocesses, a stream of changes, faults, and the measurement.
final class RPOBench {
    let settings: Debug.RPO
    let base: String
    let sim: GraphSimulator
    let password: [UInt8]
    let repositoryID: String
    let httpPort: Int
    let receiverPort: Int
    var service: Process?
    var receiver: Process?
    var changes: [(time: Date, change: Tenant.Change)] = []
    var faultsApplied: [String] = []
    /// When site B was cut off (from its kill to the first snapshot at B after its restart).
    var cutStarted: Date?
    var cutEnded: Date?
    var lastCaptures: Captures?
    var openRepository: Repository?

    init(_ settings: Debug.RPO, base: String) async throws {
        self.settings = settings
        self.base = base
        password = Array(encodeHex(try SecureRandom.bytes(16)).utf8)
        try writeFile(base + "/password", password, mode: 0o600)
        let secret = encodeHex(try SecureRandom.bytes(16))
        try writeFile(base + "/graph-secret", Array(secret.utf8), mode: 0o600)
        var spec = TenantSpec.demo
        spec.users = settings.users
        spec.messagesPerUser = settings.messages
        spec.filesPerUser = settings.files
        spec.largeFileSize = 0
        sim = GraphSimulator(tenant: Tenant(spec: spec), clientSecret: secret)
        _ = try await sim.start()
        repositoryID = try Repository.initialize(path: base + "/site-a", password: password).config.id
        let ca = try SiteCertificates.makeCA(name: "vaultline rpo bench CA")
        try writeFile(base + "/ca.pem", Array(ca.certificatePEM.utf8))
        for (role, name) in [(SiteRole.primary, "site-a"), (.replica, "site-b")] {
            let c = try SiteCertificates.issue(caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.privateKeyPEM, name: name, role: role, hosts: ["127.0.0.1"])
            try writeFile(base + "/\(name).pem", Array(c.certificatePEM.utf8))
            try writeFile(base + "/\(name)-key.pem", Array(c.privateKeyPEM.utf8), mode: 0o600)
        }
        httpPort = try freeLoopbackPort()
        receiverPort = try freeLoopbackPort()
    }

    // MARK: The processes

    func startReceiver() throws {
        receiver = try spawn(["replica", "serve", "--listen", "127.0.0.1:\(receiverPort)", "--root", base + "/site-b",
                              "--cert", base + "/site-b.pem", "--key", base + "/site-b-key.pem", "--ca", base + "/ca.pem",
                              "--log-level", "critical"], log: "receiver.log")
    }

    func startService() throws {
        let s = settings
        service = try spawn(["m365", "serve", "--repo", base + "/site-a", "--graph-url", sim.graphURL, "--authority", sim.authorityURL,
                             "--listen", "127.0.0.1:\(httpPort)", "--replicate-to", "127.0.0.1:\(receiverPort)",
                             "--cert", base + "/site-a.pem", "--key", base + "/site-a-key.pem", "--ca", base + "/ca.pem",
                             "--rpo", "\(s.rpo)", "--commit-interval", "\(s.commitInterval)", "--mail-interval", "\(s.mailInterval)",
                             "--drive-interval", "\(s.driveInterval)", "--debounce", "\(s.debounce)", "--log-level", "warning"],
                            log: "serve.log",
                            environment: ["VAULTLINE_PASSWORD_FILE": base + "/password", "VAULTLINE_GRAPH_TENANT": sim.tenantId,
                                          "VAULTLINE_GRAPH_CLIENT_ID": sim.clientId, "VAULTLINE_GRAPH_SECRET_FILE": base + "/graph-secret"])
    }

    private func spawn(_ arguments: [String], log: String, environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if !FileManager.default.fileExists(atPath: base + "/" + log) { _ = FileManager.default.createFile(atPath: base + "/" + log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: base + "/" + log))
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        return p
    }

    static func kill9(_ p: Process?) {
        guard let p, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    func stop() async {
        if let service, service.isRunning {
            service.terminate()
            service.waitUntilExit()
        }
        if let receiver, receiver.isRunning {
            receiver.terminate()
            receiver.waitUntilExit()
        }
        await sim.stop()
    }

    // MARK: The run

    func run() async throws -> Report {
        try startReceiver()
        try startService()
        // The first snapshot (the whole tenant) is not part of the measurement.
        let started = Date()
        while true {
            if let status = try? await ServiceStatus.fetch(from: "http://127.0.0.1:\(httpPort)", timeout: 2), status.siteA.lastSnapshotID != nil { break }
            guard Date().timeIntervalSince(started) < 600, service?.isRunning == true else {
                throw VaultlineError(.io, "the service did not store its first snapshot (see \(base)/serve.log)")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        try await churn()
        // Every change at both sites, or the deadline.
        let deadline = Date().addingTimeInterval(max(3 * settings.rpo, 120))
        var captures = try Captures.read(self)
        while Date() < deadline, captures.missing(changes) > 0 {
            try await Task.sleep(for: .seconds(1))
            captures = try Captures.read(self)
        }
        let status = try? await ServiceStatus.fetch(from: "http://127.0.0.1:\(httpPort)", timeout: 5)
        let cut = cutStarted.map { ($0, cutEnded ?? Date()) }
        return Report(settings: settings, changes: changes, captures: captures, faults: faultsApplied, status: status, cut: cut)
    }

    /// Changes at `rate` a second (exponential gaps) for `seconds`, with the faults on schedule.
    private func churn() async throws {
        var rng = SplitMix64(seed: UInt64(getpid()))
        let start = Date()
        var pending = settings.faults ? [0.2, 0.3, 0.4, 0.5, 0.7, 0.8] : []
        while true {
            let elapsed = Date().timeIntervalSince(start)
            guard elapsed < settings.seconds else { break }
            while let next = pending.first, elapsed >= next * settings.seconds {
                pending.removeFirst()
                try await fault(at: next)
            }
            let uniform = Double(rng.next() >> 11) / Double(1 << 53)
            let gap = -log(max(uniform, 1e-12)) / settings.rate
            try await Task.sleep(for: .milliseconds(Int64(gap * 1000)))
            if let change = sim.tenant.changeOne(seed: rng.next()) { changes.append((Date(), change)) }
        }
        sim.faults.withLock { $0.throttleEvery = 0 }
        if receiver?.isRunning != true { try startReceiver() }
    }

    private func fault(at point: Double) async throws {
        switch point {
        case 0.2:
            sim.faults.withLock { $0.throttleEvery = 3; $0.retryAfter = 0.5 }
            faultsApplied.append("throttling storm: every 3rd request answered 429 (Retry-After 0.5 s) for \(Int(settings.seconds / 10)) s")
        case 0.3:
            sim.faults.withLock { $0.throttleEvery = 0 }
        case 0.4:
            sim.expireDeltaTokens()
            faultsApplied.append("every delta token expired (410 on next use)")
        case 0.5:
            Self.kill9(service)
            try await Task.sleep(for: .seconds(2))
            try startService()
            faultsApplied.append("kill -9 of the service, restarted 2 s later")
        case 0.7:
            Self.kill9(receiver)
            cutStarted = Date()
            faultsApplied.append("site B's receiver killed for \(Int(settings.seconds / 10)) s")
        case 0.8:
            try startReceiver()
            cutEnded = Date()
        default:
            break
        }
    }
}
