import Foundation

/// `vaultline prune`: frees the space of data no snapshot references, in two phases, so that a
/// backup running meanwhile is never harmed and a `kill -9` at any point loses nothing.
///
/// Mark (every run): walk every snapshot; packs none of whose blobs is referenced, and packs
/// in use below `repackBelowUsage` (their used blobs are first copied into new packs), are
/// taken out of the index — new index files are written, then the old ones removed — and
/// listed in a plan file under `prune/` with the time. New backups no longer see those blobs.
///
/// Delete (a later run): a plan is carried out once it is older than `grace` and no backup
/// that started before it still runs (its lock's creation time). Before deleting, every
/// snapshot is walked again; a pack that holds a blob some snapshot references and the index
/// lacks (a backup that deduplicated against it before the plan) is indexed again instead.
/// Backups do their part when they finish (``Repository/reindexAfterConcurrentPrune``).
///
/// Crash safety: every step adds before it removes (packs before index, index before the old
/// index, plan before deletion), and a pack left out of both index and plans by a crash is
/// marked by the next run.
public final class Pruner {
    public struct Options: Sendable {
        /// A plan waits at least this long before its packs are deleted.
        public var grace: TimeInterval = 6 * 3600
        /// Repack packs with less than this share of their bytes in use.
        public var repackBelowUsage = 0.8
        public var dryRun = false
        /// Site B (`replica prune`): the retention lock, and the replica's folder, where every
        /// name deleted is first recorded (``PrunedNames``) so the receiver never takes it again.
        public var retention: RetentionLock?
        public var replicaPath: String?
        public init() {}
    }

    public struct Report: Codable, Sendable {
        public var snapshots = 0
        public var referencedBlobs = 0
        public var packs = 0
        public var packsMarked = 0
        public var bytesMarked: UInt64 = 0
        public var packsRepacked = 0
        public var blobsCopied = 0
        public var bytesCopied: UInt64 = 0
        public var packsDeleted = 0
        public var bytesFreed: UInt64 = 0
        public var packsReindexed = 0
        public var plansCarriedOut = 0
        /// Plans not yet carried out, with why.
        public var plansWaiting: [String] = []
        public var indexFilesWritten = 0
        public var indexFilesRemoved = 0
        public var seconds = 0.0
        public var dryRun = false
    }

    /// A plan file's content (plain JSON, named by its SHA-256; docs/FORMAT.md "Prune plans").
    struct Plan: Codable {
        var version = 1
        var time: Date
        var packs: [String]
    }

    let repository: Repository
    let options: Options
    private var report = Report()

    public init(repository: Repository, options: Options) {
        self.repository = repository
        self.options = options
    }

    /// Index files a prune leaves unmerged beyond twice the fewest that could hold the index.
    public static let indexFilesAllowedOverMinimum = 8

