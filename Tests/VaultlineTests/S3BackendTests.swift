import Foundation
import NIOCore
import Synchronization
import Testing
@testable import VaultlineCore
@testable import VaultlineS3

/// The S3 backend against a real server (SeaweedFS, ``S3TestServer``): the `Backend` contract,
/// conditional writes under races, multipart uploads, and whole repositories on a bucket.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3BackendTests {
    static func name(_ bytes: [UInt8]) -> String { VaultlineCore.SHA256.hash(bytes).hex }

    @Test func writesReadsListsAndDeletesLikeADisk() throws {
        let backend = try S3TestServer.freshBackend("contract")
        let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let name = Self.name(bytes)
        #expect(try backend.stat(.index, name) == nil)
        #expect(try backend.writeIfAbsent(.index, name, bytes))
        #expect(try backend.stat(.index, name) == 5000)
        #expect(try backend.read(.index, name) == bytes)
        #expect(try backend.read(.index, name, offset: 4990, length: 10) == Array(bytes[4990...]))
        #expect(try backend.read(.index, name, offset: 100, length: nil) == Array(bytes[100...]))
        var reused = [UInt8](repeating: 9, count: 8000)
        #expect(try backend.read(.index, name, into: &reused) == 5000)
        #expect(Array(reused[0..<5000]) == bytes)
        var exact = [UInt8](repeating: 0, count: 300)
        try exact.withUnsafeMutableBytes { try backend.read(.index, name, offset: 1000, into: $0) }
        #expect(exact == Array(bytes[1000..<1300]))
        // A range past the end is a truncated file, as on a disk.
        expectError(VaultlineError.self, .corrupt) {
            var tail = [UInt8](repeating: 0, count: 20)
            try tail.withUnsafeMutableBytes { try backend.read(.index, name, offset: 4990, into: $0) }
        }
        #expect(try backend.list(.index) == [name])
        #expect(try backend.modified(.index, name).map { abs($0.timeIntervalSinceNow) < 300 } == true)
        // The same name again: refused, nothing replaced.
        #expect(try !backend.writeIfAbsent(.index, name, bytes))
        // Bytes that do not hash to their name never leave the machine.
        expectError(VaultlineError.self, .corrupt) { try backend.writeIfAbsent(.index, String(repeating: "a", count: 64), bytes) }
        expectError(VaultlineError.self, .notFound) { _ = try backend.read(.snapshot, String(repeating: "b", count: 64)) }
        try backend.delete(.index, name)
        try backend.delete(.index, name)  // a missing file is not an error
        #expect(try backend.list(.index).isEmpty)
        expectError(VaultlineError.self, .invalidArgument) { _ = try backend.stat(.pack, "../config") }
    }

    @Test func packsAreListedAcrossPagesAndShards() throws {
        let backend = try S3TestServer.freshBackend("shards")
        // More than one listing page (1000 keys), so the 256 shards are listed at once.
        let payloads = (0..<1100).map { index in Array("pack \(index)".utf8) }
        let results = ConcurrentMap.run(payloads, width: 16) { bytes in try backend.writeIfAbsent(.pack, Self.name(bytes), bytes) }
        for result in results { #expect(try result.get()) }
        let listed = try backend.list(.pack)
        #expect(listed.count == 1100)
        #expect(Set(listed) == Set(payloads.map(Self.name)))
    }

    @Test func sixWritersRacingForOneNameLeaveExactlyOneWinner() throws {
        let backend = try S3TestServer.freshBackend("race")
        for round in 0..<10 {
            let name = "race-\(round)"
            let wins = ConcurrentMap.run(Array(0..<6), width: 6) { writer in
                try backend.writeIfAbsent(.lock, name, Array("writer \(writer)".utf8))
            }
            let winners = try wins.enumerated().filter { try $0.element.get() }.map(\.offset)
            #expect(winners.count == 1, "round \(round): \(winners)")
            if let winner = winners.first {
                #expect(try backend.read(.lock, name) == Array("writer \(winner)".utf8))
            }
        }
    }

    @Test func largeObjectsGoUpInPartsAndKeepTheNoReplaceRule() throws {
        let location = try S3TestServer.freshLocation("parts")
        let backend = S3Backend(client: try S3TestServer.client(location), multipartThreshold: 6 << 20, partSize: 5 << 20)
        try backend.prepareForInitialize()
        var rng = SplitMix64(seed: 17)
        let bytes = (0..<(12 << 20) + 123).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let name = Self.name(bytes)
        let file = try backend.beginWrite(.pack)
        try bytes.withUnsafeBytes { all in
            for start in stride(from: 0, to: all.count, by: 1 << 20) {
                try file.append(UnsafeRawBufferPointer(rebasing: all[start..<min(start + (1 << 20), all.count)]))
            }
        }
        let before = backend.client.stats.requests
        #expect(try file.commit(name: name))
        #expect(backend.client.stats.requests - before >= 5, "create, three parts, complete")
        #expect(try backend.stat(.pack, name) == Int64(bytes.count))
        #expect(try backend.read(.pack, name) == bytes)
        let again = try backend.beginWrite(.pack)
        try bytes.withUnsafeBytes { try again.append($0) }
        #expect(try !again.commit(name: name))
        // No upload is left behind.
        let uploads = try backend.client.send(S3Request(.GET, key: "", query: [("uploads", "")]))
        #expect(!String(buffer: uploads.body).contains("<UploadId>"))
    }

    @Test func aWholeRepositoryLivesOnABucket() throws {
        let backend = try S3TestServer.freshBackend("repo")
        let repo = try Repository.initialize(backend: backend, name: "\(backend.client.location)", password: Fixtures.password, options: Fixtures.options)
        let dir = TemporaryDirectory()
        try Fixtures.makeTree(at: dir.path + "/src", seed: 31, scale: 2)
        let first = try Fixtures.backup(repo, [dir.path + "/src"])
        let reopened = try Repository.open(backend: backend, password: Fixtures.password, name: "s3")
        try reopened.loadIndex()
        let second = try Fixtures.backup(reopened, [dir.path + "/src"])
        #expect(second.snapshotID != first.snapshotID)
        #expect(try Checker(repository: reopened).run(readData: true).ok)
        try Restorer(repository: reopened).restore(snapshotID: second.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        expectError(VaultlineError.self, .alreadyExists) { try backend.prepareForInitialize() }
        expectError(VaultlineError.self, .wrongPassword) { _ = try Repository.open(backend: backend, password: Array("nope".utf8), name: "s3") }
    }

    @Test func aRestoreReadsEachPackItNeedsOnce() throws {
        let backend = try S3TestServer.freshBackend("restore-requests")
        let repo = try Repository.initialize(backend: backend, name: "s3", password: Fixtures.password, options: Fixtures.options)
        let dir = TemporaryDirectory()
        try Fixtures.makeTree(at: dir.path + "/src", seed: 32, scale: 2)
        var rng = SplitMix64(seed: 33)
        for file in 0..<6 { try Fixtures.writeFile(dir.path + "/src/random\(file)", rng.bytes(700_000)) }
        let backup = try Fixtures.backup(repo, [dir.path + "/src"])
        let packs = try backend.list(.pack).count
        let reopened = try Repository.open(backend: backend, password: Fixtures.password, name: "s3")
        let before = backend.client.stats.requests
        try Restorer(repository: reopened, threads: 4).restore(snapshotID: backup.snapshotID, path: "/", target: dir.path + "/out")
        let requests = backend.client.stats.requests - before
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        // Listing and reading the index, the snapshot, then one GET per pack (trees included).
        let indexFiles = try backend.list(.index).count
        #expect(packs > 4)
        #expect(requests <= packs + indexFiles + 3, "\(requests) requests for \(packs) packs and \(indexFiles) index files")
    }

    @Test func indexFilesSnapshotsAndKeysAreReadFromTheLocalCacheAndCheckedEachTime() throws {
        let location = try S3TestServer.freshLocation("cache")
        let dir = TemporaryDirectory()
        let cache = try #require(ContentCache(root: dir.path + "/cache"))
        let backend = S3Backend(client: try S3TestServer.client(location), cache: cache)
        try backend.prepareForInitialize()
        let bytes = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let name = Self.name(bytes)
        #expect(try backend.writeIfAbsent(.index, name, bytes))
        #expect(try FileSystem.readFile(cache.path(.index, name)) == bytes)
        // Read from the cache: no request.
        var requests = backend.client.stats.requests
        #expect(try backend.read(.index, name) == bytes)
        #expect(backend.client.stats.requests == requests)
        // A damaged entry is never used: fetched again, and the entry mended.
        try Fixtures.writeFile(cache.path(.index, name), Array(bytes.dropLast()) + [0])
        #expect(try backend.read(.index, name) == bytes)
        #expect(backend.client.stats.requests == requests + 1)
        #expect(try FileSystem.readFile(cache.path(.index, name)) == bytes)
        // Ranged reads and packs go to the bucket.
        requests = backend.client.stats.requests
        #expect(try backend.read(.index, name, offset: 10, length: 5) == Array(bytes[10..<15]))
        #expect(backend.client.stats.requests == requests + 1)
        // Deleted elsewhere (another machine's prune): the next listing drops the entry.
        let other = S3Backend(client: try S3TestServer.client(location))
        try other.delete(.index, name)
        #expect(try backend.list(.index).isEmpty)
        #expect(!FileSystem.exists(cache.path(.index, name)))
        // A folder that cannot be made is no cache, not an error.
        #expect(ContentCache(root: "/proc/vaultline-cache") == nil)
    }
}
