import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineS3

/// Site B's own maintenance of a repository in an Object-Lock bucket.
struct Bucket: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Maintain a site-B bucket (Object Lock).", subcommands: [ExtendLocks.self])

    struct ExtendLocks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "extend-locks",
            abstract: "Extend the COMPLIANCE retention of every object the bucket's snapshots need.",
            discussion: """
                Run at site B with site B's credentials (site A's need no right to do this). \\
                Opens the repository with its password, finds every snapshot, pack, index file, \\
                key slot and the config that the snapshots need, and sets their retain-until \\
                date to --lock-days from now where it ends within --renew-within-days. Objects \\
                nothing needs keep their date and expire.
                """)

        @OptionGroup var repository: RepositoryOptions
        @Option(help: "New retention, in days from now.") var lockDays = 30
        @Option(help: "Extend only objects whose retention ends within this many days.") var renewWithinDays = 7

        func run() throws {
            try reporting {
                guard lockDays >= 1 && lockDays <= 36_500 else { throw VaultlineError(.invalidArgument, "--lock-days must be 1…36500") }
                guard renewWithinDays >= 0 && renewWithinDays <= lockDays else {
                    throw VaultlineError(.invalidArgument, "--renew-within-days must be 0…--lock-days")
                }
                guard let backend = try repository.s3Backend() else {
                    throw VaultlineError(.invalidArgument, "extend-locks works on an s3: repository")
                }
                let repo = try Repository.open(backend: backend, password: try repository.password(), name: try repository.repositoryPath)
                let report = try RetentionExtender(
                    repository: repo, backend: backend, retainFor: TimeInterval(lockDays) * 86_400,
                    renewWithin: TimeInterval(renewWithinDays) * 86_400
                ).run()
                if repository.json {
                    try printJSON(report)
                } else {
                    print("checked \(report.objectsChecked) objects the snapshots need: \(report.objectsExtended) extended, \(report.objectsNewlyLocked) locked for the first time, to \(lockDays) days from now (\(String(format: "%.1f", report.seconds)) s)")
                }
            }
        }
    }
}
