import Foundation
import Logging
import Synchronization
import VaultlineCore

/// Puts items of a snapshot back into Microsoft 365 through Graph: `vaultline m365 restore`.
/// docs/GRAPH.md, "Restoring into Microsoft 365", says what goes where and how a killed job
/// resumes.
///
/// Mail (non-draft, original dates, restore keys), events and contacts (from their Graph JSON,
/// attendees not invited unless asked), OneDrive and SharePoint document libraries (every file
/// through an upload session, folders as needed, `fileSystemInfo` kept, collisions by path and
/// QuickXorHash).
public final class M365Restore: Sendable {
    public struct Options: Sendable {
        public enum Destination: String, Sendable, Codable {
            /// A new top-level folder `Restored items <date time>` with the original paths below it.
            case newFolder
            /// The original place.
            case inPlace
        }

        public enum Collisions: String, Sendable, Codable {
            /// Leave what is there (the default).
            case skip
            /// Restore beside it under a new name (`name 1.ext`).
            case copy
            /// Put the backup's version in its place.
            case replace
        }

        public var destination = Destination.newFolder
        /// Restore into another user's OneDrive.
        public var toUser: String?
        /// Restore a library into this drive (a document library's id) or site.
        public var toDrive: String?
        public var toSite: String?
        /// Nil: skip, or replace with ``onlyChanged``.
        public var collisions: Collisions?
        /// Put back only what was deleted or differs (in place; what is equal is not touched).
        public var onlyChanged = false
        /// Restore events with their attendees, who Graph then sends invitations (no flag
        /// prevents it); by default they are named at the top of the event's body instead.
        public var inviteAttendees = false
        public var dryRun = false
        /// The new folder's name; default `Restored items YYYY-MM-DD HH.MM.SS` (UTC) at the job's start.
        public var folderName: String?
        /// Where journals are kept; default `$XDG_CACHE_HOME/vaultline/<repository id>/restore`.
        public var journalDirectory: String?
        /// Go on with this job (its id as printed); default: the job this command's arguments make.
        public var job: String?
        /// Files uploaded at once.
        public var filesAtOnce = 4
        /// Bytes per upload fragment: a multiple of 320 KiB (Graph's rule), 10 MiB by default.
        public var fragmentSize = 32 * 327_680
        public var progress: (@Sendable (Progress) -> Void)?

        public init() {}

        var effectiveCollisions: Collisions { collisions ?? (onlyChanged ? .replace : .skip) }
        var effectiveDestination: Destination { onlyChanged ? .inPlace : destination }
    }

    public struct Progress: Sendable {
        public var items = 0
        public var plannedItems = 0
        public var bytes: Int64 = 0
    }

    /// What a job did, or would do (``Options/dryRun``).
    public struct Summary: Sendable, Codable {
        public struct Collection: Sendable, Codable {
            public var source: String
            public var target: String
            public var items = 0
            public var bytes: Int64 = 0
            public var created = 0
            public var replaced = 0
            public var copied = 0
            /// Left alone by `--collisions skip`.
            public var skipped = 0
            /// Already equal to the backup (not written).
            public var unchanged = 0
            public var failed = 0

            /// Counts what one item got.
            mutating func count(_ outcome: Decision) {
                switch outcome {
                case .create: created += 1
                case .replace: replaced += 1
                case .copy: copied += 1
                case .skip: skipped += 1
                case .unchanged: unchanged += 1
                }
            }
        }

        public struct Failure: Sendable, Codable {
            public var path: String
            public var message: String
        }

        public var job: String
        public var snapshot: String
        public var dryRun: Bool
        public var collections: [Collection] = []
        public var failures: [Failure] = []
        public var bytesUploaded: Int64 = 0
        public var requests = 0
        public var throttled = 0
        public var seconds = 0.0

        public var created: Int { collections.reduce(0) { $0 + $1.created } }
        public var replaced: Int { collections.reduce(0) { $0 + $1.replaced } }
        public var copied: Int { collections.reduce(0) { $0 + $1.copied } }
        public var skipped: Int { collections.reduce(0) { $0 + $1.skipped } }
        public var unchanged: Int { collections.reduce(0) { $0 + $1.unchanged } }
        public var failed: Int { failures.count }
    }

    let repository: Repository
    let client: GraphClient
    let options: Options
    let logger: Logger
    let progress = Mutex(Progress())

