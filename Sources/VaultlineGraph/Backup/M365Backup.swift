import Foundation
import Logging
import Synchronization
import VaultlineCore

/// Backs up a Microsoft 365 tenant through Graph into a repository: every user's mail (MIME),
/// calendar and contacts (Graph JSON) and OneDrive, and every SharePoint site's document
/// libraries. Incremental through delta queries: each collection's delta link is kept in the
/// snapshot's source state, and each round is applied to the parent snapshot's tree.
///
/// Tree: `/users/<upn>/mail/<folder path>/<id>.eml`, `/users/<upn>/calendar/<id>.json`,
/// `/users/<upn>/contacts/<id>.json`, `/users/<upn>/onedrive/<path>`,
/// `/sites/<site>/<library>/<path>`; each node's metadata holds the Graph id and the item's
/// Graph JSON (`graph.item`).
///
/// One bad item never fails the run: it is recorded in the snapshot's error list (which marks
/// the snapshot partial), the previous version is kept if there was one, and it is tried again
/// on the next run.
public final class M365Backup: Sendable {
    public struct Options: Sendable {
        /// Only these users (UPNs); nil: every user.
        public var users: [String]?
        public var mail = true
        public var calendar = true
        public var contacts = true
        public var onedrive = true
        public var sites = true
        /// Only these SharePoint sites (their names as the tree has them, under `/sites/`);
        /// nil: every site.
        public var siteNames: [String]?
        public var tags: [String] = []
        public var parent: String?
        public var noParent = false
        public var signal = RansomwareSignal()
        /// Users backed up at once: mailboxes are limited one by one (4 requests in flight, a
        /// request budget), so throughput comes from working on many at once.
        public var concurrentUsers = 64
        /// Items downloaded at once within one mailbox or drive.
        public var concurrentItems = 4
        /// Where a run notes what it stored, so a killed run is not downloaded again
        /// (default: the user's cache directory, per repository).
        public var journalPath: String?
        /// Stored data is made durable and indexed at least this often (seconds).
        public var checkpointSeconds = 30.0
        /// Decides which collections this run polls (nil: all of them); the others are carried
        /// forward from the parent snapshot with their delta links (``CollectionSchedule``).
        public var planner: (any CollectionPlanner)?
        /// Stores no snapshot when the run found nothing new: the same tree as the parent's,
        /// no delta link reset, the same items to try again (the continuous service's passes).
        public var commitOnlyWhenAdvanced = false
        /// Each user's own parent snapshot, by UPN (lower case), instead of one parent: a
        /// coordinator's batch of tasks, each last run by whichever worker held it. Each user's
        /// delta links and directory come from that user's parent (``composeParent(_:graphBase:)``).
        public var userParents: [String: String]?
        public init() {}
    }

    public struct Result: Sendable {
        /// The snapshot stored; when nothing advanced and none was (``Options/commitOnlyWhenAdvanced``),
        /// the parent's.
        public var snapshotID: String
        public var committed = true
        public var snapshot: Snapshot
        public var graph: GraphStats
        public var itemsDownloaded: Int
        public var itemsTotal: Int
        /// Collections (mail folders, calendars, contact folders, drives) given a delta round,
        /// and of those the ones whose round listed nothing and whose parent-snapshot tree was
        /// kept as it was (no spill, no tree written again).
        public var collections: Int
        public var collectionsKept: Int
        /// Collections listed in full because their delta link had expired.
        public var deltaResets = 0
        /// With ``Options/userParents``: the users (UPNs, lower case) whose part is not what
        /// their parent held.
        public var advancedUsers: Set<String>?
    }

    public static let sourceKind = "m365"

    let repository: Repository
    let client: GraphClient
    let options: Options
    let logger: Logger
    let errors = Mutex<[Snapshot.ItemError]>([])
    /// Openers for reading the parent snapshot's trees: users are backed up concurrently, and
    /// one opener (its decompressor and scratch buffers) serves one reader at a time.
    private let openers = Mutex<[OpenerBox]>([])
    let counts = Mutex((downloaded: 0, bytes: UInt64(0)))
    let collectionCounts = Mutex((rounds: 0, kept: 0, resets: 0))
    let progress: (@Sendable (Int, UInt64) -> Void)?

