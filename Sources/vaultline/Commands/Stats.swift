import ArgumentParser
import VaultlineCore

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show repository size, deduplication and index memory.")

    @OptionGroup var repository: RepositoryOptions

    struct Output: Encodable {
        var snapshots: Int
        var packs: Int
        var packBytes: Int64
        var dataBlobs: Int
        var treeBlobs: Int
        var uniqueRawBytes: UInt64
        var storedBytes: UInt64
        var snapshotBytesTotal: UInt64
        var deduplicationRatio: Double
        var compressionRatio: Double
        var indexBytesPerBlob: Double
        /// Index files read at open: many writers each leave their own; prune merges them.
        var indexFiles: Int
    }

    func run() throws {
        try reporting {
            let repo = try repository.open()
            try repo.loadIndex()
            let totals = repo.index.totals()
            let snaps = try repo.listSnapshots()
            let packs = try repo.backend.sizes(.pack)
            let packBytes = packs.values.reduce(0, +)
            let data = totals[.data] ?? .init(), tree = totals[.tree] ?? .init()
            let logical = snaps.reduce(UInt64(0)) { $0 + $1.snapshot.stats.totalBytes }
            let mem = repo.index.memoryFootprint
            let out = Output(
                snapshots: snaps.count, packs: packs.count, packBytes: packBytes, dataBlobs: data.blobs, treeBlobs: tree.blobs,
                uniqueRawBytes: data.rawBytes, storedBytes: data.storedBytes + tree.storedBytes, snapshotBytesTotal: logical,
                deduplicationRatio: data.rawBytes == 0 ? 1 : Double(logical) / Double(data.rawBytes),
                compressionRatio: data.storedBytes == 0 ? 1 : Double(data.rawBytes) / Double(data.storedBytes),
                indexBytesPerBlob: repo.index.count == 0 ? 0 : Double(mem.entries + mem.packs) / Double(repo.index.count),
                indexFiles: repo.indexFiles.count)
            if repository.json { try printJSON(out); return }
            print("snapshots:            \(out.snapshots)")
            print("packs:                \(out.packs), \(formatBytes(UInt64(out.packBytes)))")
            print("blobs:                \(out.dataBlobs) data, \(out.treeBlobs) tree")
            print("content in snapshots: \(formatBytes(logical))")
            print("unique content:       \(formatBytes(data.rawBytes)) (dedup ratio \(String(format: "%.2f", out.deduplicationRatio)))")
            print("stored:               \(formatBytes(out.storedBytes)) (compression ratio \(String(format: "%.2f", out.compressionRatio)))")
            print("index memory:         \(String(format: "%.1f", out.indexBytesPerBlob)) bytes per blob")
            print("index files:          \(out.indexFiles) loaded at open")
        }
    }
}
