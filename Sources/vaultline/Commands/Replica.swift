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
        subcommands: [ReplicaServe.self, ReplicaStatus.self, ReplicaPrune.self, ReplicaLock.self])
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
    @Option(help: "Seconds from TCP accept to a completed HELLO (TLS included); slower peers are cut.")
    var handshakeTimeout = 10.0
    @Option(help: "Seconds a connection with no transfer in progress may stay silent before it is closed.")
    var idleTimeout = 300.0
    @Option(help: "Slowest a transfer in progress may arrive, averaged over --progress-window: 8K, 1M, 100kbit.")
    var minTransferRate = "8K"
    @Option(help: "Seconds over which --min-transfer-rate is averaged.") var progressWindow = 60.0
    @Option(help: "Connections open at once; more are closed at accept (with a log line).") var maxConnections = 256
    @Option(help: "Connections open at once from one peer address.") var maxConnectionsPerAddress = 16

    /// The limits as given, each checked against a sane range.
    func limits() throws -> ReceiverLimits {
        func seconds(_ value: Double, _ option: String) throws -> Duration {
            guard value.isFinite, value >= 0.1, value <= 86_400 else {
                throw VaultlineError(.invalidArgument, "\(option) must be between 0.1 and 86400 seconds, not \(value)")
            }
            return .milliseconds(Int64(value * 1000))
        }
        var limits = ReceiverLimits()
        limits.handshakeTimeout = try seconds(handshakeTimeout, "--handshake-timeout")
        limits.idleTimeout = try seconds(idleTimeout, "--idle-timeout")
        limits.progressWindow = try seconds(progressWindow, "--progress-window")
        let rate = try parseRate(minTransferRate)
        guard rate >= 0, rate <= 1e12 else { throw VaultlineError(.invalidArgument, "--min-transfer-rate \(minTransferRate) is out of range") }
        limits.minTransferRate = Int(rate)
        guard (1...1_000_000).contains(maxConnections), (1...maxConnections).contains(maxConnectionsPerAddress) else {
            throw VaultlineError(.invalidArgument, "--max-connections must be 1…1000000 and --max-connections-per-address 1…--max-connections")
        }
        limits.maxConnections = maxConnections
        limits.maxConnectionsPerAddress = maxConnectionsPerAddress
        return limits
    }

    func run() async throws {
        try await reporting {
            let (host, port) = try parseHostPort(listen, option: "--listen")
            guard (root == nil) != (repository == nil) else {
                throw VaultlineError(.invalidArgument, "give either --root (a receiver of replicas) or --repository (one repository served read-only)")
            }
            let logger = makeLogger("vaultline.replica", level: Logger.Level(rawValue: logLevel) ?? .info)
            var configuration = ReplicaServer.Configuration(
                host: host, port: port, identity: try identity.load(), root: root ?? repository ?? "", serverName: name,
                servedRepository: repository)
            configuration.limits = try limits()
            let server = try ReplicaServer(configuration: configuration, logger: logger)
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
            let local = try LocalInventory(repositoryPath: try repository.localRepositoryPath)
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
            if let password = try? repository.password(), let repo = try? Repository.open(path: try repository.localRepositoryPath, password: password) {
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

struct ReplicaPrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Site B's own retention: forget by policy and prune, never below the retention lock.",
        discussion: """
            Run at site B by an administrator with the repository password; the receiver daemon \
            stays keyless. Nothing younger than the retention lock (`replica lock`) is deleted, \
            whatever the policy: the snapshots it would remove are listed as refused, with why. \
            Every name removed is recorded so site A never sends it again.
            """)

    @OptionGroup var repository: RepositoryOptions
    @Option(help: "The receiver's root (instead of --repo): the replica in it, when it holds one.") var root: String?
    @OptionGroup var keep: KeepOptions
    @Option(help: "How long marked packs wait before deletion.") var grace = "6h"
    @Option(help: "Repack packs with less than this share of their bytes in use (0–1).") var repackBelow = 0.8
    @Flag(help: "Only show what would be removed.") var dryRun = false

    func run() throws {
        try reporting {
            var target = repository
            if let root {
                let ids = try FileSystem.list(root).filter(ReplicaStore.isValidRepositoryID)
                guard ids.count == 1 else {
                    throw VaultlineError(.invalidArgument, "\(root) holds \(ids.count) replicas; name one with --repo \(root)/<id>: \(ids.joined(separator: " "))")
                }
                target.repo = root + "/" + ids[0]
            }
            let path = try target.localRepositoryPath
            let repo = try target.open()
            let lock = try RetentionLock.load(repository: path)
            let decisions = try repo.forget(
                policy: try keep.policy(), grouping: try keep.grouping(), only: keep.filter, dryRun: dryRun,
                retention: lock, replicaPath: path)
            var options = Pruner.Options()
            options.grace = try parseDuration(grace, option: "--grace")
            options.repackBelowUsage = repackBelow
            options.dryRun = dryRun
            options.retention = lock
            options.replicaPath = path
            let report = try Pruner(repository: repo, options: options).run()
            if repository.json {
                struct Out: Encodable { var retentionLockDays: Double?; var forget: [ForgetPolicy.Decision]; var prune: Pruner.Report }
                try printJSON(Out(retentionLockDays: lock?.days, forget: decisions, prune: report))
                return
            }
            print(lock.map { "retention lock: \($0.days) days" } ?? "no retention lock at this site (`vaultline replica lock --days N` sets one)")
            try printDecisions(decisions, dryRun: dryRun, json: false)
            print("prune: \(report.packsDeleted) packs deleted (\(formatBytes(report.bytesFreed))), \(report.packsMarked) marked")
            for w in report.plansWaiting { print("waiting: \(w)") }
        }
    }
}

struct ReplicaLock: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Set or raise site B's retention lock: nothing younger than N days is ever deleted here.",
        discussion: "It can only be raised. Site A cannot change it: no replication verb touches it.")

    @Option(help: "The replica repository (ROOT/<repository id>).") var repo: String
    @Option(help: "Days.") var days: Double

    func run() throws {
        try reporting {
            let lock = try RetentionLock.raise(repository: repo, days: days)
            print("retention lock at \(repo): \(lock.days) days")
        }
    }
}
