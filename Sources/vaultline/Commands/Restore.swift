import ArgumentParser
import VaultlineCore
import VaultlineGraph

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore SNAPSHOT[:PATH] into a directory.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: "Snapshot id, prefix or 'latest', optionally followed by :PATH.")
    var reference: String

    @Option(help: "Directory to restore into (created if missing).")
    var target: String

    @Option(help: "files (as stored; mail as .eml), or mbox (one mbox file per mail folder).")
    var format = "files"

    func run() throws {
        try reporting {
            let repo = try repository.open()
            let (ref, path) = splitReference(reference)
            switch format {
            case "files", "eml": break
            case "mbox":
                let s = try MboxExport(repository: repo).export(snapshotID: try repo.resolveSnapshot(ref), path: path, target: target)
                if repository.json { try printJSON(s) } else {
                    print("wrote \(s.messages) messages in \(s.folders) mbox files, \(formatBytes(s.bytes)), into \(target)")
                }
                return
            default:
                throw VaultlineError(.invalidArgument, "unknown format \"\(format)\" (files, eml, mbox)")
            }
            let line = ProgressLine()
            let restorer = Restorer(repository: repo) { s in
                line.update("\(s.files) files, \(formatBytes(s.bytes)) restored")
            }
            try restorer.restore(snapshotID: try repo.resolveSnapshot(ref), path: path, target: target)
            line.done()
            let s = restorer.stats
            if repository.json {
                try printJSON(s)
            } else {
                print("restored \(s.files) files, \(s.dirs) dirs, \(s.symlinks) symlinks, \(formatBytes(s.bytes)) into \(target) in \(String(format: "%.2f", s.durationSeconds)) s")
                for d in s.damaged { print("not restored (lost at every site, marked by repair snapshots): \(d)") }
            }
            // Exit 3 as a partial backup does: the restore finished, but not every item is there.
            if !s.damaged.isEmpty { throw ExitCode(3) }
        }
    }
}
