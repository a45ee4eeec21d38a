import ArgumentParser
import VaultlineCore

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the repository's structure (and with --read-data, every byte).",
        discussion: "Exit status 13 when damage is found; each problem names the file it is in.")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Read every pack: hash, authenticate, decompress and re-id every blob.")
    var readData = false

    func run() throws {
        try reporting {
            let repo = try repository.open()
            let lock = try RepositoryLock.acquire(repo.backend, exclusive: false, command: "check")
            defer { lock.release() }
            let report = try Checker(repository: repo).run(readData: readData)
            if repository.json {
                try printJSON(report)
            } else {
                print("checked \(report.indexFiles) index files, \(report.packs) packs, \(report.snapshots) snapshots, \(report.trees) trees, \(report.blobs) blob references")
                if readData { print("read \(formatBytes(report.bytesRead)) of pack data") }
                for w in report.warnings { print("warning: \(w)") }
                for e in report.errors { print("error: \(e)") }
                print(report.ok ? "no errors were found" : "\(report.errors.count) errors found")
            }
            if !report.ok { throw ExitCode(13) }
        }
    }
}
