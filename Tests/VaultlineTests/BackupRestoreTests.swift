import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

@Suite struct BackupRestoreTests {
    @Test(arguments: [(UInt64(1), Codec.zstd), (2, .lz4), (3, .none)])
    func randomTreeRoundTrip(seed: UInt64, codec: Codec) throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir, codec: codec)
        try Fixtures.makeTree(at: dir.path + "/src", seed: seed)
        let result = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(!result.snapshot.partial)
        let restorer = Restorer(repository: repo)
        try restorer.restore(snapshotID: result.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        #expect(try Checker(repository: repo).run(readData: true).ok)
    }

    @Test func sameTreeTwiceAddsNoData() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 4)
        let first = try Fixtures.backup(repo, [dir.path + "/src"])
        let packs = try repo.backend.list(.pack).count
        #expect(first.snapshot.stats.newBlobs > 0)
        // Duplicate content inside the tree was stored once.
        #expect(first.snapshot.stats.newRawBytes < first.snapshot.stats.totalBytes)

        let second = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(second.snapshot.stats.filesRead == 0)
        #expect(second.snapshot.stats.newBlobs == 0)
        #expect(second.snapshot.parent == first.snapshotID)
        #expect(try repo.backend.list(.pack).count == packs)

        let forced = try Fixtures.backup(repo, [dir.path + "/src"], force: true)
        #expect(forced.snapshot.stats.filesRead == forced.snapshot.stats.files)
        #expect(forced.snapshot.stats.newBlobs == 0)
        #expect(try repo.backend.list(.pack).count == packs)
    }

    @Test func changedFileIsReadAndOnlyItsNewChunksAreStored() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 5)
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        var rng = SplitMix64(seed: 55)
        let fd = try FileDescriptor(open: dir.path + "/src/a/big.bin", flags: O_WRONLY | O_APPEND)
        try fd.write(rng.bytes(1000))
        let second = try Fixtures.backup(repo, [dir.path + "/src"])
        #expect(second.snapshot.stats.filesRead == 1)
        #expect(second.snapshot.stats.newRawBytes < 300_000)
        try Restorer(repository: repo).restore(snapshotID: second.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    @Test func restoreSubdirectoryAndSingleFile() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 6)
        let snap = try Fixtures.backup(repo, [dir.path + "/src"]).snapshotID
        try Restorer(repository: repo).restore(snapshotID: snap, path: "/src/a/b", target: dir.path + "/sub")
        try DirectoryComparison.compare(dir.path + "/src/a/b", dir.path + "/sub")
        try Restorer(repository: repo).restore(snapshotID: snap, path: "/src/a/big.bin", target: dir.path + "/one")
        #expect(try FileSystem.readFile(dir.path + "/one/big.bin") == FileSystem.readFile(dir.path + "/src/a/big.bin"))
        expectError(VaultlineError.self, .notFound) { try Restorer(repository: repo).restore(snapshotID: snap, path: "/src/nope", target: dir.path + "/x") }
    }

    @Test func restoreDoesNotWriteThroughSymlinksInTheTarget() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try FileSystem.makeDirectories(dir.path + "/src", mode: 0o755)
        try Fixtures.writeFile(dir.path + "/src/victim", Array("backup".utf8))
        let snap = try Fixtures.backup(repo, [dir.path + "/src"]).snapshotID
        try Fixtures.writeFile(dir.path + "/outside", Array("precious".utf8))
        try FileSystem.makeDirectories(dir.path + "/out/src", mode: 0o755)
        _ = symlink(dir.path + "/outside", dir.path + "/out/src/victim")
        try Restorer(repository: repo).restore(snapshotID: snap, path: "/", target: dir.path + "/out")
        #expect(try FileSystem.readFile(dir.path + "/outside") == Array("precious".utf8))
        #expect(try FileSystem.readFile(dir.path + "/out/src/victim") == Array("backup".utf8))
    }

    @Test func unreadableFileIsRecordedAndTheRestKept() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try FileSystem.makeDirectories(dir.path + "/src", mode: 0o755)
        try Fixtures.writeFile(dir.path + "/src/ok", Array("fine".utf8))
        // A fifo cannot be opened without blocking; a dangling entry whose open fails:
        try Fixtures.writeFile(dir.path + "/src/gone", Array("x".utf8), mode: 0o000)
        let result = try Fixtures.backup(repo, [dir.path + "/src"])
        if geteuid() == 0 {
            // root reads mode-000 files; nothing to record.
            #expect(!result.snapshot.partial)
        } else {
            #expect(result.snapshot.partial)
            #expect(result.snapshot.errors.map(\.path) == [dir.path + "/src/gone"])
        }
        #expect(result.snapshot.stats.files == 2)
    }
}
