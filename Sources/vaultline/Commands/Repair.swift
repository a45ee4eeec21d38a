import ArgumentParser
import Foundation
import Logging
import VaultlineCore
import VaultlineReplication

struct Repair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Repair damaged or missing files from the other site, the index, or snapshots.",
        subcommands: [FromPeer.self, Index.self, Snapshots.self], defaultSubcommand: FromPeer.self)

    struct FromPeer: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "files",
            abstract: "Fetch good copies of damaged and missing files from the other site (`repair --from HOST:PORT`).",
            discussion: """
                Re-hashes every file here; each whose SHA-256 differs from its name, and (with the \
                password) each pack the index names that is missing, is fetched from the peer's \
                receiver with the replication GET verb, verified by its hash and put in place. \
                Site A repairs from site B's `replica serve`; site B repairs from site A running \
                `replica serve --repository DIR` (read-only), with --keyless (no password at B). \
                Exit status 13 when some file could not be repaired.
                """)
        @OptionGroup var repository: RepositoryOptions
        @Option(help: "The other site's receiver, HOST:PORT.") var from: String
        @OptionGroup var identity: SiteIdentityOptions
        @Flag(help: "No password: repair only files whose hash is wrong (site B).") var keyless = false
        @Flag(help: "Also fetch every file the peer holds that is missing here (brings back what a prune removed here).") var allMissing = false
        @Flag(help: "Only list what would be fetched.") var dryRun = false
        @Option(help: "Log level for the structured log on stderr.") var logLevel = "warning"

        func run() async throws {
            try await reporting {
                let (host, port) = try parseHostPort(from, option: "--from")
                var options = PeerRepair.Options(host: host, port: port, identity: try identity.load())
                options.allMissing = allMissing
                options.dryRun = dryRun
                let key = keyless ? nil : try repository.open().key
                let summary = try await PeerRepair(
                    repositoryPath: try repository.localRepositoryPath, key: key, options: options,
                    logger: makeLogger("vaultline.repair", level: Logger.Level(rawValue: logLevel) ?? .warning)
                ).run()
                if repository.json {
                    try printJSON(summary)
                } else {
                    print("verified \(summary.filesVerified) files: \(summary.damaged.count) damaged, \(summary.missing.count) missing")
                    for f in summary.repaired { print("repaired \(f)") }
                    for f in summary.unavailable { print("not repaired: \(f)") }
                    if dryRun { for f in summary.damaged + summary.missing { print("would fetch \(f)") } }
                    print("fetched \(summary.repaired.count) files, \(formatBytes(summary.bytesFetched))")
                }
                if !summary.ok { throw ExitCode(13) }
            }
        }
    }

    struct Index: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rebuild the index from pack headers alone.")
        @OptionGroup var repository: RepositoryOptions

        func run() throws {
            try reporting {
                let repo = try repository.open()
                let r = try IndexRepair.run(repo)
                if repository.json { try printJSON(r); return }
                print("indexed \(r.blobs) blobs in \(r.packs) packs; wrote \(r.indexFilesWritten) index files, removed \(r.indexFilesRemoved)")
                for p in r.unreadablePacks { print("unreadable pack: \(p)") }
            }
        }
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove stale locks (dead processes, or older than 30 minutes).")
    @OptionGroup var repository: RepositoryOptions

    func run() throws {
        try reporting {
            let removed = try RepositoryLock.removeStale(try repository.backend())
            print("removed \(removed.count) stale locks")
        }
    }
}

extension Repair {
    struct Snapshots: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace snapshots that reference lost data by ones that mark exactly which items are damaged.",
            discussion: """
                For data lost at every site: run `repair --from` first. Damaged files keep their \
                name and metadata, lose their content and are marked; restore lists them and does \
                not write them. The old snapshot is removed once the new one is written.
                """)
        @OptionGroup var repository: RepositoryOptions
        @Flag(help: "Read every pack too, to find damaged (not only missing) data.") var readData = false
        @Flag(help: "Only list what would be marked.") var dryRun = false

        func run() throws {
            try reporting {
                let repo = try repository.open()
                let result = try SnapshotRepair.run(repo, readData: readData, dryRun: dryRun)
                if repository.json { try printJSON(result); return }
                if result.rewritten.isEmpty { print("no snapshot references lost data"); return }
                for r in result.rewritten {
                    print("snapshot \(r.old.prefix(8)) → \(r.new.map { String($0.prefix(8)) } ?? "(dry run)"): \(r.damagedItems.count) damaged items")
                    for item in r.damagedItems { print("  \(item)") }
                }
            }
        }
    }
}