    public func run() throws -> Report {
        let start = MonotonicClock.nanoseconds()
        let backend = repository.backend
        let lock = try RepositoryLock.acquire(backend, mode: .maintenance, command: "prune")
        defer { lock.release() }
        report = Report()
        report.dryRun = options.dryRun

        // Which plans may be carried out: old enough, and no backup from before them still runs.
        var plans: [(name: String, plan: Plan)] = []
        for name in try backend.list(.plan).sorted() {
            let plan = try StoredJSON.decode(Plan.self, from: try backend.read(.plan, name), object: "prune/\(name)")
            plans.append((name, plan))
        }
        let others = try RepositoryLock.liveLocks(backend).filter { $0.name != lock.name && $0.record.mode != .maintenance }
        var ripe: [(name: String, plan: Plan)] = []
        for p in plans {
            let age = Date().timeIntervalSince(p.plan.time)
            if age < options.grace {
                report.plansWaiting.append("prune/\(p.name.prefix(12)): \(Int(options.grace - age)) s of grace left")
            } else if let busy = others.first(where: { ($0.record.created ?? .distantPast) < p.plan.time }) {
                report.plansWaiting.append("prune/\(p.name.prefix(12)): \(busy.record.command) (pid \(busy.record.pid) on \(busy.record.host)) started before it and still runs")
            } else {
                ripe.append(p)
            }
        }

        // What is referenced now: every snapshot, every tree; any unreadable one stops the prune.
        // The snapshots are listed before the index is read: a backup writes its index files
        // before its snapshot, so every snapshot listed has its index read below. (Read the
        // other way round, a backup finishing in between left a snapshot whose trees the index
        // did not know, and the prune stopped: 1 run in 3 of the S3 writers test, 2026-12-03.)
        // A snapshot stored after the listing is not walked; its new packs are not in this
        // index, and what it shares with older packs is protected by the plans' grace and
        // the delete phase's check of running backups.
        let snapshots = try repository.listSnapshots()
        try repository.loadIndex()
        let index = repository.index
        var referenced = Set<Bytes32>()
        var walked = Set<String>()
        for (name, snapshot) in snapshots {
            do {
                try repository.reachableBlobs(from: snapshot.tree, into: &referenced)
            } catch {
                throw VaultlineError(.corrupt, "cannot read every tree of snapshot \(name.prefix(8)) (\(error)); prune deletes nothing until `check` passes", object: "snapshots/\(name)")
            }
            walked.insert(name)
        }
        report.snapshots = walked.count
        report.referencedBlobs = referenced.count

        try carryOut(ripe, index: index, referenced: referenced)
        let stillPlanned = Set(plans.filter { p in !ripe.contains { $0.name == p.name } }.flatMap(\.plan.packs))
        try mark(index: index, referenced: referenced, walked: walked, planned: stillPlanned)
        report.seconds = MonotonicClock.seconds(since: start)
        return report
    }

    // MARK: Delete phase

    private func carryOut(_ ripe: [(name: String, plan: Plan)], index: BlobIndex, referenced: Set<Bytes32>) throws {
        let backend = repository.backend
        let indexed = Set(index.packIDs.map(\.id.hex))
        for (name, plan) in ripe {
            var deleted: [String] = [], locked: [String] = []
            for pack in plan.packs {
                guard !indexed.contains(pack), let size = try backend.stat(.pack, pack) else { continue }
                // A blob some snapshot uses that the index lacks: index the pack again.
                if let (salt, entries) = try? PackReader.readHeader(backend: backend, pack: pack, key: repository.key),
                   entries.contains(where: { referenced.contains($0.id) && !index.contains($0.id) }),
                   let id = Bytes32(hex: pack) {
                    if !options.dryRun { try repository.writeIndexFile([IndexFile.Pack(id: id, salt: salt, entries: entries)]) }
                    report.packsReindexed += 1
                    continue
                }
                if let lock = options.retention, lock.holds(arrival: try backend.modified(.pack, pack)) {
                    locked.append(pack)
                    continue
                }
                deleted.append(pack)
                report.packsDeleted += 1
                report.bytesFreed += UInt64(size)
            }
            if !locked.isEmpty {
                report.plansWaiting.append("prune/\(name.prefix(12)): \(locked.count) packs arrived less than \(options.retention?.days ?? 0) days ago (retention lock); they stay until it expires")
            }
            guard !options.dryRun else { continue }
            try delete(.pack, deleted)
            if !locked.isEmpty {
                // The rest of the plan waits for the lock, under the plan's own time.
                let bytes = try StoredJSON.encode(Plan(time: plan.time, packs: locked.sorted()))
                try backend.writeIfAbsent(.plan, SHA256.hash(bytes).hex, bytes)
            }
            if SHA256.hash(try StoredJSON.encode(Plan(time: plan.time, packs: locked.sorted()))).hex != name || locked.isEmpty {
                try backend.delete(.plan, name)
            }
            report.plansCarriedOut += locked.isEmpty ? 1 : 0
        }
    }

    /// Deletes files, recording their names first at a replica.
    private func delete(_ kind: FileKind, _ names: [String]) throws {
        if let path = options.replicaPath { try PrunedNames.append(repository: path, kind, names) }
        for name in names { try repository.backend.delete(kind, name) }
    }

