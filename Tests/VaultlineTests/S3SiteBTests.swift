import Foundation
import NIOCore
import Testing
@testable import VaultlineCore
@testable import VaultlineS3

/// Site B as an Object-Lock bucket: replication into it, a compromised site A (its credentials)
/// that deletes and overwrites what it can, a restore at site B with the password alone, and
/// site B's own extension of the locks. On SeaweedFS, which enforces COMPLIANCE retention.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3SiteBTests {
    struct Sites {
        let dir: TemporaryDirectory
        let siteA: Repository
        let bucket: S3Location
        let snapshot: String
    }

    /// A repository at site A with two snapshots, replicated into a fresh locked bucket.
    static func replicated(lockFor seconds: TimeInterval = 3600) throws -> Sites {
        let dir = TemporaryDirectory()
        let siteA = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 77)
        _ = try Fixtures.backup(siteA, [dir.path + "/src"])
        try Fixtures.writeFile(dir.path + "/src/late", Array("written between the two backups".utf8))
        let snapshot = try Fixtures.backup(siteA, [dir.path + "/src"]).snapshotID
        let bucket = try S3TestServer.freshLocation("siteb")
        let target = S3Backend(client: try S3TestServer.client(bucket), lock: ObjectLock(retainFor: seconds), pinsVersions: true)
        try target.prepareLockedBucket()
        let first = try BucketReplicator(source: siteA.backend, target: target).run()
        let sourceFiles = try siteA.backend.list(.pack).count + siteA.backend.list(.index).count + siteA.backend.list(.key).count + 2 + 1
        #expect(first.filesSent == sourceFiles, "packs, index files, key slots, two snapshots and the config")
        let again = try BucketReplicator(source: siteA.backend, target: S3Backend(client: try S3TestServer.client(bucket), lock: ObjectLock(retainFor: seconds))).run()
        #expect(again.filesSent == 0)
        #expect(again.filesPresent == first.filesSent)
        return Sites(dir: dir, siteA: siteA, bucket: bucket, snapshot: snapshot)
    }

    @Test(.timeLimit(.minutes(2)))
    func aCompromisedSiteACannotTakeBackWhatSiteBHolds() throws {
        let sites = try Self.replicated()
        // Site A's credentials, in an attacker's hands: no lock headers, no version pinning.
        let attacker = S3Backend(client: try S3TestServer.client(sites.bucket))
        let versions = try attacker.listVersions()
        #expect(!versions.isEmpty)
        // 1. Delete everything: each DELETE only adds a delete marker.
        for kind in BucketReplicator.order {
            for name in try attacker.list(kind) { try attacker.delete(kind, name) }
        }
        #expect(try attacker.list(.snapshot).isEmpty, "the latest versions are gone")
        // 2. Overwrite index files and the config with garbage: new versions on top.
        let garbage = ByteBuffer(string: "ransom note")
        for name in try sites.siteA.backend.list(.index) {
            _ = try attacker.client.send(S3Request(.PUT, key: attacker.key(.index, name), body: garbage))
        }
        _ = try attacker.client.send(S3Request(.PUT, key: attacker.key(.config, "config"), body: garbage))
        // 3. Delete locked versions outright, and shorten a lock: both refused.
        for (objectKey, list) in versions.prefix(5) {
            let refused = expectError(S3Error.self, .accessDenied) {
                try attacker.client.send(S3Request(.DELETE, key: objectKey, query: [("versionId", list[0].id)]))
            }
            #expect(refused?.status == 403)
        }
        let (someKey, someVersions) = try #require(versions.first)
        let shorter = ByteBuffer(string: "<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>\(S3Backend.iso8601(Date(timeIntervalSinceNow: 60)))</RetainUntilDate></Retention>")
        expectError(S3Error.self, .accessDenied) {
            try attacker.client.send(S3Request(.PUT, key: someKey, query: [("retention", ""), ("versionId", someVersions[0].id)],
                                               headers: [("Content-MD5", S3Backend.md5Base64(shorter))], body: shorter))
        }
        // Site B, with the password alone: the versions whose bytes are their names.
        let reader = S3Backend(client: try S3TestServer.client(sites.bucket), pinsVersions: true)
        #expect(try reader.bucketHasObjectLock())
        let siteB = try Repository.open(backend: reader, password: Fixtures.password, name: "\(sites.bucket)")
        #expect(try Set(siteB.listSnapshots().map(\.id)) == Set(sites.siteA.listSnapshots().map(\.id)))
        #expect(try Checker(repository: siteB).run(readData: true).ok)
        try Restorer(repository: siteB).restore(snapshotID: sites.snapshot, path: "/", target: sites.dir.path + "/out")
        try DirectoryComparison.compare(sites.dir.path + "/src", sites.dir.path + "/out/src")
    }

    @Test(.timeLimit(.minutes(2)))
    func siteBExtendsTheLocksOfWhatItsSnapshotsNeed() throws {
        let sites = try Self.replicated(lockFor: 3600)
        let backend = S3Backend(client: try S3TestServer.client(sites.bucket), pinsVersions: true)
        let siteB = try Repository.open(backend: backend, password: Fixtures.password, name: "\(sites.bucket)")
        let live = try siteB.liveFiles()
        let liveCount = live.values.reduce(0) { $0 + $1.count }
        let extender = RetentionExtender(repository: siteB, backend: backend, retainFor: 3 * 86_400, renewWithin: 86_400)
        let first = try extender.run()
        #expect(first.objectsChecked == liveCount)
        #expect(first.objectsExtended == liveCount, "every object was locked for an hour only")
        let pack = try #require(live[.pack]?.first)
        let head = try backend.client.send(S3Request(.HEAD, key: backend.key(.pack, pack)))
        let until = try #require(head.headers.first(name: "x-amz-object-lock-retain-until-date").flatMap(S3Backend.parseISO8601))
        #expect(until.timeIntervalSinceNow > 2 * 86_400)
        #expect(head.headers.first(name: "x-amz-object-lock-mode") == "COMPLIANCE")
        let second = try extender.run()
        #expect(second.objectsExtended == 0, "nothing ends within a day any more")
    }

    @Test func aBucketWithoutObjectLockIsNotASiteB() throws {
        let location = try S3TestServer.freshLocation("nolock")
        let plain = S3Backend(client: try S3TestServer.client(location))
        try plain.prepareForInitialize()
        #expect(try !plain.bucketHasObjectLock())
        expectError(VaultlineError.self, .unsupported) { try plain.prepareLockedBucket() }
    }
}
