import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineGraph

extension M365 {
    struct M365Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore",
            abstract: "Put mail, events, contacts and files of a snapshot back into Microsoft 365.",
            discussion: """
                SNAPSHOT:PATH names one service of a user, or a folder or item in it \
                (/users/<upn>/mail/…, /users/<upn>/calendar, /users/<upn>/calendars/…, \
                /users/<upn>/contacts/…, /users/<upn>/onedrive/…), or a library \
                (/sites/<site>/<library>/…); vaultline find lists paths. By default items go into \
                a new folder (a new calendar) "Restored items <date time>" with their paths below \
                it; --in-place puts them where they were. Mail is restored not as drafts, with its \
                dates; a file already equal to the backup's (size and QuickXorHash) is never \
                uploaded again. A killed or failed job \
                goes on where it stopped when the same command is run again (or --resume JOB). \
                Exit status 3: some items failed (listed); the rest were restored.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var graph: GraphOptions

        @Argument(help: "Snapshot id, prefix or 'latest', followed by :PATH; with --at, the PATH alone.")
        var reference: String

        @Option(help: "Restore PATH as it was at TIME (ISO 8601 or YYYY-MM-DD, UTC), from the newest snapshot at or before TIME that holds it, whichever worker wrote it.")
        var at: String?

        @Flag(help: "Restore into the original place instead of a new folder.")
        var inPlace = false

        @Flag(help: "Put back only what was deleted or differs from the snapshot, in place; what is equal is not touched.")
        var onlyChanged = false

        @Option(help: "skip (leave what is there; the default), copy (restore beside it as 'name 1.ext') or replace; with --only-changed the default is replace.")
        var collisions: String?

        @Option(help: "Restore into this user's OneDrive (UPN or id).")
        var toUser: String?

        @Option(help: "Restore a library into this site (id): its library of the same name, else its first.")
        var toSite: String?

        @Option(help: "Restore a library into this drive (id).")
        var toDrive: String?

        @Option(help: "The new folder's name (default 'Restored items YYYY-MM-DD HH.MM.SS', UTC).")
        var folderName: String?

        @Option(help: "Go on with this job (the id a run printed).")
        var resume: String?

        @Flag(help: "Print what would be done; write nothing.")
        var dryRun = false

        @Flag(help: "Restore events with their attendees, who are then sent invitations (by default they are listed at the top of the event's body).")
        var inviteAttendees = false

        @Option(help: "Upload fragment size in KiB: a multiple of 320 below 60 MiB (default 10240).")
        var fragmentSizeKib = 10_240

        @Option(help: "Files uploaded at once.")
        var filesAtOnce = 4

        func run() async throws {
            try await reporting {
                let (ref, path) = at == nil ? splitReference(reference) : ("", reference.hasPrefix(":") ? String(reference.dropFirst()) : reference)
                guard path != "/" else { throw VaultlineError(.invalidArgument, "give the path to restore: SNAPSHOT:/users/<upn>/onedrive or SNAPSHOT:/sites/<site>/<library>") }
                var options = VaultlineGraph.M365Restore.Options()
                options.destination = inPlace ? .inPlace : .newFolder
                options.onlyChanged = onlyChanged
                if let collisions {
                    guard let c = VaultlineGraph.M365Restore.Options.Collisions(rawValue: collisions) else {
                        throw VaultlineError(.invalidArgument, "--collisions takes skip, copy or replace", object: collisions)
                    }
                    options.collisions = c
                }
                options.toUser = toUser
                options.toSite = toSite
                options.toDrive = toDrive
                options.folderName = folderName
                options.job = resume
                options.dryRun = dryRun
                options.inviteAttendees = inviteAttendees
                guard fragmentSizeKib > 0, fragmentSizeKib % 320 == 0, fragmentSizeKib < 60 * 1024 else {
                    throw VaultlineError(.invalidArgument, "--fragment-size-kib must be a multiple of 320 below 61440", object: "\(fragmentSizeKib)")
                }
                guard filesAtOnce >= 1, filesAtOnce <= 64 else { throw VaultlineError(.invalidArgument, "--files-at-once takes 1 to 64") }
                options.fragmentSize = fragmentSizeKib * 1024
                options.filesAtOnce = filesAtOnce
                let line = ProgressLine()
                options.progress = { p in line.update("\(p.items) of \(p.plannedItems) items, \(formatBytes(UInt64(max(0, p.bytes)))) uploaded") }
                let repo = try repository.open()
                try repo.loadIndex()
                let snapshot: String
                if let at {
                    guard path.hasPrefix("/") else { throw VaultlineError(.invalidArgument, "with --at, give the PATH alone (/users/<upn>/…)", object: reference) }
                    let holder = try TenantView(at: try Find.pointInTime(at), snapshots: try repo.listSnapshots()).holder(of: path)
                    snapshot = holder.snapshotID
                    FileHandle.standardError.write(Data("\(path) at \(at): snapshot \(snapshot.prefix(12)) of \(UTCTimestamp.rfc3339(holder.time))\n".utf8))
                } else {
                    snapshot = try repo.resolveSnapshot(ref)
                }
                let client = GraphClient(credentials: try graph.credentials(), options: try graph.clientOptions())
                let summary: VaultlineGraph.M365Restore.Summary
                do {
                    summary = try await VaultlineGraph.M365Restore(repository: repo, client: client, options: options).run(snapshotID: snapshot, path: path)
                } catch {
                    try? await client.shutdown()
                    throw error
                }
                try await client.shutdown()
                line.done()
                if repository.json {
                    try printJSON(M365RestoreListing(summary))
                } else {
                    Self.print(summary)
                }
                if !summary.failures.isEmpty { throw ExitCode(3) }
            }
        }

        static func print(_ s: VaultlineGraph.M365Restore.Summary) {
            let verb = s.dryRun ? "would restore" : "restored"
            Swift.print("job \(s.job)\(s.dryRun ? " (dry run: nothing written)" : "")")
            for c in s.collections {
                Swift.print("  \(c.source) -> \(c.target)")
                Swift.print("    \(c.items) items, \(formatBytes(UInt64(c.bytes))): \(c.created) created, \(c.replaced) replaced, \(c.copied) copied, \(c.skipped) skipped (there), \(c.unchanged) unchanged, \(c.failed) failed")
            }
            Swift.print("\(verb) \(s.created + s.replaced + s.copied) items, \(formatBytes(UInt64(max(0, s.bytesUploaded)))) uploaded; graph: \(s.requests) requests, \(s.throttled) throttled (429), \(String(format: "%.2f", s.seconds)) s")
            for f in s.failures { Swift.print("  not restored \(f.path): \(f.message)") }
            if !s.failures.isEmpty { Swift.print("run the same command again (or --resume \(s.job)) to retry what failed") }
        }
    }
}

/// `m365 restore --json`.
struct M365RestoreListing: Encodable {
    var summary: VaultlineGraph.M365Restore.Summary
    var created: Int
    var replaced: Int
    var copied: Int
    var skipped: Int
    var unchanged: Int
    var failed: Int

    init(_ s: VaultlineGraph.M365Restore.Summary) {
        summary = s
        created = s.created
        replaced = s.replaced
        copied = s.copied
        skipped = s.skipped
        unchanged = s.unchanged
        failed = s.failed
    }
}
