import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineGraph

/// Which tenant and app registration to use. The secret never comes from argv.
struct GraphOptions: ParsableArguments {
    @Option(help: "Directory (tenant) id or domain (or VAULTLINE_GRAPH_TENANT).")
    var tenant: String?

    @Option(help: "Application (client) id (or VAULTLINE_GRAPH_CLIENT_ID).")
    var clientId: String?

    @Option(help: "File holding the client secret (or VAULTLINE_GRAPH_SECRET_FILE / VAULTLINE_GRAPH_SECRET).")
    var clientSecretFile: String?

    @Option(help: "PEM file holding the app's certificate and its unencrypted RSA private key, to sign in with a certificate instead of a secret (or VAULTLINE_GRAPH_CERTIFICATE_FILE).")
    var clientCertificateFile: String?

    @Option(help: "Graph base URL, for national clouds or the simulator.")
    var graphURL = "https://graph.microsoft.com/v1.0"

    @Option(help: "Identity platform URL.")
    var authority = "https://login.microsoftonline.com"

    @Option(help: "Requests per second spent on one mailbox (Exchange allows 10,000 per 10 minutes: 16.5 stays under it).")
    var mailboxRate = 16.5

    @Option(help: "SharePoint and OneDrive resource units spent a minute, tenant-wide (0: no budget; a 429 still pauses every drive request). Microsoft grants 1,200 to 6,000 by licence count; with serve --coordinator, all workers share it.")
    var driveUnitsPerMinute = 0.0

    func clientOptions() throws -> GraphClient.Options {
        guard mailboxRate > 0, mailboxRate.isFinite else {
            throw VaultlineError(.invalidArgument, "--mailbox-rate must be a positive number of requests per second")
        }
        guard driveUnitsPerMinute >= 0, driveUnitsPerMinute <= 1_000_000 else {
            throw VaultlineError(.invalidArgument, "--drive-units-per-minute must be 0…1000000")
        }
        var o = GraphClient.Options()
        o.mailboxRequestsPerSecond = mailboxRate
        o.driveUnitsPerMinute = driveUnitsPerMinute
        return o
    }

    func credentials() throws -> GraphCredentials {
        let env = ProcessInfo.processInfo.environment
        guard let tenant = tenant ?? env["VAULTLINE_GRAPH_TENANT"] else {
            throw VaultlineError(.invalidArgument, "no tenant given: use --tenant or VAULTLINE_GRAPH_TENANT")
        }
        guard let clientId = clientId ?? env["VAULTLINE_GRAPH_CLIENT_ID"] else {
            throw VaultlineError(.invalidArgument, "no client id given: use --client-id or VAULTLINE_GRAPH_CLIENT_ID")
        }
        var c: GraphCredentials
        if let file = clientCertificateFile ?? env["VAULTLINE_GRAPH_CERTIFICATE_FILE"] {
            c = GraphCredentials(tenantId: tenant, clientId: clientId, clientSecret: "")
            c.certificate = try ClientCertificate(pem: String(decoding: try FileSystem.readFile(file), as: UTF8.self), source: file)
        } else {
            var secret: String
            if let file = clientSecretFile ?? env["VAULTLINE_GRAPH_SECRET_FILE"] {
                secret = String(decoding: try FileSystem.readFile(file), as: UTF8.self)
            } else if let s = env["VAULTLINE_GRAPH_SECRET"] {
                secret = s
            } else {
                throw VaultlineError(.invalidArgument, "no client secret or certificate given: use --client-secret-file, --client-certificate-file, VAULTLINE_GRAPH_SECRET_FILE or VAULTLINE_GRAPH_SECRET")
            }
            secret = secret.trimmingCharacters(in: .whitespacesAndNewlines)
            c = GraphCredentials(tenantId: tenant, clientId: clientId, clientSecret: secret)
        }
        c.graphBase = graphURL.hasSuffix("/") ? String(graphURL.dropLast()) : graphURL
        c.authority = authority.hasSuffix("/") ? String(authority.dropLast()) : authority
        return c
    }
}

