import Logging
import NIOPosix
import Synchronization
import VaultlineCore

/// `vaultline repair --from HOST:PORT`: fetches good copies of damaged and missing files from
/// the other site with the protocol's GET verb, verifies each by its hash, and puts it in place.
///
/// Which files: every content-addressed file whose SHA-256 differs from its name (found by
/// re-hashing them all, on every core), every pack the index names that is missing (needs the
/// key), and with `allMissing` every file the peer holds that this site lacks (a site that lost
/// a whole folder; note that it brings back files a prune removed here). Works both ways: site A
/// from site B's receiver, and site B from site A (`replica serve --repository`).
public struct PeerRepair: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var identity: SiteIdentity
        public var clientName = FileSystem.hostName()
        public var allMissing = false
        public var workers = 2
        public var dryRun = false
        public init(host: String, port: Int, identity: SiteIdentity) {
            self.host = host
            self.port = port
            self.identity = identity
        }
    }

    public struct Summary: Codable, Sendable {
        /// `kind/name` of each damaged or missing file found here.
        public var damaged: [String] = []
        public var missing: [String] = []
        public var repaired: [String] = []
        /// Files the peer could not provide intact, with the reason.
        public var unavailable: [String] = []
        public var bytesFetched: UInt64 = 0
        public var filesVerified = 0
        public var ok: Bool { unavailable.isEmpty }
    }

    let repositoryPath: String
    let key: MasterKey?
    let options: Options
    let logger: Logger

    public init(repositoryPath: String, key: MasterKey?, options: Options, logger: Logger) {
        self.repositoryPath = repositoryPath
        self.key = key
        self.options = options
        self.logger = logger
    }

    static let kinds: [ReplicatedKind] = [.key, .pack, .index, .snapshot]

    public func run() async throws -> Summary {
        let backend = LocalBackend(root: repositoryPath)
        let config = try RepositoryConfig.load(from: backend, path: repositoryPath)
        var summary = Summary()
        var wanted: [FileRef] = []

        // Damaged: every file re-hashed.
        var all: [(ReplicatedKind, String)] = []
        for kind in Self.kinds { all += try backend.list(kind.fileKind).map { (kind, $0) } }
        let bad = Mutex<[(ReplicatedKind, String)]>([])
        ParallelWork.forEach(all, workers: options.workers, makeState: { () }) { _, item in
            let (kind, name) = item
            guard let bytes = try? backend.read(kind.fileKind, name), SHA256.hash(bytes).hex == name else {
                bad.withLock { $0.append(item) }
                return
            }
        }
        summary.filesVerified = all.count
        for (kind, name) in bad.withLock({ $0 }).sorted(by: { $0.1 < $1.1 }) {
            guard let id = Bytes32(hex: name) else { continue }
            summary.damaged.append("\(kind.fileKind.rawValue)/\(name)")
            wanted.append(FileRef(kind, id))
        }

        let options = self.options, known = wanted, key = self.key, logger = self.logger, found = summary
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        return try await ReplicaConnection.with(
            host: options.host, port: options.port, identity: options.identity, repositoryID: config.id,
            clientName: options.clientName, group: group
        ) { connection -> Summary in
            guard connection.welcome.role.mayRead else {
                throw ReplicationError(.forbidden, "the peer does not let this certificate's role read files")
            }
            var summary = found
            // Damaged files first: a repaired index file may name packs that are missing.
            try await Self.fetch(known, over: connection, into: backend, summary: &summary, dryRun: options.dryRun, logger: logger)
            var more: [FileRef] = []
            if let key {
                let present = Set(try backend.list(.pack))
                for name in try backend.list(.index) {
                    guard let packs = try? Self.indexedPacks(backend: backend, key: key, index: name) else { continue }
                    for pack in packs where !present.contains(pack.hex) && !more.contains(FileRef(.pack, pack)) {
                        more.append(FileRef(.pack, pack))
                    }
                }
            }
            if options.allMissing {
                let local = try LocalInventory(repositoryPath: repositoryPath)
                for kind in Self.kinds {
                    let ours = Set(local.names[kind] ?? [])
                    for name in try await Self.peerNames(kind, at: connection).subtracting(ours).sorted()
                    where !more.contains(FileRef(kind, name)) {
                        more.append(FileRef(kind, name))
                    }
                }
            }
            summary.missing += more.map(\.description)
            try await Self.fetch(more, over: connection, into: backend, summary: &summary, dryRun: options.dryRun, logger: logger)
            return summary
        }
    }

    /// Fetches each file, verified by its hash, and puts it in place.
    static func fetch(
        _ refs: [FileRef], over connection: ReplicaConnection, into backend: LocalBackend, summary: inout Summary,
        dryRun: Bool, logger: Logger
    ) async throws {
        guard !dryRun else { return }
        for ref in refs {
            let label = ref.description
            do {
                let bytes = try await ReplicaReader.fetch(ref, over: connection)
                try backend.replaceVerified(ref.kind.fileKind, ref.name.hex, bytes)
                summary.repaired.append(label)
                summary.bytesFetched += UInt64(bytes.count)
                logger.info("repaired", metadata: ["file": "\(label)", "bytes": "\(bytes.count)"])
            } catch let e as ReplicationError where e.code != .connection {
                summary.unavailable.append("\(label): \(e.message)")
                logger.error("the peer has no good copy", metadata: ["file": "\(label)", "error": "\(e.message)"])
            }
        }
    }

    static func indexedPacks(backend: LocalBackend, key: MasterKey, index name: String) throws -> [Bytes32] {
        let plain = try SealedFile.open(try backend.read(.index, name), kind: .index, key: key, name: name, folder: "index")
        return try IndexFile.decode(plain, object: "index/\(name)").map(\.id)
    }

    /// Every name of `kind` the peer holds.
    static func peerNames(_ kind: ReplicatedKind, at connection: ReplicaConnection) async throws -> Set<Bytes32> {
        try await LocalInventory.listBucket(kind, bits: 0, bucket: 0, at: connection)
    }
}