    // MARK: Mark phase

    private func mark(index: BlobIndex, referenced: Set<Bytes32>, walked: Set<String>, planned: Set<String>) throws {
        let backend = repository.backend
        let oldIndexFiles = repository.indexFiles
        // Every pack the index files name, once, with all its entries.
        var packs: [Bytes32: IndexFile.Pack] = [:]
        for name in oldIndexFiles {
            for p in try repository.readIndexFile(name) where packs[p.id] == nil { packs[p.id] = p }
        }
        let onDisk = try backend.list(.pack)
        report.packs = onDisk.count
        // At a replica, packs its own prune deleted may still be named by index files that
        // arrived from site A since: they leave the index quietly.
        let pruned = options.replicaPath.map { PrunedNames.load(repository: $0)[.pack] ?? [] } ?? []
        var droppedQuietly = 0
        if !pruned.isEmpty {
            let present = Set(onDisk)
            for id in packs.keys where pruned.contains(id.hex) && !present.contains(id.hex) {
                packs[id] = nil
                droppedQuietly += 1
            }
        }
        var drop: [String] = []      // out of the index, into the plan
        var repack: [IndexFile.Pack] = []
        var keep: [IndexFile.Pack] = []
        for (id, pack) in packs.sorted(by: { $0.key < $1.key }) {
            // A blob is used in this pack if a snapshot references it and the index places it here.
            var usedBytes: UInt64 = 0, totalBytes: UInt64 = 0
            for e in pack.entries {
                totalBytes += UInt64(e.storedLength)
                if referenced.contains(e.id), index.lookup(e.id)?.pack == id { usedBytes += UInt64(e.storedLength) }
            }
            if usedBytes == 0 {
                drop.append(id.hex)
                report.bytesMarked += totalBytes
            } else if Double(usedBytes) < Double(totalBytes) * options.repackBelowUsage {
                repack.append(pack)
            } else {
                keep.append(pack)
            }
        }
        // Packs in no index and no plan: left by a crash (or a backup that has not indexed them
        // yet: the delete phase waits for it to end, and skips packs indexed by then). Index
        // files written since the index was loaded (running backups, the delete phase) count.
        var known = Set(packs.keys.map(\.hex))
        for name in try backend.list(.index) where !oldIndexFiles.contains(name) {
            for p in try repository.readIndexFile(name) { known.insert(p.id.hex) }
        }
        for name in onDisk where !known.contains(name) && !planned.contains(name) {
            drop.append(name)
            report.bytesMarked += UInt64(max(0, try backend.stat(.pack, name) ?? 0))
        }
        guard !options.dryRun else {
            report.packsMarked = drop.count + repack.count
            report.packsRepacked = repack.count
            return
        }
        // Many writers (and many small backups) each leave index files of a few packs: past
        // twice the fewest files that could hold the index (plus eight), they are merged.
        let fewest = (packs.count + IndexRepair.packsPerFile - 1) / IndexRepair.packsPerFile
        let merge = oldIndexFiles.count > 2 * fewest + Self.indexFilesAllowedOverMinimum
        guard !drop.isEmpty || !repack.isEmpty || droppedQuietly > 0 || merge else { return }

        // Copy the used blobs of the packs to repack into new packs (durable before indexed).
        let copied = try copyUsedBlobs(of: repack, index: index, referenced: referenced)
        drop += repack.map(\.id.hex)
        report.packsRepacked = repack.count

        // The new index: kept packs and the new ones; written before the old files go.
        var written = Set<String>()
        let all = keep + copied
        for start in stride(from: 0, to: all.count, by: IndexRepair.packsPerFile) {
            written.insert(try repository.writeIndexFile(Array(all[start..<min(all.count, start + IndexRepair.packsPerFile)])))
        }
        report.indexFilesWritten = written.count
        var removable: [String] = []
        for name in oldIndexFiles where !written.contains(name) {
            // Under the retention lock, an old index file stays (its packs then stay indexed).
            if let lock = options.retention, lock.holds(arrival: try backend.modified(.index, name)) { continue }
            removable.append(name)
        }
        try delete(.index, removable)
        report.indexFilesRemoved = removable.count

        // Snapshots written since the walk (backups that finished meanwhile) keep what they use.
        let fresh = BlobIndex()
        for p in all { fresh.add(pack: p.id, salt: p.salt, entries: p.entries) }
        fresh.compact()
        var dropped = Set(drop)
        // Their trees may be in packs indexed since this prune loaded the index (a backup that
        // finished meanwhile): those index files are read in first, or the walk would not
        // find the trees.
        for name in try backend.list(.index) where !oldIndexFiles.contains(name) && !written.contains(name) {
            for p in try repository.readIndexFile(name) where !dropped.contains(p.id.hex) {
                index.add(pack: p.id, salt: p.salt, entries: p.entries)
            }
        }
        index.compact()
        for (name, snapshot) in try repository.listSnapshots() where !walked.contains(name) {
            var blobs = Set<Bytes32>()
            try repository.reachableBlobs(from: snapshot.tree, into: &blobs)
            for id in blobs where !fresh.contains(id) {
                guard let pack = index.lookup(id)?.pack, dropped.contains(pack.hex), let entry = packs[pack] else { continue }
                try repository.writeIndexFile([entry])
                fresh.add(pack: entry.id, salt: entry.salt, entries: entry.entries)
                fresh.compact()
                dropped.remove(pack.hex)
                report.packsReindexed += 1
            }
        }
        let planPacks = drop.filter { dropped.contains($0) }
        report.packsMarked = planPacks.count
        if !planPacks.isEmpty {
            let bytes = try StoredJSON.encode(Plan(time: Date(), packs: planPacks.sorted()))
            try backend.writeIfAbsent(.plan, SHA256.hash(bytes).hex, bytes)
        }
    }