    public init(repository: Repository, client: GraphClient, options: Options = Options(), logger: Logger = Logger(label: "vaultline.m365"),
                progress: (@Sendable (_ items: Int, _ bytes: UInt64) -> Void)? = nil) {
        self.repository = repository
        self.client = client
        self.options = options
        self.logger = logger
        self.progress = progress
    }

    func recordError(_ path: String, _ error: any Error) {
        logger.warning("item not backed up", metadata: ["path": "\(path)", "error": "\(error)"])
        errors.withLock { $0.append(.init(path: path, message: "\(error)")) }
    }

    func countDownload(_ bytes: UInt64) {
        let (n, b) = counts.withLock { c in
            c.downloaded += 1
            c.bytes += bytes
            return (c.downloaded, c.bytes)
        }
        CollectionActivity.noteDownload()
        progress?(n, b)
    }

    public func run() async throws -> Result {
        let started = Date()
        let graphBefore = client.stats
        let lock = try RepositoryLock.acquire(repository.backend, exclusive: false, command: "backup m365")
        defer { lock.release() }
        try repository.loadIndex()
        let graphBase = client.credentials.graphBase
        let scopePaths = Self.snapshotPaths(graphBase, options)
        let composed = try options.userParents.map { try composeParent($0, graphBase: graphBase) }
        let parentID: String? = try options.noParent || composed != nil ? nil
            : (options.parent.map(repository.resolveSnapshot) ?? findParent(scopePaths, graphBase: graphBase))
        var parentRoot: Tree? = composed?.root
        var parentSnapshot: Snapshot?
        var parentStats: Snapshot.Stats?
        var state = composed?.state ?? M365State(graphBase: graphBase)
        if let parentID {
            let parent = try repository.loadSnapshot(parentID)
            parentSnapshot = parent
            parentStats = parent.stats
            parentRoot = try repository.loadTree(parent.tree)
            if let s = M365State.decode(parent.sourceState), s.graphBase == graphBase { state = s }
        }
        // Packs sealed and indexed at least every `checkpointSeconds`: a killed run leaves at most
        // that much stored data unindexed, so the journal can vouch for nearly everything it
        // downloaded.
        let session = try BackupSession(repository: repository, checkpointInterval: options.checkpointSeconds)
        // A pool thread is held while an item streams into it; each holds a chunk buffer of twice
        // the maximum chunk (8 MiB once a large file has passed through), so their number bounds
        // memory. Drive files stream on at most two threads per core: more front-loads the CPU
        // onto them and starves the mailboxes, whose budget cannot be made up later. Four more
        // are for mailbox content, which is fetched before it takes one and passes through fast.
        let bulkThreads = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)
        let pool = ChunkerPool(session: session, threads: bulkThreads + 4, bulkThreads: bulkThreads)
        let journal = DownloadJournal(path: options.journalPath ?? DownloadJournal.defaultPath(repositoryID: repository.config.id,
                                                                                                 scope: scopePaths.map { TenantView.treePath($0, base: graphBase) }))
        let ctx = RunContext(session: session, pool: pool, parentRoot: parentRoot, composedLevels: composed?.levels ?? [:], journal: journal)
        var root = DirBuilder()
        var newState = M365State(graphBase: graphBase)
        do {
            // Users.
            var users: [(id: String, upn: String)] = []
            _ = try await client.pages(client.url("users") + "?$select=id,userPrincipalName,displayName") { page in
                for u in page {
                    guard let id = u["id"]?.string, let upn = u["userPrincipalName"]?.string else { continue }
                    users.append((id, upn))
                }
            }
            if let wanted = options.users.map({ Set($0.map { $0.lowercased() }) }) {
                users = users.filter { wanted.contains($0.upn.lowercased()) }
            }
            // A sliding window of users: a slow mailbox never holds the others back.
            var usersDir = DirBuilder()
            try await withThrowingTaskGroup(of: (String, DirBuilder, M365State.UserState).self) { group in
                var pending = users[...]
                func startNext() {
                    guard let u = pending.popFirst() else { return }
                    let previous = state.users[u.id] ?? .init(upn: u.upn)
                    // Nothing of the user due: the parent snapshot's directory and links as they were.
                    if let planner = options.planner, state.users[u.id] != nil, !planner.anyDue(user: u.id),
                       let carried = try? carried(["users", safeName(u.upn)], ctx) {
                        group.addTask { (u.id, carried, previous) }
                        return
                    }
                    group.addTask { try await self.backupUser(id: u.id, upn: u.upn, state: previous, ctx) }
                }
                for _ in 0..<max(1, options.concurrentUsers) { startNext() }
                for try await (id, dir, userState) in group {
                    // Stored as soon as the user is done: what a run holds in memory follows the
                    // users in progress, not the tenant.
                    usersDir.dirs[safeName(userState.upn)] = try await sealed(dir, ctx)
                    newState.users[id] = userState
                    startNext()
                }
            }
            root.dirs["users"] = usersDir
            if options.sites {
                switch try await turn(["sites"], ctx, { try await backupSites(state: state, ctx) }) {
                case .done(let (sitesDir, libraries, retries)):
                    root.dirs["sites"] = sitesDir
                    newState.libraries = libraries
                    newState.libraryRetries = retries.isEmpty ? nil : retries
                case .failed(let carried):
                    root.dirs["sites"] = carried
                    newState.libraries = state.libraries
                    newState.libraryRetries = state.libraryRetries
                case .absent: break
                }
            }
            let rootID = try await storeTree(root, ctx)
            var stats = try session.finish()
            await pool.shutdown()
            let (downloaded, bytes) = counts.withLock { ($0.downloaded, $0.bytes) }
            stats.files = UInt64(root.itemCount)
            stats.filesRead = UInt64(downloaded)
            stats.bytesRead = bytes
            stats.totalBytes = root.totalBytes
            stats.durationSeconds = Date().timeIntervalSince(started)
            var snapshot = Snapshot(time: started, sourceKind: Self.sourceKind, paths: scopePaths, tags: options.tags,
                                    parent: parentID, tree: rootID.hex, stats: stats)
            snapshot.sourceState = newState.encoded()
            snapshot.errors = errors.withLock { $0 }
            snapshot.partial = !snapshot.errors.isEmpty
            snapshot.signal = options.signal.evaluate(stats, parent: parentStats)
            let collections = collectionCounts.withLock { $0 }
            var result = Result(snapshotID: parentID ?? "", snapshot: snapshot, graph: client.stats.since(graphBefore), itemsDownloaded: downloaded,
                                itemsTotal: root.itemCount, collections: collections.rounds, collectionsKept: collections.kept,
                                deltaResets: collections.resets)
            if options.commitOnlyWhenAdvanced, let parentID, let parentSnapshot,
               !Self.advanced(snapshot, newState, resets: collections.resets, over: parentSnapshot, state) {
                result.snapshotID = parentID
                result.committed = false
                return result
            }
            if let composed {
                let advanced = Self.advancedUsers(usersDir, newState, errors: snapshot.errors, over: composed)
                result.advancedUsers = advanced
                if options.commitOnlyWhenAdvanced, advanced.isEmpty, collections.resets == 0, !options.sites {
                    result.snapshotID = ""
                    result.committed = false
                    return result
                }
            }
            try lock.ensureHeld()
            result.snapshotID = try session.commit(snapshot)
            journal.remove()
            return result
        } catch {
            session.abort()
            await pool.shutdown()
            throw error
        }
    }

    /// Whether a run found anything its parent does not hold: another tree, a delta link reset
    /// (its new link must be kept, or the next run lists everything again), other items to try
    /// again or other errors. Delta links that moved on without listing anything do not count:
    /// the parent's still work.
    static func advanced(_ snapshot: Snapshot, _ state: M365State, resets: Int, over parent: Snapshot, _ parentState: M365State) -> Bool {
        if snapshot.tree != parent.tree || resets > 0 || snapshot.paths != parent.paths { return true }
        if Set(snapshot.errors.map(\.path)) != Set(parent.errors.map(\.path)) { return true }
        return state.retries != parentState.retries
    }

    /// A snapshot's paths: exactly what its tree holds (``TenantView`` puts a tenant together
    /// from them). The Graph base for the whole tenant; else `<base>/users/<upn>` for each user
    /// of a run limited to some (`<base>/users` for every user), or `<base>/users/<upn>/<service>`
    /// for each service when some are skipped; and `<base>/sites`, or `<base>/sites/<site>` for
    /// each site of a run limited to some. Machines splitting a tenant each have their own series.
    static func snapshotPaths(_ graphBase: String, _ options: Options) -> [String] {
        let allServices = options.mail && options.calendar && options.contacts && options.onedrive
        if options.users == nil, allServices, options.sites, options.siteNames == nil { return [graphBase] }
        var services: [String] = []
        if options.mail { services.append("mail") }
        if options.calendar { services += ["calendar", "calendars"] }
        if options.contacts { services.append("contacts") }
        if options.onedrive { services.append("onedrive") }
        var paths: [String] = []
        if !services.isEmpty {
            let users = options.users.map { Set($0.map { "/users/" + safeName($0.lowercased()) }).sorted() } ?? ["/users"]
            for user in users { paths += allServices ? [user] : services.map { user + "/" + $0 } }
        }
        if options.sites {
            paths += options.siteNames.map { Set($0.map { "/sites/" + safeName($0.lowercased()) }).sorted() } ?? ["/sites"]
        }
        return paths.map { graphBase + $0 }
    }

    /// The latest snapshot of the same scope; else the latest that holds all of it (a whole
    /// tenant's, whose state holds every collection's delta links); else the latest that holds
    /// some of it (what it does not hold is listed in full). A snapshot's state and tree come
    /// from one run, so whichever is taken, each delta link applies to the tree beside it.
    func findParent(_ paths: [String], graphBase: String) throws -> String? {
        let snapshots = try repository.listSnapshots().filter { $0.snapshot.sourceKind == Self.sourceKind }
        let wanted = paths.map { TenantView.treePath($0, base: graphBase) }
        func held(_ snapshot: Snapshot) -> [String] {
            snapshot.paths.filter { TenantView.graphBase(of: $0) == graphBase }.map { TenantView.treePath($0, base: graphBase) }
        }
        func covers(_ snapshot: Snapshot, _ path: String) -> Bool { held(snapshot).contains { TenantView.contains($0, path) } }
        return (snapshots.last { $0.snapshot.paths == paths }
            ?? snapshots.last { s in wanted.allSatisfy { covers(s.snapshot, $0) } }
            ?? snapshots.last { s in wanted.contains { covers(s.snapshot, $0) } })?.id
    }

    /// Stores a directory and everything below it; returns the tree id.
    func storeTree(_ d: DirBuilder, _ ctx: RunContext) async throws -> Bytes32 {
        if let stored = d.stored { return stored.tree }
        var nodes = Array(d.files.values)
        for (name, sub) in d.dirs {
            var node = TreeNode(name: name, kind: .dir)
            node.subtree = try await storeTree(sub, ctx).hex
            node.metadata = sub.metadata
            node.mode = 0o755
            nodes.append(node)
        }
        let (session, all) = (ctx.session, nodes)
        return try await ctx.pool.run { _ in try TreeWriter.write(all, store: session.store) }
    }

    /// The directory stored now and kept as its tree id, counts and metadata only.
    func sealed(_ d: DirBuilder, _ ctx: RunContext) async throws -> DirBuilder {
        var out = DirBuilder(metadata: d.metadata)
        out.stored = (try await storeTree(d, ctx), d.itemCount, d.totalBytes)
        return out
    }

    static func journalKey(name: String, metadata: [String: String]) -> String {
        "\(metadata["graph.id"] ?? name)|\(metadata["graph.changeKey"] ?? metadata["graph.cTag"] ?? "")"
    }

    /// False when a parent snapshot's item lost its data: marked damaged by `repair snapshots`,
    /// or a blob the index no longer has. Such an item is fetched again, changed or not.
    func isIntact(_ node: TreeNode) -> Bool {
        node.damaged == nil && (node.content ?? []).allSatisfy { Bytes32(hex: $0).map(repository.index.contains) ?? false }
    }

    /// The node a killed earlier run stored for this item version, if its blobs are durable.
    func reuse(name: String, metadata: [String: String], _ ctx: RunContext) -> TreeNode? {
        guard let stored = ctx.journal.reusable(Self.journalKey(name: name, metadata: metadata), index: repository.index) else { return nil }
        var node = TreeNode(name: name, kind: .file)
        node.content = stored.content
        node.size = stored.size
        node.mode = 0o644
        node.mtimeNs = stored.mtimeNs
        node.metadata = metadata
        return node
    }

    /// Runs one collection's round under the planner, which is told how it went; nil when the
    /// planner says the collection is not due, or defers the full listing its expired delta
    /// link needs (the caller carries it forward). Without a planner every collection is due.
    func scheduled<T>(_ key: CollectionKey, _ body: () async throws -> T) async throws -> T? {
        guard let planner = options.planner else { return try await body() }
        guard planner.isDue(key) else { return nil }
        let activity = CollectionActivity(key: key, planner: planner)
        do {
            let out = try await CollectionActivity.$current.withValue(activity) { try await body() }
            planner.polled(key, activity.outcome)
            return out
        } catch is DeferredListing {
            logger.info("delta token expired; listing deferred to a later pass", metadata: ["collection": "\(key)"])
            planner.polled(key, .deferred)
            return nil
        } catch {
            planner.polled(key, .failed)
            throw error
        }
    }

    /// How one service's (or library's) turn ended.
    enum Turn<T> {
        case done(T)
        /// The user has no such service: left out, not an error.
        case absent
        /// A Graph failure that outlasted the retries, recorded: the parent snapshot's
        /// directory for it (nil: none), to carry forward unchanged.
        case failed(DirBuilder?)
    }

    /// Runs one service's turn, so that its failure is its own: recorded against `path`, the
    /// run goes on (the top complaint against backup tools for Microsoft 365 is one failure
    /// failing the whole run). Sign-in failures and the engine's errors still end the run.
    func turn<T>(_ path: [String], _ ctx: RunContext, _ body: () async throws -> T) async throws -> Turn<T> {
        do {
            return .done(try await body())
        } catch let e as GraphError where e.serviceAbsent && !e.endsTheRun {
            logger.info("service not present", metadata: ["path": "\(path.joined(separator: "/"))", "error": "\(e)"])
            return .absent
        } catch let e as GraphError where !e.endsTheRun {
            recordError(path.joined(separator: "/"), e)
            return .failed(try carried(path, ctx))
        }
    }

    /// The parent snapshot's directory at `path`, as it was (its tree and counts).
    func carried(_ path: [String], _ ctx: RunContext) throws -> DirBuilder? {
        guard let node = try parentNode(path, ctx), let tree = node.subtree, let id = Bytes32(hex: tree),
              let totals = try parentTreeTotals(tree, requireIntact: false) else { return nil }
        var out = DirBuilder(metadata: node.metadata)
        out.stored = (id, totals.files, totals.bytes)
        return out
    }

    /// One delta round of a collection, from its saved link or from `initial` on a first run.
    /// When Graph says the link expired (410), one full round from `initial` instead: `apply`
    /// is then told it sees a full listing (`full`), and the caller drops whatever it holds that
    /// the listing did not name.
    /// `collection`: a round of items stored in a tree of their own (not a folder hierarchy).
    func deltaRound(link: String?, initial: String, mailbox: String?, what path: [String], collection: Bool = true,
                    apply: ([JSONValue], _ full: Bool) async throws -> Void) async throws -> (link: String?, full: Bool) {
        if collection { collectionCounts.withLock { $0.rounds += 1 } }
        do {
            return (try await client.pages(link ?? initial, mailbox: mailbox) { page in
                CollectionActivity.noteListed(items: page.count, full: false)
                try await apply(page, false)
            }, false)
        } catch let e as GraphError where e.code == .syncStateExpired {
            try CollectionActivity.checkFullListing()
            logger.info("delta token expired; enumerating again", metadata: ["path": "\(path.joined(separator: "/"))"])
            collectionCounts.withLock { $0.resets += 1 }
            return (try await client.pages(initial, mailbox: mailbox) { page in
                CollectionActivity.noteListed(items: page.count, full: true)
                try await apply(page, true)
            }, true)
        }
    }

    /// Fetches items `options.concurrentItems` at a time. A Graph error is the item's own
    /// outcome (recorded, retried next run); any other error (the engine's) ends the run.
    func fetchAll(_ items: [(String, JSONValue)], _ fetch: @escaping @Sendable (String, JSONValue) async throws -> TreeNode) async throws -> [(String, Swift.Result<TreeNode, GraphError>)] {
        try await withThrowingTaskGroup(of: (String, Swift.Result<TreeNode, GraphError>).self) { group in
            var out: [(String, Swift.Result<TreeNode, GraphError>)] = []
            var running = 0
            for (id, json) in items {
                if running >= options.concurrentItems, let r = try await group.next() {
                    out.append(r)
                    running -= 1
                }
                running += 1
                group.addTask {
                    do { return (id, .success(try await fetch(id, json))) } catch let e as GraphError { return (id, .failure(e)) }
                }
            }
            for try await r in group { out.append(r) }
            return out
        }
    }

    /// Stores one item's content from a byte stream; returns its file node. `bulk`: a drive
    /// file, which yields the chunker threads to mailbox content (``ChunkerPool``).
    func storeContent(name: String, metadata: [String: String], modified: Date?, bulk: Bool = false,
                      _ produce: (StreamFeed) async throws -> Void, _ ctx: RunContext) async throws -> TreeNode {
        if let node = reuse(name: name, metadata: metadata, ctx) { return node }
        let key = Self.journalKey(name: name, metadata: metadata)
        let (ids, size) = try await ctx.pool.store(bulk: bulk, produce)
        var node = TreeNode(name: name, kind: .file)
        node.content = ids.map(\.hex)
        node.size = size
        node.mode = 0o644
        node.mtimeNs = modified.map { Int64($0.timeIntervalSince1970 * 1e9) }
        node.metadata = metadata
        countDownload(size)
        ctx.journal.record(key, node)
        return node
    }
}

