import ArgumentParser
import VaultlineCore

@main
struct Vaultline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vaultline",
        abstract: "Deduplicating, encrypted backup of Microsoft 365 and local data.",
        discussion: """
            Repository: --repo or VAULTLINE_REPOSITORY. Password: --password-file, \
            VAULTLINE_PASSWORD_FILE or VAULTLINE_PASSWORD.
            Exit status: 0 ok; 1 error; 3 backup finished but some items could not be read; 4 backup finished and its snapshot is flagged (possible ransomware); \
            10 no repository; 11 wrong password; 12 repository locked; 13 damage found; 64 usage.
            """,
        version: "0.1.0",
        subcommands: [
            Init.self, Backup.self, Snapshots.self, Ls.self, Find.self, Restore.self, Check.self, Cat.self,
            Stats.self, Key.self, Forget.self, Prune.self, Scrub.self, Repair.self, Unlock.self, Debug.self, Demo.self,
            Site.self, Replica.self, Replicate.self, Bucket.self, M365.self, GraphSim.self,
        ])

    /// ArgumentParser's own entry, after the allocator is tuned (before any thread allocates).
    static func main() async {
        Memory.tuneAllocator()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
