import ArgumentParser
import Foundation
import GraphSimulator
import VaultlineCore
import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

extension Debug {
    /// Measures how soon `m365 serve` has each change of a tenant that keeps changing, at site A
    /// and at site B (tools/bench/rpo). The simulator runs in this process; the service and
    /// site B's receiver run as subprocesses of this binary, so that they can be killed.
    struct RPO: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rpo",
            abstract: "Measure the time from each change in a simulated tenant to a snapshot at site A and at site B.",
            discussion: """
                Starts the Graph simulator, a site-B receiver and `m365 serve --replicate-to`, waits \
                for the first snapshot, then changes the tenant at --rate changes a second (new, \
                read and deleted messages, edited files) for --seconds. With --faults, in the same \
                run: a throttling storm (every 3rd request answered 429 for a tenth of the run), \
                every delta token expired, one kill -9 of the service (restarted 2 s later) and \
                site B stopped for a tenth of the run. Then it waits until every change is at both \
                sites and reports, per change, the time until the first snapshot that holds it \
                (by the delta links in the snapshot's source state) was written at each site.
                """)

        @Option(help: "Seconds of changes.") var seconds = 120.0
        @Option(help: "Changes per second (Poisson).") var rate = 5.0
        @Option(help: "Users in the tenant.") var users = 20
        @Option(help: "Messages per mailbox.") var messages = 40
        @Option(help: "Drive files per user.") var files = 10
        @Flag(help: "Throttling, expired delta tokens, a kill -9 of the service and a cut to site B, in the run.") var faults = false
        @Option(help: "The service's --rpo.") var rpo = 300.0
        @Option(help: "The service's --commit-interval.") var commitInterval = 60.0
        @Option(help: "The service's --mail-interval.") var mailInterval = 30.0
        @Option(help: "The service's --drive-interval.") var driveInterval = 45.0
        @Option(help: "The service's --debounce.") var debounce = 5.0
        @Option(help: "Working directory (recreated; default: a new one under the temporary directory).") var dir: String?
        @Flag(help: "Print the report as JSON.") var json = false

        func run() async throws {
            try await reporting {
                let base = dir ?? NSTemporaryDirectory() + "vaultline-rpo-\(getpid())"
                try? FileManager.default.removeItem(atPath: base)
                try FileSystem.makeDirectories(base, mode: 0o700)
                let bench = try await RPOBench(self, base: base)
                let report: RPOBench.Report
                do { report = try await bench.run() } catch {
                    await bench.stop()
                    throw error
                }
                await bench.stop()
                if json { try printJSON(report) } else { print(report.text) }
                if dir == nil { try? FileManager.default.removeItem(atPath: base) }
                if report.lost > 0 { throw ExitCode(1) }
            }
        }
    }
}
