import ArgumentParser
import VaultlineCore

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Repair repository structures.", subcommands: [Index.self])

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
            let removed = try RepositoryLock.removeStale(LocalBackend(root: try repository.repositoryPath))
            print("removed \(removed.count) stale locks")
        }
    }
}
