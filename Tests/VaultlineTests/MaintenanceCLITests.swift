import Foundation
import Testing
@testable import VaultlineCore

/// The maintenance commands as an administrator runs them: exit statuses, JSON, refusals.
@Suite struct MaintenanceCLITests {
    /// `scrub --state cursor.json`, a bare name, run in a directory on another filesystem than
    /// `/` (tmpfs): the cursor's temporary file was made in `/`, and the rename across
    /// filesystems failed (or, on one filesystem as root, littered `/`).
    @Test(.timeLimit(.minutes(2)))
    func aBareStateFileNameIsWrittenInTheWorkingDirectory() throws {
        let (dir, _, _) = try VerificationTests.manyPacks()
        let cwd = "/dev/shm/vaultline-scrub-\(UUID().uuidString.prefix(8))"
        try FileSystem.makeDirectories(cwd)
        defer { try? FileManager.default.removeItem(atPath: cwd) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        p.arguments = ["scrub", "--repo", dir.path + "/repo", "--state", "cursor.json", "--log-level", "critical"]
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        p.environment = ["HOME": NSTemporaryDirectory()]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(FileSystem.exists(cwd + "/cursor.json"))
        #expect(try FileSystem.list(cwd).filter { $0.hasPrefix(".tmp-") }.isEmpty)
        #expect(try FileSystem.list("/").filter { $0.hasPrefix(".tmp-") }.isEmpty, "a temporary file left in /")
    }

    @Test(.timeLimit(.minutes(2)))
    func checkScrubForgetPruneAndSiteBRetentionFromTheCommandLine() throws {
        let (dir, repo, _) = try VerificationTests.manyPacks()
        let r = dir.path + "/repo"
        for i in 0..<3 {
            try Fixtures.writeFile(dir.path + "/src/docs/note-\(i).txt", Array("edit \(i)\n".utf8))
            _ = try Fixtures.backup(repo, [dir.path + "/src"])
        }
        // Healthy: check, a subset check, a keyless and a deep scrub all exit 0.
        #expect(try Fixtures.cli(["check", "--repo", r, "--read-data"]).status == 0)
        let subset = try Fixtures.cli(["check", "--repo", r, "--subset", "1/3", "--json"])
        #expect(subset.status == 0 && subset.out.contains("\"readData\" : true"))
        #expect(try Fixtures.cli(["scrub", "--repo", r, "--state", dir.path + "/s1", "--log-level", "critical"]).status == 0)
        #expect(try Fixtures.cli(["scrub", "--repo", r, "--deep", "--state", dir.path + "/s2", "--log-level", "critical"]).status == 0)
        #expect(try Fixtures.cli(["check", "--repo", r, "--subset", "4/3"]).status == 64)

        // Forget: no rule is refused; a dry run removes nothing; then a real one.
        #expect(try Fixtures.cli(["forget", "--repo", r]).status != 0)
        let dry = try Fixtures.cli(["forget", "--repo", r, "--keep-last", "1", "--dry-run"])
        #expect(dry.status == 0 && dry.out.contains("3 snapshots would be removed"))
        #expect(try repo.backend.list(.snapshot).count == 4)
        #expect(try Fixtures.cli(["forget", "--repo", r, "--keep-last", "1"]).status == 0)
        #expect(try repo.backend.list(.snapshot).count == 1)
        let prune = try Fixtures.cli(["prune", "--repo", r, "--grace", "0", "--json"])
        #expect(prune.status == 0 && prune.out.contains("\"packsMarked\""))
        #expect(try Fixtures.cli(["check", "--repo", r, "--read-data"]).status == 0)

        // Damage: a flipped bit makes check and scrub exit 13 and name the pack.
        let pack = try repo.backend.list(.pack).sorted()[0]
        try VerificationTests.flipBit((repo.backend as! LocalBackend).path(.pack, pack), at: 10, bit: 1)
        let damaged = try Fixtures.cli(["check", "--repo", r, "--read-data"])
        #expect(damaged.status == 13 && damaged.out.contains(pack))
        let scrub = try Fixtures.cli(["scrub", "--repo", r, "--state", dir.path + "/s3", "--log-level", "critical"])
        #expect(scrub.status == 13 && scrub.out.contains("packs/\(pack)"))
        try VerificationTests.flipBit((repo.backend as! LocalBackend).path(.pack, pack), at: 10, bit: 1)

        // Site B's lock: set, raised, never lowered; replica prune reports what it refuses.
        #expect(try Fixtures.cli(["replica", "lock", "--repo", r, "--days", "7"]).status == 0)
        #expect(try Fixtures.cli(["replica", "lock", "--repo", r, "--days", "3"]).status != 0)
        #expect(try Fixtures.cli(["replica", "lock", "--repo", r, "--days", "9"]).status == 0)
        _ = try Fixtures.backup(repo, [dir.path + "/src"])
        let b = try Fixtures.cli(["replica", "prune", "--repo", r, "--keep-last", "1", "--grace", "0"])
        #expect(b.status == 0 && b.out.contains("refused") && b.out.contains("retention lock"))
        #expect(try repo.backend.list(.snapshot).count == 2)
    }
}