/// What every part of one run shares.
struct RunContext: Sendable {
    let session: BackupSession
    let pool: ChunkerPool
    let parentRoot: Tree?
    /// Levels of a composed parent's root that are not stored (``M365Backup/ComposedParent``).
    let composedLevels: [String: Tree]
    let journal: DownloadJournal
    /// Message bodies held in memory at once, across all mailboxes.
    let messageSlots = AsyncLimiter(64)
}

extension M365Backup {
    /// The parent snapshot's tree at `path`, if there is one.
    func parentTree(_ path: [String], _ ctx: RunContext) throws -> Tree? {
        guard var tree = ctx.parentRoot else { return nil }
        for name in path {
            guard let node = tree.node(named: name), node.kind == .dir, let sub = node.subtree else { return nil }
            tree = try ctx.composedLevels[sub] ?? loadParentTree(sub)
        }
        return tree
    }

    /// The parent snapshot's directory node at `path`, if there is one.
    func parentNode(_ path: [String], _ ctx: RunContext) throws -> TreeNode? {
        guard let last = path.last, let tree = try parentTree(Array(path.dropLast()), ctx),
              let node = tree.node(named: last), node.kind == .dir else { return nil }
        return node
    }

    /// Reads a tree of the parent snapshot (a large directory whole).
    func loadParentTree(_ id: String) throws -> Tree {
        try withOpener { try repository.loadTree(id, using: $0) }
    }

    /// Runs `body` with an opener no other reader is using (the repository's own is not safe
    /// for concurrent use; the index does not change during a backup).
    func withOpener<T>(_ body: (BlobOpener) throws -> T) throws -> T {
        let box = openers.withLock { $0.popLast() } ?? OpenerBox(BlobOpener(key: repository.key))
        defer { openers.withLock { $0.append(box) } }
        return try body(box.opener)
    }

    /// ``GraphDate/parse(_:)`` of an optional string.
    static func date(_ s: String?) -> Date? { s.flatMap { GraphDate.parse($0) } }
}

/// A ``BlobOpener`` passed between tasks through ``M365Backup``'s pool: only the task that took
/// it from the pool uses it.
// @unchecked Sendable: only the task that took it from the pool uses its opener
final class OpenerBox: @unchecked Sendable {
    let opener: BlobOpener
    init(_ opener: BlobOpener) { self.opener = opener }
}
