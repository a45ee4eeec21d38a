import ArgumentParser
import Foundation
import VaultlineCore

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Free the space of data no snapshot references (two phases; safe beside running backups).",
        discussion: """
            Each run marks unreferenced packs (and repacks packs used below --repack-below), \
            taking them out of the index, and deletes what an earlier run marked once it is \
            older than --grace and every backup that started before it has finished. Run it \
            after `forget`, e.g. daily; space comes back one run later. Only one prune runs at a \
            time; backups may run alongside. Safe against kill -9 at any point.
            """)

    @OptionGroup var repository: RepositoryOptions
    @Option(help: "How long marked packs wait before deletion: 6h (default), 0 to delete on the next run.") var grace = "6h"
    @Option(help: "Repack packs with less than this share of their bytes in use (0–1).") var repackBelow = 0.8
    @Flag(help: "Only report what would be marked and deleted.") var dryRun = false

    func run() throws {
        try reporting {
            var options = Pruner.Options()
            options.grace = try parseDuration(grace, option: "--grace")
            guard (0...1).contains(repackBelow) else { throw VaultlineError(.invalidArgument, "--repack-below must be between 0 and 1") }
            options.repackBelowUsage = repackBelow
            options.dryRun = dryRun
            let repo = try repository.open()
            let r = try Pruner(repository: repo, options: options).run()
            if repository.json { try printJSON(r); return }
            let verb = dryRun ? "would be" : "were"
            print("\(r.snapshots) snapshots reference \(r.referencedBlobs) blobs in \(r.packs) packs")
            print("deleted: \(r.packsDeleted) packs marked by earlier runs (\(formatBytes(r.bytesFreed)) freed)\(r.packsReindexed > 0 ? ", \(r.packsReindexed) packs kept: a snapshot uses them" : "")")
            print("marked: \(r.packsMarked) packs \(verb) taken out of the index (\(formatBytes(r.bytesMarked)) unreferenced); \(r.packsRepacked) repacked, \(r.blobsCopied) blobs (\(formatBytes(r.bytesCopied))) copied")
            for w in r.plansWaiting { print("waiting: \(w)") }
            print(String(format: "took %.2f s", r.seconds))
        }
    }
}