    /// Reads each pack once and seals its used blobs into new packs (still compressed: they
    /// are decrypted and sealed again, not recompressed). Returns the new packs' index entries.
    private func copyUsedBlobs(of packs: [IndexFile.Pack], index: BlobIndex, referenced: Set<Bytes32>) throws -> [IndexFile.Pack] {
        guard !packs.isEmpty else { return [] }
        let backend = repository.backend, key = repository.key
        let opener = BlobOpener(key: key)
        var writers: [BlobType: PackWriter] = [:]
        var out: [IndexFile.Pack] = []
        func flush(_ w: PackWriter) throws {
            let pack = try w.finish()
            out.append(IndexFile.Pack(id: pack.id, salt: pack.salt, entries: pack.entries))
        }
        for pack in packs {
            let bytes = try backend.read(.pack, pack.id.hex)
            guard SHA256.hash(bytes) == pack.id else {
                throw VaultlineError(.corrupt, "pack to repack is damaged; run `repair --from` first", object: "packs/\(pack.id.hex)")
            }
            for e in pack.entries where referenced.contains(e.id) && index.lookup(e.id)?.pack == pack.id {
                let type = e.type
                let writer = writers[type] ?? PackWriter(type: type, key: key, backend: backend, targetSize: repository.config.packSize)
                writers[type] = writer
                let payload = try bytes.withUnsafeBytes {
                    try opener.decrypt(
                        sealed: UnsafeRawBufferPointer(rebasing: $0[Int(e.offset)..<Int(e.offset + e.storedLength)]),
                        id: e.id, salt: pack.salt, offset: e.offset, object: "packs/\(pack.id.hex)")
                }
                try payload.withUnsafeBytes { try writer.add(id: e.id, codec: e.codec, rawLength: Int(e.rawLength), payload: $0) }
                report.blobsCopied += 1
                report.bytesCopied += UInt64(e.storedLength)
                if writer.isFull { try flush(writer) }
            }
        }
        for w in writers.values where !w.isEmpty { try flush(w) }
        return out
    }
}
