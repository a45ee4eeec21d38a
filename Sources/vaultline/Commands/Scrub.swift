import ArgumentParser
import Foundation
import Logging
import VaultlineCore

/// "90s", "45m", "12h", "30d", "2w" (a bare number is seconds).
func parseDuration(_ s: String, option: String) throws -> TimeInterval {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400]
    var text = Substring(s.lowercased()), scale = 1.0
    if let last = text.last, let u = units[last] { scale = u; text = text.dropLast() }
    guard let v = Double(text), v >= 0 else {
        throw VaultlineError(.invalidArgument, "\(option) must look like 90s, 45m, 12h, 30d or 2w, not \(s)")
    }
    return v * scale
}

struct Scrub: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the repository at a bounded rate, resuming where the last run stopped.",
        discussion: """
            Keyless (default): the SHA-256 of every file equals its name; no password needed, so \
            it runs at site B. --deep: also authenticate, decompress and re-id every blob (needs \
            the password). The cursor is kept in --state (default under $XDG_STATE_HOME/vaultline), \
            so a run stopped by --max-duration, a signal or a reboot continues where it stopped; \
            with --paced each run reads just what keeps one pass per --period on schedule. \
            Exit status 13 when damage is found; repair it with `vaultline repair --from`.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Verify blobs too (needs the password).") var deep = false
    @Option(help: "Cap on bytes read per second: 50M, 1G.") var limitRate: String?
    @Option(help: "Stop after this long, keeping the cursor: 2h, 30m.") var maxDuration: String?
    @Option(help: "A whole pass should take at most this long; warn otherwise (default 30d).") var period = "30d"
    @Flag(help: "Read only what keeps the pass on schedule for --period (for a frequent timer).") var paced = false
    @Option(help: "File holding the cursor.") var state: String?
    @Option(help: "Threads reading files (default: one per core).") var workers: Int?
    @Option(help: "Log level for the structured log on stderr.") var logLevel = "info"

    func run() throws {
        try reporting {
            let path = try repository.repositoryPath
            let backend = try repository.backend()
            let config = try RepositoryConfig.load(from: backend, path: path)
            let depth: Scrubber.Depth = deep ? .deep : .keyless
            var options = Scrubber.Options(statePath: state ?? Scrubber.defaultStatePath(repositoryID: config.id, depth: depth))
            options.depth = depth
            options.bytesPerSecond = try limitRate.map(parseRate)
            options.maxSeconds = try maxDuration.map { try parseDuration($0, option: "--max-duration") }
            options.period = try parseDuration(period, option: "--period")
            options.paced = paced
            if let workers { options.workers = max(1, workers) }
            let key = deep ? try repository.open().key : nil
            var log = makeLogger("vaultline.scrub", level: Logger.Level(rawValue: logLevel) ?? .info)
            log[metadataKey: "repository"] = "\(path)"
            log.info("scrub started", metadata: ["depth": "\(depth.rawValue)", "state": "\(options.statePath)"])
            let report = try Scrubber(backend: backend, key: key, options: options).run()
            for d in report.damaged { log.error("damaged file", metadata: ["file": "\(d.file)", "problem": "\(d.problem)"]) }
            log.info("scrub finished", metadata: [
                "files": "\(report.filesRead)", "bytes": "\(report.bytesRead)", "damaged": "\(report.damaged.count)",
                "pass": "\(Int(report.passFraction * 100))%", "seconds": "\(String(format: "%.1f", report.seconds))",
            ])
            if let w = report.warning { log.warning("\(w)") }
            if repository.json {
                try printJSON(report)
            } else {
                print("\(depth.rawValue) scrub: read \(report.filesRead) files, \(formatBytes(report.bytesRead)) in \(String(format: "%.1f", report.seconds)) s (\(formatBytes(UInt64(report.bytesPerSecond)))/s)")
                print(report.passCompleted
                      ? "pass complete: every file of the repository has been re-read"
                      : "pass \(Int(report.passFraction * 100))% done; the next run continues after \(report.cursor ?? "the start")")
                if let last = report.lastCompletedPass { print("last complete pass finished \(formatDate(last))") }
                if let w = report.warning { print("warning: \(w)") }
                for d in report.damaged { print("damaged: \(d.file): \(d.problem)") }
                print(report.ok ? "no damage found" : "\(report.damaged.count) damaged files (repair with `vaultline repair --from HOST:PORT`)")
            }
            if !report.ok { throw ExitCode(13) }
        }
    }
}
