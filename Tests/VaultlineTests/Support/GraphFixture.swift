import Foundation
import GraphSimulator
import Logging
@testable import VaultlineCore
@testable import VaultlineGraph

/// A simulated tenant served on loopback, a repository, and a client signed in to the simulator.
final class GraphFixture: @unchecked Sendable {
    let dir = TemporaryDirectory("vaultline-graph")
    let sim: GraphSimulator
    let repo: Repository
    let client: GraphClient

    init(spec: TenantSpec = GraphFixture.smallSpec, clientOptions: GraphClient.Options = GraphFixture.fastRetries,
         certificate: RegisteredCertificate? = nil) async throws {
        sim = GraphSimulator(tenant: Tenant(spec: spec), clientSecret: "test-secret", clientCertificate: certificate)
        try await sim.start()
        repo = try Fixtures.repository(in: dir)
        client = GraphClient(credentials: Self.credentials(sim), options: clientOptions)
    }

    static func credentials(_ sim: GraphSimulator, secret: String = "test-secret") -> GraphCredentials {
        var c = GraphCredentials(tenantId: sim.tenantId, clientId: sim.clientId, clientSecret: secret)
        c.graphBase = sim.graphURL
        c.authority = sim.authorityURL
        return c
    }

    static var smallSpec: TenantSpec {
        var s = TenantSpec()
        s.users = 2
        s.messagesPerUser = 24
        s.eventsPerUser = 4
        s.contactsPerUser = 4
        s.filesPerUser = 6
        s.maxFileSize = 600_000
        return s
    }

    static var fastRetries: GraphClient.Options {
        var o = GraphClient.Options()
        o.baseBackoff = 0.01
        o.maxBackoff = 0.1
        o.mailboxRequestsPerSecond = 0  // no request budget: tests run as fast as loopback allows
        return o
    }

    func backup(_ configure: (inout M365Backup.Options) -> Void = { _ in }) async throws -> M365Backup.Result {
        var o = M365Backup.Options()
        configure(&o)
        var logger = Logger(label: "test.m365")
        logger.logLevel = ProcessInfo.processInfo.environment["VAULTLINE_TEST_LOG"] != nil ? .debug : .critical
        return try await M365Backup(repository: repo, client: client, options: o, logger: logger).run()
    }

    /// Restores `path` of `snapshot` and returns every restored file by name with its bytes.
    /// A user's events and contacts restored from `snapshot` against the Graph JSON the simulator
    /// serves: what differs (nothing, when every item came back as served).
    func jsonItemMismatches(_ snapshot: String, upn: String) throws -> [String] {
        var out: [String] = []
        // The default calendar, the contacts, and every other calendar (listed in full each run).
        let collections = [(true, nil, "calendar"), (false, nil, "contacts")]
            + sim.tenant.otherCalendars(upn: upn).map { (true, Optional($0.id), "calendars/" + $0.name) }
        for (events, calendar, dir) in collections {
            let served = sim.tenant.jsonItems(upn: upn, events: events, calendar: calendar)
            let restored = try restore(snapshot, "/users/\(upn)/\(dir)")
            if restored.count != served.count || served.isEmpty { out.append("\(dir): \(restored.count) restored, \(served.count) served") }
            for (id, json) in served {
                let name = id.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") + ".json"
                guard let file = restored.first(where: { $0.key.hasSuffix(name) }) else { out.append("\(dir)/\(name) missing"); continue }
                if try JSONValue.parse(file.value) != JSONValue.parse(json) { out.append("\(dir)/\(name) differs") }
            }
        }
        return out
    }

    func restore(_ snapshot: String, _ path: String) throws -> [String: [UInt8]] {
        let target = dir.path + "/restore-\(UUID().uuidString.prefix(8))"
        try Restorer(repository: repo).restore(snapshotID: snapshot, path: path, target: target)
        var out: [String: [UInt8]] = [:]
        let walker = FileManager.default.enumerator(atPath: target)
        while let rel = walker?.nextObject() as? String {
            let p = target + "/" + rel
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue {
                out[rel] = try FileSystem.readFile(p)
            }
        }
        return out
    }

    /// What the tenant holds now for a mailbox, as restored file names (`<folder path>/<id>.eml`
    /// under the restore target).
    func expectedMailbox(_ upn: String) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for m in sim.tenant.mailbox(upn: upn) {
            let name = m.id.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") + ".eml"
            out[m.folderPath + "/" + name] = m.mime
        }
        return out
    }

    func close() async {
        try? await client.shutdown()
        await sim.stop()
    }
}
