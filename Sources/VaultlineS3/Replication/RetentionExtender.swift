import Foundation
import NIOCore
import VaultlineCore

/// Site B's maintenance of its locks (`vaultline bucket extend-locks`, run with site B's
/// credentials): every object the bucket's snapshots still need (``Repository/liveFiles()``)
/// whose COMPLIANCE retention ends within `renewWithin` gets a retain-until date of
/// `retainFor` from now. Objects nothing needs are left to expire; their retention is never
/// shortened (S3 refuses that anyway).
public struct RetentionExtender: Sendable {
    public struct Report: Sendable, Codable, Equatable {
        public var objectsChecked = 0
        public var objectsExtended = 0
        public var objectsNewlyLocked = 0
        public var seconds = 0.0
    }

    public let repository: Repository
    public let backend: S3Backend
    public var retainFor: TimeInterval
    public var renewWithin: TimeInterval

    public init(repository: Repository, backend: S3Backend, retainFor: TimeInterval, renewWithin: TimeInterval) {
        self.repository = repository
        self.backend = backend
        self.retainFor = retainFor
        self.renewWithin = renewWithin
    }

    public func run() throws -> Report {
        let started = Date()
        var report = Report()
        let live = try repository.liveFiles()
        let until = Date(timeIntervalSinceNow: retainFor)
        let renewBefore = Date(timeIntervalSinceNow: renewWithin)
        let work = live.flatMap { kind, names in names.map { (kind, $0) } }
        let outcomes = ConcurrentMap.run(work, width: backend.client.options.maximumRequests) { kind, name in
            try extend(kind, name, until: until, renewBefore: renewBefore)
        }
        for outcome in outcomes {
            report.objectsChecked += 1
            switch try outcome.get() {
            case .extended: report.objectsExtended += 1
            case .newlyLocked: report.objectsNewlyLocked += 1
            case .current: break
            }
        }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }

    enum Outcome: Sendable { case extended, current, newlyLocked }

    func extend(_ kind: FileKind, _ name: String, until: Date, renewBefore: Date) throws -> Outcome {
        let objectKey = backend.key(kind, name)
        let version = try backend.pinnedVersion(kind, name)?.id
        let versionQuery: [(name: String, value: String)] = version.map { [("versionId", $0)] } ?? []
        do {
            let head = try backend.client.send(S3Request(.HEAD, key: objectKey, query: versionQuery))
            let current = head.headers.first(name: "x-amz-object-lock-retain-until-date").flatMap(S3Backend.parseISO8601)
            if let current, current > renewBefore { return .current }
            let xml = "<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>\(S3Backend.iso8601(until))</RetainUntilDate></Retention>"
            let body = ByteBuffer(string: xml)
            _ = try backend.client.send(S3Request(
                .PUT, key: objectKey, query: [("retention", "")] + versionQuery,
                headers: [("Content-MD5", S3Backend.md5Base64(body))], body: body))
            return current == nil ? .newlyLocked : .extended
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "extending the object's retention failed", object: kind.relativePath(name), cause: failure)
        }
    }
}
