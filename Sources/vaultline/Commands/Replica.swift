import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOPosix
import VaultlineCore
import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

struct Replica: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The site-B replica receiver, and the replication status between two sites.",
        subcommands: [ReplicaServe.self, ReplicaStatus.self])
}

struct ReplicaServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the replica receiver: accept pushed files over mutual TLS, verify, store durably.",
        discussion: """
            Each repository is kept in ROOT/<repository id>/ in the repository layout, so \
            `vaultline restore --repo ROOT/<id>` works there with the password. The receiver \
            holds no key. SIGTERM or SIGINT stops it; transfers in progress stay resumable.
            """)

    @Option(help: "Address to listen on, HOST:PORT.") var listen: String
    @Option(help: "Folder holding the replicas.") var root: String?
    @Option(help: "Instead of --root: serve this one repository read-only, so the other site can `repair --from` it (site A).")
    var repository: String?
    @OptionGroup var identity: SiteIdentityOptions
    @Option(help: "This receiver's name, sent to peers.") var name = FileSystem.hostName()
    @Option(help: "Log level: debug, info, warning, error.") var logLevel = "info"

    func run() async throws {
        try await reporting {
            let (host, port) = try parseHostPort(listen, option: "--listen")
            guard (root == nil) != (repository == nil) else {
                throw VaultlineError(.invalidArgument, "give either --root (a receiver of replicas) or --repository (one repository served read-only)")
            }
            let logger = makeLogger("vaultline.replica", level: Logger.Level(rawValue: logLevel) ?? .info)
            let server = try ReplicaServer(
                configuration: .init(host: host, port: port, identity: try identity.load(), root: root ?? repository ?? "", serverName: name,
                               servedRepository: repository),
                logger: logger)
            signal(SIGTERM, SIG_IGN)
            signal(SIGINT, SIG_IGN)
            let sources = [SIGTERM, SIGINT].map { sig in
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { server.shutdown() }
                source.resume()
                return source
            }
            defer { sources.forEach { $0.cancel() } }
            do {
                try await server.run()
            } catch {
                throw ReplicationError(.connection, "cannot listen", object: listen, cause: error)
            }
        }
    }
}

struct ReplicaStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "What the replica holds versus this site: missing files and bytes per kind, newest snapshots.",
        discussion: "With a password (optional), the newest snapshot time on each side is shown too.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var identity: SiteIdentityOptions
    @Option(help: "The receiver, HOST:PORT.") var to: String
    @Flag(help: "Compare full listings instead of bucket summaries.") var exact = false

    struct KindStatus: Codable {
        var kind: String
        var local: Int
        var missingFiles: Int
        var missingBytes: Int64
    }

    struct Status: Codable {
        var repository: String
        var kinds: [KindStatus]
        var missingFiles: Int
        var missingBytes: Int64
        var newestSnapshotHere: Date?
        var newestSnapshotAtReplica: Date?
        var upToDate: Bool
    }

    func run() async throws {
        try await reporting {
            let (host, port) = try parseHostPort(to, option: "--to")
            let local = try LocalInventory(repositoryPath: try repository.repositoryPath)
            let site = try identity.load()
            let exact = self.exact
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { group.shutdownGracefully { _ in } }
            let missing = try await ReplicaConnection.with(
                host: host, port: port, identity: site, repositoryID: local.repositoryID, clientName: FileSystem.hostName(), group: group
            ) { connection in
                try await local.missingByKind(at: connection, exact: exact)
            }
            var kinds: [KindStatus] = []
            for kind in ReplicatedKind.allCases {
                let names = missing[kind] ?? []
                var bytes: Int64 = 0
                for n in names { bytes += (try? local.size(FileRef(kind, n))) ?? 0 }
                kinds.append(KindStatus(kind: kind.description, local: local.names[kind]?.count ?? 0, missingFiles: names.count, missingBytes: bytes))
            }
            var status = Status(
                repository: local.repositoryID, kinds: kinds, missingFiles: kinds.reduce(0) { $0 + $1.missingFiles },
                missingBytes: kinds.reduce(0) { $0 + $1.missingBytes }, upToDate: false)
            status.upToDate = status.missingFiles == 0
            // Snapshot times need the key; without a password the lag in files and bytes stands alone.
            if let password = try? repository.password(), let repo = try? Repository.open(path: try repository.repositoryPath, password: password) {
                let missingSnapshots = Set((missing[.snapshot] ?? []).map(\.hex))
                let snapshots = try repo.listSnapshots()
                status.newestSnapshotHere = snapshots.map(\.snapshot.time).max()
                status.newestSnapshotAtReplica = snapshots.filter { !missingSnapshots.contains($0.id) }.map(\.snapshot.time).max()
            }
            if repository.json {
                try printJSON(status)
                return
            }
            print("repository \(status.repository.prefix(16))… at \(to)")
            for k in kinds { print("  \(k.kind.padding(toLength: 10, withPad: " ", startingAt: 0)) \(k.local) here, \(k.missingFiles) missing at the replica (\(formatBytes(UInt64(k.missingBytes))))") }
            if let here = status.newestSnapshotHere {
                print("newest snapshot here: \(here); at the replica: \(status.newestSnapshotAtReplica.map { "\($0)" } ?? "none")")
            }
            print(status.upToDate ? "the replica is up to date" : "the replica lags by \(status.missingFiles) files, \(formatBytes(UInt64(status.missingBytes)))")
        }
    }
}