    public init(repository: Repository, client: GraphClient, options: Options, logger: Logger = Logger(label: "vaultline.m365.restore")) {
        self.repository = repository
        self.client = client
        self.options = options
        self.logger = logger
    }

    /// Restores `path` of snapshot `snapshotID`.
    public func run(snapshotID: String, path: String) async throws -> Summary {
        let start = Date()
        let before = client.stats
        guard options.fragmentSize > 0, options.fragmentSize % 327_680 == 0, options.fragmentSize < 60 << 20 else {
            throw VaultlineError(.invalidArgument, "the fragment size must be a multiple of 320 KiB below 60 MiB")
        }
        let snapshot = try repository.loadSnapshot(snapshotID)
        guard snapshot.sourceKind == "m365" else {
            throw VaultlineError(.invalidArgument, "snapshot \(snapshotID.prefix(8)) is not a Microsoft 365 backup (restore it with vaultline restore)")
        }
        let parts = path.split(separator: "/").map(String.init)
        let isMail = parts.count >= 3 && parts[0] == "users" && parts[2] == "mail"
        let isJSON = parts.count >= 3 && parts[0] == "users" && ["calendar", "calendars", "contacts"].contains(parts[2])
        let scopes = isMail || isJSON ? [] : try await driveScopes(snapshot: snapshot, parts: parts)
        let job = options.job ?? jobID(snapshotID: snapshotID, path: path)
        // The job names its journal file: a name that could leave the journal directory is refused.
        guard !job.isEmpty, job.count <= 128, !job.hasPrefix("."),
              job.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) }) else {
            throw VaultlineError(.invalidArgument, "a restore job is named by letters, digits, '-', '_' and '.' (at most 128, not starting with '.')",
                                 object: String(job.prefix(140)).debugDescription)
        }
        let journal = options.dryRun ? nil : try RestoreJournal(directory: options.journalDirectory ?? RestoreJournal.defaultDirectory(repositoryID: repository.config.id), job: job)
        let folderName = journal?.loaded.folderName ?? options.folderName ?? Self.defaultFolderName(start)
        if let journal, journal.loaded.folderName == nil { try journal.record("job", ["folder": folderName]) }

        var summary = Summary(job: job, snapshot: snapshotID, dryRun: options.dryRun)
        if isMail || isJSON {
            let (collection, failures) = isMail
                ? try await restoreMail(snapshot: snapshot, parts: parts, folderName: folderName, journal: journal)
                : try await restoreJSONItems(snapshot: snapshot, parts: parts, folderName: folderName, journal: journal)
            summary.collections.append(collection)
            summary.failures += failures
        }
        for scope in scopes {
            let (collection, failures) = try await restoreDrive(scope, folderName: folderName, journal: journal)
            summary.collections.append(collection)
            summary.failures += failures
        }
        let graph = client.stats.since(before)
        summary.requests = graph.requests
        summary.throttled = graph.throttled
        summary.bytesUploaded = progress.withLock { $0.bytes }
        summary.seconds = Date().timeIntervalSince(start)
        if summary.failures.isEmpty { journal?.remove() }
        return summary
    }

    /// The job this command makes: the same snapshot, path and options are the same job, so that
    /// running the command again goes on with it.
    func jobID(snapshotID: String, path: String) -> String {
        let o = options
        let text = [repository.config.id, snapshotID, path, o.effectiveDestination.rawValue, o.toUser ?? "", o.toDrive ?? "", o.toSite ?? "",
                    o.effectiveCollisions.rawValue, o.onlyChanged ? "only-changed" : "", o.folderName ?? ""].joined(separator: "\u{0}")
        return String(SHA256.hash(Array(text.utf8)).hex.prefix(16))
    }

    /// `Restored items 2026-12-01 14.30.05` (UTC): Microsoft 365 Backup's name, with seconds.
    static func defaultFolderName(_ date: Date) -> String {
        let text = GraphDate.format(date)
        return "Restored items " + text.prefix(10) + " " + text.dropFirst(11).prefix(8).replacingOccurrences(of: ":", with: ".")
    }

    func advance(items: Int = 0, planned: Int = 0, bytes: Int64 = 0) {
        let now = progress.withLock { p in
            p.items += items
            p.plannedItems += planned
            p.bytes += bytes
            return p
        }
        options.progress?(now)
    }
}
