import ArgumentParser
import Foundation
import VaultlineCore

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Back up local directories or files.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: "Paths to back up.")
    var paths: [String]

    @Option(help: "Tag the snapshot (repeatable).")
    var tag: [String] = []

    @Flag(help: "Read every file again even if unchanged since the parent snapshot.")
    var force = false

    @Option(help: "Parent snapshot (default: latest of the same paths on this host).")
    var parent: String?

    @Flag(help: "Do not use a parent snapshot.")
    var noParent = false

    @OptionGroup var signal: SignalOptions

    func run() throws {
        try reporting {
            let repo = try repository.open()
            var options = DirectoryBackup.Options(paths: paths)
            options.tags = tag
            options.force = force
            options.parent = parent
            options.noParent = noParent
            options.signal = try signal.policy()
            let line = ProgressLine()
            let job = DirectoryBackup(repository: repo, options: options) { p in
                line.update("\(p.files) files, \(formatBytes(p.bytes)) read, \(formatBytes(UInt64(Double(p.bytes) / max(line.elapsed, 0.001))))/s  \(p.currentPath)")
            }
            let result = try job.run()
            line.done()
            let s = result.snapshot.stats
            if repository.json {
                try printJSON(BackupSummary(
                    snapshot: result.snapshotID, stats: s, errors: result.snapshot.errors, partial: result.snapshot.partial,
                    signal: result.snapshot.signal))
            } else {
                print("snapshot \(result.snapshotID.prefix(8)) saved")
                print("  files: \(s.files) (\(s.filesRead) read), dirs: \(s.dirs), \(formatBytes(s.totalBytes)) in total")
                print("  added: \(s.newBlobs) blobs, \(formatBytes(s.newRawBytes)) raw, \(formatBytes(s.newStoredBytes)) stored")
                print(String(format: "  took %.2f s, %@/s read", s.durationSeconds, formatBytes(UInt64(Double(s.bytesRead) / max(s.durationSeconds, 0.001)))))
                printSignal(result.snapshot)
                for e in result.snapshot.errors { print("  could not back up \(e.path): \(e.message)") }
            }
            try exitForOutcome(result.snapshot)
        }
    }
}

struct BackupSummary: Encodable {
    var snapshot: String
    var stats: Snapshot.Stats
    var errors: [Snapshot.ItemError]
    var partial: Bool
    var signal: Snapshot.ChangeSignal?
}

/// The ransomware-signal thresholds (docs/OPERATIONS.md, "Ransomware signal").
struct SignalOptions: ParsableArguments {
    @Option(help: "Flag the snapshot when at least this share of its new bytes does not compress (0–1; default 0.5).")
    var flagShare: Double?

    @Option(help: "…and those incompressible bytes are at least this many (default 1M).")
    var flagMinBytes: String?

    func policy() throws -> RansomwareSignal {
        var p = RansomwareSignal()
        if let flagShare {
            guard flagShare > 0, flagShare <= 1 else { throw VaultlineError(.invalidArgument, "--flag-share must be in (0, 1]") }
            p.minIncompressibleShare = flagShare
        }
        if let flagMinBytes { p.minIncompressibleBytes = UInt64(try parseRate(flagMinBytes)) }
        return p
    }
}

func printSignal(_ snapshot: Snapshot, indent: String = "") {
    guard let sig = snapshot.signal else { return }
    print("\(indent)  changed: \(sig.changedItems) items (\(String(format: "%.1f", sig.changedShare * 100))% of the parent's), \(formatBytes(sig.newBytes)) new, \(Int(sig.incompressibleShare * 100))% of it incompressible")
    if sig.flagged { print("\(indent)  FLAGGED: \(sig.reason ?? "possible ransomware"); forget keeps the last unflagged snapshot until `vaultline snapshots release`") }
}

/// Exit 4 for a flagged snapshot (it needs a look), else 3 for a partial one.
func exitForOutcome(_ snapshot: Snapshot) throws {
    if snapshot.isFlagged { throw ExitCode(4) }
    if snapshot.partial { throw ExitCode(3) }
}
