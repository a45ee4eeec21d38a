import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Restore reads what a batch of files needs pack by pack, in a few large ranges: these tests
/// hold the ranges to their rules and the files to their bytes when blobs are shared between
/// files, repeated in one file and spread over batches.
@Suite struct RestorePlanTests {
    static func blob(_ offset: UInt32, _ length: UInt32, file: Int32 = 0) -> PlannedBlob {
        PlannedBlob(offset: offset, storedLength: length, rawLength: length, codec: .none,
                    id: Bytes32(a: UInt64(offset), b: 0, c: 0, d: 0), file: file, fileOffset: 0)
    }

    @Test func rangesReadThroughSmallGapsAndSplitAtTheLimit() {
        let blobs = [Self.blob(0, 100), Self.blob(100, 100), Self.blob(250, 50), Self.blob(1000, 10), Self.blob(1010, 5000)]
        // Gap 50: the first three in one range (the 50-byte gap is read through), then a cut.
        let ranges = PackJob.ranges(blobs, gap: 50, limit: 1 << 20)
        #expect(ranges.map(\.blobs) == [0..<3, 3..<5])
        #expect(ranges.map(\.start) == [0, 1000])
        #expect(ranges.map(\.length) == [300, 5010])
        // No gap allowed: every gap cuts, adjacent blobs stay together.
        #expect(PackJob.ranges(blobs, gap: 0, limit: 1 << 20).map(\.blobs) == [0..<2, 2..<3, 3..<5])
        // The limit cuts before a blob that would take the range past it (0..<1010 > 1000);
        // a blob larger than the limit is a range alone, never split.
        let limited = PackJob.ranges(blobs, gap: 1 << 20, limit: 1000)
        #expect(limited.map(\.blobs) == [0..<3, 3..<4, 4..<5])
        #expect(limited.last?.length == 5000)
        // The same blob twice (two uses) adds no bytes to its range.
        let twice = PackJob.ranges([Self.blob(0, 100, file: 0), Self.blob(0, 100, file: 1)], gap: 0, limit: 100)
        #expect(twice.map(\.blobs) == [0..<2])
        #expect(twice.map(\.length) == [100])
        #expect(PackJob.ranges([], gap: 10, limit: 10).isEmpty)
    }

    @Test(arguments: [1, 3, 1000])
    func sharedAndRepeatedBlobsComeBackInEveryFileAcrossBatches(filesPerBatch: Int) throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let src = dir.path + "/src"
        try FileSystem.makeDirectories(src + "/deep/er", mode: 0o755)
        var rng = SplitMix64(seed: 77)
        let block = rng.bytes(300_000)
        try Fixtures.writeFile(src + "/base", block)
        // The same content in several files, and one file that is the block four times over
        // (content-defined chunks repeat inside it).
        for copy in 0..<5 { try Fixtures.writeFile(src + "/deep/copy\(copy)", block) }
        try Fixtures.writeFile(src + "/deep/er/four-times", block + block + block + block)
        for small in 0..<40 { try Fixtures.writeFile(src + "/deep/er/small\(small)", rng.bytes(small * 37)) }
        let backup = try Fixtures.backup(repo, [src])
        #expect(try repo.backend.list(.pack).count > 1)

        let restorer = Restorer(repository: repo, threads: 3, filesPerBatch: filesPerBatch)
        try restorer.restore(snapshotID: backup.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(src, dir.path + "/out/src")
        #expect(restorer.stats.files == 47)
        let smallBytes = (0..<40).reduce(0) { sum, small in sum + small * 37 }
        #expect(restorer.stats.bytes == UInt64(300_000 * 10 + smallBytes))
    }

    @Test func aBlobThatFailsItsCheckFailsTheRestoreAndNamesThePack() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        var rng = SplitMix64(seed: 78)
        try FileSystem.makeDirectories(dir.path + "/src", mode: 0o755)
        for file in 0..<4 { try Fixtures.writeFile(dir.path + "/src/f\(file)", rng.bytes(200_000)) }
        let backup = try Fixtures.backup(repo, [dir.path + "/src"])
        // Flip one byte in the middle of the first data blob of some pack.
        let data = try repo.backend.list(.pack).first { name in
            (try? repo.backend.read(.pack, name).count).map { $0 > 100_000 } ?? false
        }
        let pack = try #require(data)
        let path = dir.path + "/repo/" + FileKind.pack.relativePath(pack)
        var bytes = try FileSystem.readFile(path)
        bytes[1000] ^= 0x40
        chmod(path, 0o644)
        try Fixtures.writeFile(path, bytes)
        let error = expectError(VaultlineError.self, .corrupt) {
            try Restorer(repository: repo).restore(snapshotID: backup.snapshotID, path: "/", target: dir.path + "/out")
        }
        #expect(error?.object == "packs/\(pack)")
    }
}
