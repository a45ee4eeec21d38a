import Foundation
import Synchronization
import VaultlineCore

/// Ships a repository to a site-B bucket (`vaultline replicate --to s3:…`): what the bucket
/// lacks, in the receiver's order — config and key slots, then packs, then index files, then
/// snapshots — so that a snapshot is never there before the files it needs. Each file is read
/// from the source, checked against its name (a damaged source file is not shipped), and PUT
/// with `If-None-Match: *`, its SHA-256 and the bucket's Object Lock. Keyless: no file is opened.
/// A pass that stops anywhere resumes by running again: what is there is not sent twice.
public struct BucketReplicator: Sendable {
    public struct Report: Sendable, Codable, Equatable {
        public var filesSent = 0
        public var bytesSent: Int64 = 0
        public var filesPresent = 0
        public var seconds = 0.0
        public var mibPerSecond: Double { seconds > 0 ? Double(bytesSent) / 1_048_576 / seconds : 0 }
    }

    public let source: any Backend
    public let target: S3Backend
    public var transfers: Int

    public init(source: any Backend, target: S3Backend, transfers: Int = 4) {
        self.source = source
        self.target = target
        self.transfers = transfers
    }

    /// The kinds in the order they are shipped; locks and prune plans stay at their site.
    public static let order: [FileKind] = [.config, .key, .pack, .index, .snapshot]

    public func run(progress: (@Sendable (Int) -> Void)? = nil) throws -> Report {
        let started = Date()
        var report = Report()
        for kind in Self.order {
            let there = Set(try target.list(kind))
            let wanted = try source.list(kind).sorted()
            let missing = wanted.filter { !there.contains($0) }
            report.filesPresent += wanted.count - missing.count
            let sent = Atomic<Int64>(0)
            let results = ConcurrentMap.run(missing, width: kind == .pack ? max(1, transfers) : 1) { name in
                let bytes = try source.read(kind, name)
                do {
                    // The backend hashes what it sends and refuses bytes that are not their name.
                    try target.writeIfAbsent(kind, name, bytes)
                } catch let error as VaultlineError where error.code == .corrupt && kind.isContentAddressed {
                    throw VaultlineError(.corrupt, "the source file does not hash to its name; not shipped (run scrub and repair)",
                                         object: kind.relativePath(name), cause: error)
                }
                sent.wrappingAdd(Int64(bytes.count), ordering: .relaxed)
                progress?(bytes.count)
            }
            for result in results { try result.get() }
            report.filesSent += missing.count
            report.bytesSent += sent.load(ordering: .relaxed)
        }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}