struct M365: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "m365", abstract: "Back up Microsoft 365 through Microsoft Graph, and restore into it.",
        subcommands: [M365Backup.self, M365Restore.self, M365Serve.self, M365Status.self])

    struct M365Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup",
            abstract: "Back up mail, calendars, contacts, OneDrive and SharePoint libraries (incremental by delta).")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var graph: GraphOptions
        @OptionGroup var scope: M365ScopeOptions

        @Flag(help: "Do not use a parent snapshot (enumerate everything).")
        var noParent = false

        /// The UPNs of a users file: one per line, blank lines and `#` comments skipped.
        static func readUsers(_ path: String) throws -> [String] {
            let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
            var users: [String] = []
            for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if line.isEmpty { continue }
                guard !line.contains(where: { $0 == " " || $0 == "\t" }), line.contains("@"), line.utf8.count <= 320 else {
                    throw VaultlineError(.invalidArgument, "line \(number + 1) is not a UPN: \(UntrustedText.quoted(String(line.prefix(80))))", object: path)
                }
                users.append(line)
            }
            guard !users.isEmpty else { throw VaultlineError(.invalidArgument, "the users file names no user", object: path) }
            return users
        }

        func run() async throws {
            try await reporting {
                let repo = try repository.open()
                let client = GraphClient(credentials: try graph.credentials(), options: try graph.clientOptions())
                var options = try scope.options()
                options.noParent = noParent
                let line = ProgressLine()
                let job = VaultlineGraph.M365Backup(repository: repo, client: client, options: options) { items, bytes in
                    line.update("\(items) items downloaded, \(formatBytes(bytes))")
                }
                let result: VaultlineGraph.M365Backup.Result
                do { result = try await job.run() } catch {
                    try? await client.shutdown()
                    throw error
                }
                try await client.shutdown()
                line.done()
                if repository.json {
                    try printJSON(M365Summary(result))
                } else {
                    printSummary(result)
                }
                try exitForOutcome(result.snapshot)
            }
        }
    }
}

/// What a Microsoft 365 backup covers and how its snapshots are marked: `m365 backup` and
/// `m365 serve` take the same.
struct M365ScopeOptions: ParsableArguments {
    @Option(help: "Only this user (UPN; repeatable).")
    var user: [String] = []

    @Option(help: "Only the users in this file (one UPN per line; # starts a comment): a share of the tenant for this machine.")
    var usersFile: String?

    @Option(help: "Services to skip: mail, calendar, contacts, onedrive, sites (repeatable).")
    var skip: [String] = []

    @Option(help: "Tag the snapshot (repeatable).")
    var tag: [String] = []

    @OptionGroup var signal: SignalOptions

    @Option(help: "Make stored data durable and indexed at least this often, so a killed run is not downloaded again (seconds).")
    var checkpointSeconds = 30.0

    func options() throws -> VaultlineGraph.M365Backup.Options {
        var options = VaultlineGraph.M365Backup.Options()
        let users = user + (try usersFile.map(M365.M365Backup.readUsers) ?? [])
        options.users = users.isEmpty ? nil : users
        options.tags = tag
        options.checkpointSeconds = checkpointSeconds
        options.signal = try signal.policy()
        for s in skip {
            switch s {
            case "mail": options.mail = false
            case "calendar": options.calendar = false
            case "contacts": options.contacts = false
            case "onedrive": options.onedrive = false
            case "sites": options.sites = false
            default: throw VaultlineError(.invalidArgument, "unknown service \"\(s)\" (mail, calendar, contacts, onedrive, sites)")
            }
        }
        return options
    }
}

struct M365Summary: Encodable {
    var snapshot: String
    var items: Int
    var itemsDownloaded: Int
    var collections: Int
    var collectionsUnchanged: Int
    var stats: Snapshot.Stats
    var graph: GraphStats
    var errors: [Snapshot.ItemError]
    var partial: Bool
    var signal: Snapshot.ChangeSignal?

    init(_ r: VaultlineGraph.M365Backup.Result) {
        signal = r.snapshot.signal
        snapshot = r.snapshotID
        items = r.itemsTotal
        itemsDownloaded = r.itemsDownloaded
        collections = r.collections
        collectionsUnchanged = r.collectionsKept
        stats = r.snapshot.stats
        graph = r.graph
        errors = r.snapshot.errors
        partial = r.snapshot.partial
    }
}

func printSummary(_ r: VaultlineGraph.M365Backup.Result, indent: String = "") {
    let s = r.snapshot.stats
    print("\(indent)snapshot \(r.snapshotID.prefix(8)) saved\(r.snapshot.partial ? " (partial)" : "")")
    print("\(indent)  items: \(r.itemsTotal) (\(r.itemsDownloaded) downloaded, \(formatBytes(s.bytesRead))), \(formatBytes(s.totalBytes)) in total")
    print("\(indent)  collections: \(r.collections) (folders, calendars, contact folders, drives), \(r.collectionsKept) unchanged")
    print("\(indent)  added: \(s.newBlobs) blobs, \(formatBytes(s.newRawBytes)) raw, \(formatBytes(s.newStoredBytes)) stored")
    printSignal(r.snapshot, indent: indent)
    print("\(indent)  graph: \(r.graph.requests) requests, \(r.graph.throttled) throttled (429), \(r.graph.retries) retries, \(String(format: "%.2f", s.durationSeconds)) s")
    for e in r.snapshot.errors { print("\(indent)  could not back up \(e.path): \(e.message)") }
}
