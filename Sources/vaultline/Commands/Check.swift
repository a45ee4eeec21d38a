import ArgumentParser
import VaultlineCore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the repository's structure (and with --read-data, every byte).",
        discussion: """
            Exit status 13 when damage is found; each problem names the file it is in, and \
            every snapshot item that loses data is listed (`--json`: "affected").
            """)

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Read packs: hash, authenticate, decompress and re-id every blob, on every core.")
    var readData = false

    @Option(help: "With --read-data, read only part of the packs: N/T (part N of T; T runs cover every pack once) or P% (a fixed share).")
    var subset: String?

    @Option(help: "Threads reading packs (default: one per core).")
    var workers: Int?

    func run() throws {
        try reporting {
            var options = Checker.Options(readData: readData || subset != nil)
            if let subset { options.subset = try VerificationSubset(parsing: subset) }
            if let workers { options.workers = max(1, workers) }
            let repo = try repository.open()
            let lock = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "check")
            defer { lock.release() }
            let report = try Checker(repository: repo).run(options)
            if repository.json {
                try printJSON(report)
            } else {
                print("checked \(report.indexFiles) index files, \(report.packs) packs, \(report.snapshots) snapshots, \(report.trees) trees, \(report.blobs) blob references")
                if report.readData {
                    let rate = Double(report.bytesRead) / max(report.seconds, 0.001)
                    print("read \(report.packsRead) packs, \(formatBytes(report.bytesRead)), \(report.blobsVerified) blobs verified in \(String(format: "%.1f", report.seconds)) s (\(formatBytes(UInt64(rate)))/s)")
                }
                for w in report.warnings { print("warning: \(w)") }
                for e in report.errors { print("error: \(e)") }
                if report.damagedBlobs > 0 { print("\(report.damagedBlobs) blobs are damaged or missing") }
                for a in report.affected {
                    print("snapshot \(a.snapshot.prefix(8)) (\(formatDate(a.time))) loses data in \(a.paths.count) items:")
                    for p in a.paths.prefix(50) { print("  \(p)") }
                    if a.paths.count > 50 { print("  … and \(a.paths.count - 50) more (--json lists all)") }
                }
                print(report.ok ? "no errors were found" : "\(report.errors.count) errors found")
            }
            if !report.ok { throw ExitCode(13) }
        }
    }
}
