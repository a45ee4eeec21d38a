import ArgumentParser
import Foundation
import GraphSimulator
import Logging
import VaultlineCore
import VaultlineGraph
import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

/// The README's main job, end to end on one machine: a simulated Microsoft 365 tenant served
/// over HTTP, a full and an incremental backup through Graph into site A, replication to a
/// site-B receiver over mutual TLS, and a mailbox restored from site B to `.eml` files that are
/// compared byte for byte with what Graph serves. Leaves nothing running.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the end-to-end demo in ./vaultline-demo (Graph simulator → site A → site B → restore).")

    @Option(help: "Working directory for the demo (recreated).")
    var dir = "vaultline-demo"

    @Option(help: "Users in the simulated tenant.")
    var users = 3

    @Option(help: "Messages per mailbox.")
    var messages = 60

    func run() async throws {
        try await reporting {
            let base = try prepare()
            let password = Array(encodeHex(try SecureRandom.bytes(16)).utf8)
            try writeFile(base + "/password", password, mode: 0o600)
            let secret = encodeHex(try SecureRandom.bytes(16))
            try writeFile(base + "/graph-secret", Array(secret.utf8), mode: 0o600)

            var spec = TenantSpec.demo
            spec.users = users
            spec.messagesPerUser = messages
            let sim = GraphSimulator(tenant: Tenant(spec: spec), clientSecret: secret)
            // Exchange's per-mailbox limit set below the client's budget, so the run shows
            // Retry-After honoured and the mailbox's rate halved until it fits.
            sim.faults.withLock { $0.mailboxRequestsPerSecond = 12 }
            let port = try await sim.start()
            print("1. Graph simulator on http://127.0.0.1:\(port): \(spec.users) users, \(spec.messagesPerUser) messages each, calendars, contacts, OneDrive and \(spec.sites) SharePoint site")

            var credentials = GraphCredentials(tenantId: sim.tenantId, clientId: sim.clientId, clientSecret: secret)
            credentials.graphBase = sim.graphURL
            credentials.authority = sim.authorityURL
            let client = GraphClient(credentials: credentials)
            do {
                try await steps(base: base, password: password, sim: sim, client: client, port: port)
            } catch {
                try? await client.shutdown()
                await sim.stop()
                throw error
            }
            try await client.shutdown()
            await sim.stop()
        }
    }

    private func steps(base: String, password: [UInt8], sim: GraphSimulator, client: GraphClient, port: Int) async throws {
        print("2. site-A repository in \(base)/site-a")
        let repo = try Repository.initialize(path: base + "/site-a", password: password)

        print("3. first backup through Graph")
        let first = try await M365Backup(repository: repo, client: client).run()
        printSummary(first, indent: "   ")

        let changes = sim.tenant.mutate(seed: 7, share: 0.05)
        print("4. the tenant changes: \(changes.added) added, \(changes.modified) modified, \(changes.moved) moved, \(changes.deleted) deleted")

        print("5. incremental backup (delta queries)")
        let second = try await M365Backup(repository: repo, client: client).run()
        printSummary(second, indent: "   ")

        print("6. site B: a receiver on loopback with mutual TLS, and replication")
        let certs = base + "/certs"
        try FileSystem.makeDirectories(certs, mode: 0o700)
        let ca = try SiteCertificates.makeCA(name: "vaultline demo CA")
        try writeFile(certs + "/ca.pem", Array(ca.certificatePEM.utf8))
        try writeFile(certs + "/ca-key.pem", Array(ca.privateKeyPEM.utf8), mode: 0o600)
        var identities: [SiteRole: SiteIdentity] = [:]
        for (role, name) in [(SiteRole.primary, "site-a"), (.replica, "site-b")] {
            let c = try SiteCertificates.issue(caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.privateKeyPEM, name: name, role: role, hosts: ["127.0.0.1"])
            try writeFile(certs + "/\(name).pem", Array(c.certificatePEM.utf8))
            try writeFile(certs + "/\(name)-key.pem", Array(c.privateKeyPEM.utf8), mode: 0o600)
            identities[role] = try SiteIdentity(certificatePEM: c.certificatePEM, keyPEM: c.privateKeyPEM, caPEM: ca.certificatePEM)
        }
        var quiet = Logger(label: "vaultline.demo")
        quiet.logLevel = .warning
        guard let replicaIdentity = identities[.replica], let primaryIdentity = identities[.primary] else {
            throw VaultlineError(.invalidArgument, "demo certificates missing")
        }
        let server = try ReplicaServer(configuration: .init(host: "127.0.0.1", port: 0, identity: replicaIdentity, root: base + "/site-b", serverName: "site-b"), logger: quiet)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let serverTask = Task { try await server.run { continuation.yield($0); continuation.finish() } }
        var it = ports.makeAsyncIterator()
        guard let replicaPort = await it.next() else {
            _ = try? await serverTask.value
            throw VaultlineError(.io, "the site-B receiver did not start")
        }
        var options = ReplicationSender.Options(host: "127.0.0.1", port: replicaPort, identity: primaryIdentity)
        options.clientName = "site-a"
        let replicated: ReplicationSender.Summary
        do {
            replicated = try await ReplicationSender(repositoryPath: base + "/site-a", options: options, logger: quiet).run()
        } catch {
            server.shutdown()
            _ = try? await serverTask.value
            throw error
        }
        server.shutdown()
        _ = try? await serverTask.value
        print("   \(replicated.filesSent) files, \(formatBytes(UInt64(replicated.bytesSent))) sent, every one verified by its hash and fsynced at site B")

        let upn = sim.tenant.users[0].upn
        let siteB = base + "/site-b/" + repo.config.id
        print("7. restoring \(upn)'s mailbox from site B to \(base)/restore as .eml")
        let replica = try Repository.open(path: siteB, password: password)
        try replica.loadIndex()
        let target = base + "/restore/" + upn
        try Restorer(repository: replica).restore(snapshotID: second.snapshotID, path: "/users/\(upn)/mail", target: target)
        var identical = 0, missing: [String] = []
        let expected = sim.tenant.mailbox(upn: upn)
        for m in expected {
            let name = m.id.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-") + ".eml"
            let path = target + "/" + m.folderPath + "/" + name
            if FileSystem.exists(path), try FileSystem.readFile(path) == m.mime { identical += 1 } else { missing.append(path) }
        }
        guard missing.isEmpty else {
            throw VaultlineError(.corrupt, "\(missing.count) restored messages differ from what Graph serves, first: \(missing[0])")
        }
        print("   \(identical) messages restored, byte-identical to the MIME Graph serves")

        // The worst day: ransomware encrypts a OneDrive, a file is deleted; put back from site B
        // only what changed, then back up again and compare with the snapshot.
        let before = sim.tenant.driveFiles(upn: upn)
        let encrypted = sim.tenant.ransomware(upn: upn, share: 0.5).encrypted
        let gone = before.keys.sorted().first { sim.tenant.driveFiles(upn: upn)[$0] == before[$0] }
        if let gone { sim.tenant.deleteFile(upn: upn, path: gone) }
        print("8. ransomware encrypts \(encrypted) of \(before.count) files in \(upn)'s OneDrive\(gone.map { "; \($0) is deleted" } ?? "")")
        print("   m365 restore --only-changed from site B")
        var restoreOptions = VaultlineGraph.M365Restore.Options()
        restoreOptions.onlyChanged = true
        restoreOptions.journalDirectory = base + "/restore-journals"
        let committed = sim.stats.filesCommitted
        let restored = try await VaultlineGraph.M365Restore(repository: replica, client: client, options: restoreOptions, logger: quiet)
            .run(snapshotID: second.snapshotID, path: "/users/\(upn)/onedrive")
        guard restored.failures.isEmpty, sim.tenant.driveFiles(upn: upn) == before else {
            throw VaultlineError(.corrupt, "the OneDrive restore did not bring every file back (\(restored.failures.first?.message ?? "contents differ"))")
        }
        print("   \(restored.replaced) replaced, \(restored.created) re-created, \(restored.unchanged) untouched (equal by QuickXorHash, not uploaded); the simulator committed \(sim.stats.filesCommitted - committed) files")
        // An emptied Inbox: back from site B, not as drafts, with its dates.
        let mailboxSize = sim.tenant.mailbox(upn: upn).count
        let emptied = sim.tenant.emptyFolder(upn: upn, displayName: "Inbox")
        print("9. \(upn) empties the Inbox (\(emptied) messages); m365 restore --only-changed of the mail from site B")
        let created = sim.stats.messagesCreated
        let mail = try await VaultlineGraph.M365Restore(repository: replica, client: client, options: restoreOptions, logger: quiet)
            .run(snapshotID: second.snapshotID, path: "/users/\(upn)/mail")
        guard mail.failures.isEmpty, mail.created == emptied, sim.tenant.mailbox(upn: upn).count == mailboxSize else {
            throw VaultlineError(.corrupt, "the mail restore did not bring every message back (\(mail.failures.first?.message ?? "\(mail.created) of \(emptied)"))")
        }
        print("   \(mail.created) messages posted as sent or received mail (not drafts) with their original dates; \(mail.unchanged) untouched; the simulator created \(sim.stats.messagesCreated - created)")
        // Deleted calendar events, a recurring series among them.
        let events = sim.tenant.jsonItems(upn: upn, events: true)
        let series = sim.tenant.seriesShapes(upn: upn)
        let seriesID = events.keys.sorted().first { events[$0].map { $0.range(of: Data("seriesMaster".utf8)) != nil } ?? false }
        let deleted = [seriesID, events.keys.sorted().first { $0 != seriesID }].compactMap { $0 }
        for id in deleted { sim.tenant.deleteEvent(upn: upn, id: id) }
        print("10. \(upn) deletes \(deleted.count) calendar events\(seriesID == nil ? "" : ", one a weekly series with a moved and a cancelled meeting"); m365 restore --only-changed of the calendar from site B")
        let eventsCreated = sim.stats.eventsCreated
        let calendar = try await VaultlineGraph.M365Restore(repository: replica, client: client, options: restoreOptions, logger: quiet)
            .run(snapshotID: second.snapshotID, path: "/users/\(upn)/calendar")
        guard calendar.failures.isEmpty, calendar.created == deleted.count, sim.tenant.jsonItems(upn: upn, events: true).count == events.count,
              sim.tenant.seriesShapes(upn: upn) == series else {
            throw VaultlineError(.corrupt, "the calendar restore did not bring every event back (\(calendar.failures.first?.message ?? "\(calendar.created) of \(deleted.count)"))")
        }
        print("   \(calendar.created) events posted (the series once, its occurrences reconciled: the moved one moved again, the cancelled one cancelled), \(calendar.unchanged) untouched, \(sim.stats.invitationsSent) invitations sent; the simulator created \(sim.stats.eventsCreated - eventsCreated)")
        let third = try await M365Backup(repository: repo, client: client).run()
        print("11. backup again: \(third.itemsDownloaded) items downloaded; the OneDrive is byte for byte what it was before the attack, the Inbox and the calendar hold what they held")
        print("12. continuous protection: m365 serve while the tenant keeps changing (new, read and deleted mail, edited files)")
        try await continuousPhase(repository: repo, client: client, sim: sim)

        let check = try Checker(repository: replica).run(readData: true)
        guard check.ok else { throw VaultlineError(.corrupt, "check at site B found damage: \(check.errors.first ?? "")") }

        let seen = first.snapshot.stats.bytesRead + second.snapshot.stats.bytesRead
        let stored = first.snapshot.stats.newStoredBytes + second.snapshot.stats.newStoredBytes
        let logical = first.snapshot.stats.totalBytes + second.snapshot.stats.totalBytes
        print("""

            summary
              items in the tenant:   \(second.itemsTotal) (first run downloaded \(first.itemsDownloaded), the incremental run \(second.itemsDownloaded))
              bytes seen:            \(formatBytes(seen)) downloaded; \(formatBytes(logical)) in the two snapshots
              bytes stored:          \(formatBytes(stored)) (dedup and compression: \(String(format: "%.1f", Double(logical) / Double(max(stored, 1))))x)
              Graph requests:        \(first.graph.requests) + \(second.graph.requests) (\(client.stats.throttled) answered 429 and retried after Retry-After)
              times:                 first backup \(String(format: "%.2f", first.snapshot.stats.durationSeconds)) s, incremental \(String(format: "%.2f", second.snapshot.stats.durationSeconds)) s, replication \(String(format: "%.2f", replicated.seconds)) s
              site B check:          \(check.packs) packs read and verified, no damage

            the same steps as individual commands (password in \(base)/password):
              vaultline graph-sim --listen 127.0.0.1:8365 --client-secret-file \(base)/graph-secret &
              vaultline init --repo \(base)/site-a --password-file \(base)/password
              vaultline m365 backup --repo \(base)/site-a --password-file \(base)/password \\
                  --graph-url http://127.0.0.1:8365/v1.0 --authority http://127.0.0.1:8365 \\
                  --tenant \(sim.tenantId) --client-id \(sim.clientId) --client-secret-file \(base)/graph-secret
              vaultline replica serve --listen 127.0.0.1:7365 --root \(base)/site-b --cert \(certs)/site-b.pem --key \(certs)/site-b-key.pem --ca \(certs)/ca.pem &
              vaultline replicate --repo \(base)/site-a --to 127.0.0.1:7365 --cert \(certs)/site-a.pem --key \(certs)/site-a-key.pem --ca \(certs)/ca.pem
              vaultline restore latest:/users/\(upn)/mail --repo \(siteB) --password-file \(base)/password --target \(base)/restore
              curl -X POST 'http://127.0.0.1:8365/_sim/ransomware?upn=\(upn)&share=0.5'
              vaultline m365 restore latest:/users/\(upn)/onedrive --only-changed --repo \(siteB) --password-file \(base)/password \\
                  --graph-url http://127.0.0.1:8365/v1.0 --authority http://127.0.0.1:8365 \\
                  --tenant \(sim.tenantId) --client-id \(sim.clientId) --client-secret-file \(base)/graph-secret
              vaultline m365 serve --repo \(base)/site-a --password-file \(base)/password --listen 127.0.0.1:9464 \\
                  --graph-url http://127.0.0.1:8365/v1.0 --authority http://127.0.0.1:8365 \\
                  --tenant \(sim.tenantId) --client-id \(sim.clientId) --client-secret-file \(base)/graph-secret \\
                  --replicate-to 127.0.0.1:7365 --cert \(certs)/site-a.pem --key \(certs)/site-a-key.pem --ca \(certs)/ca.pem &
              vaultline m365 status --url http://127.0.0.1:9464
            """)
    }

    private func prepare() throws -> String {
        if FileSystem.exists(dir) {
            guard FileSystem.exists(dir + "/.vaultline-demo") else {
                throw VaultlineError(.alreadyExists, "exists and was not made by the demo; choose another --dir", object: dir)
            }
            try removeTree(dir)
        }
        try FileSystem.makeDirectories(dir, mode: 0o755)
        try writeFile(dir + "/.vaultline-demo", Array("made by vaultline demo\n".utf8))
        return dir
    }

    private func removeTree(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            chmod(path, 0o700)
            for name in try FileSystem.list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw VaultlineError.system("rmdir", object: path) }
        } else {
            guard unlink(path) == 0 else { throw VaultlineError.system("unlink", object: path) }
        }
    }
}
