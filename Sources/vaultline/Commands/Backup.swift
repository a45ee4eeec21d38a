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

    func run() throws {
        try reporting {
            let repo = try repository.open()
            var options = DirectoryBackup.Options(paths: paths)
            options.tags = tag
            options.force = force
            options.parent = parent
            options.noParent = noParent
            let line = ProgressLine()
            let job = DirectoryBackup(repository: repo, options: options) { p in
                line.update("\(p.files) files, \(formatBytes(p.bytes)) read, \(formatBytes(UInt64(Double(p.bytes) / max(line.elapsed, 0.001))))/s  \(p.currentPath)")
            }
            let result = try job.run()
            line.done()
            let s = result.snapshot.stats
            if repository.json {
                try printJSON(BackupSummary(snapshot: result.snapshotID, stats: s, errors: result.snapshot.errors, partial: result.snapshot.partial))
            } else {
                print("snapshot \(result.snapshotID.prefix(8)) saved")
                print("  files: \(s.files) (\(s.filesRead) read), dirs: \(s.dirs), \(formatBytes(s.totalBytes)) in total")
                print("  added: \(s.newBlobs) blobs, \(formatBytes(s.newRawBytes)) raw, \(formatBytes(s.newStoredBytes)) stored")
                print(String(format: "  took %.2f s, %@/s read", s.durationSeconds, formatBytes(UInt64(Double(s.bytesRead) / max(s.durationSeconds, 0.001)))))
                for e in result.snapshot.errors { print("  could not back up \(e.path): \(e.message)") }
            }
            if result.snapshot.partial { throw ExitCode(3) }
        }
    }
}

struct BackupSummary: Encodable {
    var snapshot: String
    var stats: Snapshot.Stats
    var errors: [Snapshot.ItemError]
    var partial: Bool
}
