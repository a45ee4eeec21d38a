import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Altered, truncated and missing files are detected, and the error names the file.
@Suite struct DamageTests {
    static func setUp() throws -> (TemporaryDirectory, Repository, String) {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 9)
        let snap = try Fixtures.backup(repo, [dir.path + "/src"]).snapshotID
        return (dir, repo, snap)
    }

    static func flipByte(_ path: String, at offset: Int64) throws {
        chmod(path, 0o600)
        let fd = try FileDescriptor(open: path, flags: O_RDWR)
        var b = try fd.pread(count: 1, at: offset)
        b[0] ^= 0x20
        _ = b.withUnsafeBytes { Glibc.pwrite(fd.raw, $0.baseAddress, 1, off_t(offset)) }
    }

    @Test func alteredPackIsNamedByCheckAndRestore() throws {
        let (dir, repo, snap) = try Self.setUp()
        try repo.loadIndex()
        let (packID, type, _) = repo.index.packIDs.first { $0.type == .data }!
        #expect(type == .data)
        let path = (repo.backend as! LocalBackend).path(.pack, packID.hex)
        try Self.flipByte(path, at: 100)
        let structural = try Checker(repository: repo).run(readData: false)
        #expect(structural.ok)  // structure is intact; only the data is damaged
        let full = try Checker(repository: repo).run(readData: true)
        #expect(full.damagedPacks == [packID.hex])
        #expect(full.errors.contains { $0.contains(packID.hex) })
        let error = expectError(VaultlineError.self, .corrupt) { try Restorer(repository: repo).restore(snapshotID: snap, path: "/", target: dir.path + "/out") }
        #expect(error?.object?.contains(packID.hex) == true)
    }

    @Test func truncatedAndMissingPacksAreReported() throws {
        let (dir, repo, _) = try Self.setUp()
        defer { withExtendedLifetime(dir) {} }
        try repo.loadIndex()
        let packs = repo.index.packIDs.map(\.id.hex)
        let backend = repo.backend as! LocalBackend
        chmod(backend.path(.pack, packs[0]), 0o600)
        truncate(backend.path(.pack, packs[0]), 1000)
        unlink(backend.path(.pack, packs[1]))
        let report = try Checker(repository: repo).run(readData: true)
        #expect(!report.ok)
        #expect(report.errors.contains { $0.contains(packs[0]) })
        #expect(report.errors.contains { $0.contains(packs[1]) && $0.contains("missing") })
    }

    @Test func alteredIndexFileIsNamed() throws {
        let (dir, repo, _) = try Self.setUp()
        defer { withExtendedLifetime(dir) {} }
        let name = try repo.backend.list(.index)[0]
        try Self.flipByte((repo.backend as! LocalBackend).path(.index, name), at: 60)
        let error = expectError(VaultlineError.self, .corrupt) { try repo.loadIndex() }
        #expect(error?.object == "index/\(name)")
        let report = try Checker(repository: repo).run(readData: false)
        #expect(report.errors.contains { $0.hasPrefix("index/\(name)") })
    }

    @Test func alteredSnapshotIsNamed() throws {
        let (dir, repo, snap) = try Self.setUp()
        defer { withExtendedLifetime(dir) {} }
        try Self.flipByte((repo.backend as! LocalBackend).path(.snapshot, snap), at: 50)
        let error = expectError(VaultlineError.self, .corrupt) { try repo.loadSnapshot(snap) }
        #expect(error?.object == "snapshots/\(snap)")
        #expect(try !Checker(repository: repo).run(readData: false).ok)
    }

    @Test func repairIndexRebuildsFromPackHeaders() throws {
        let (dir, repo, snap) = try Self.setUp()
        try repo.loadIndex()
        let blobs = repo.index.count
        for name in try repo.backend.list(.index) { try repo.backend.delete(.index, name) }
        #expect(try !Checker(repository: repo).run(readData: false).ok)
        let result = try IndexRepair.run(repo)
        #expect(result.blobs == blobs)
        #expect(result.unreadablePacks.isEmpty)
        #expect(try Checker(repository: repo).run(readData: true).ok)
        try Restorer(repository: repo).restore(snapshotID: snap, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }
}
