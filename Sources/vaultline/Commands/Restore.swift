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

    @Option(help: "files (as stored; mail as .eml, events and contacts as Graph JSON), mbox (one mbox file per mail folder), ics (one iCalendar file per calendar) or vcf (one vCard file per contact folder).")
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
            case "ics", "vcf":
                let f: CalendarExport.Format = format == "ics" ? .ics : .vcf
                let s = try CalendarExport(repository: repo, format: f).export(snapshotID: try repo.resolveSnapshot(ref), path: path, target: target)
                if repository.json { try printJSON(s) } else {
                    print("wrote \(s.items) \(f == .ics ? "events" : "contacts") in \(s.files) .\(format) files, \(formatBytes(s.bytes)), into \(target)")
                }
                return
            default:
                throw VaultlineError(.invalidArgument, "unknown format \"\(format)\" (files, eml, mbox, ics, vcf)")
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
