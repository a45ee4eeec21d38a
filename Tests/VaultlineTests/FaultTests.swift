import Foundation
import Testing
@testable import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// A backend that runs out of space after a number of pack writes.
final class DiskFullBackend: Backend, @unchecked Sendable {
    let inner: LocalBackend
    let packWritesAllowed: Int
    private let count = Locked(0)

    init(_ inner: LocalBackend, packWritesAllowed: Int) {
        self.inner = inner
        self.packWritesAllowed = packWritesAllowed
    }

    func list(_ kind: FileKind) throws -> [String] { try inner.list(kind) }
    func stat(_ kind: FileKind, _ name: String) throws -> Int64? { try inner.stat(kind, name) }
    func read(_ kind: FileKind, _ name: String, offset: Int64, length: Int?) throws -> [UInt8] {
        try inner.read(kind, name, offset: offset, length: length)
    }
    func delete(_ kind: FileKind, _ name: String) throws { try inner.delete(kind, name) }
    func beginWrite(_ kind: FileKind) throws -> any BackendPendingFile {
        if kind == .pack {
            let n = count.withLock { $0 += 1; return $0 }
            if n > packWritesAllowed { throw VaultlineError.system("write", object: inner.root + "/packs", errno: ENOSPC) }
        }
        return try inner.beginWrite(kind)
    }
    func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
        if kind == .pack {
            let n = count.withLock { $0 += 1; return $0 }
            if n > packWritesAllowed { throw VaultlineError.system("write", object: inner.path(kind, name), errno: ENOSPC) }
        }
        return try inner.writeIfAbsent(kind, name, bytes)
    }
}

@Suite struct FaultTests {
    @Test func diskFullFailsCleanlyAndTheNextRunSucceeds() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 11, scale: 4)
        let full = DiskFullBackend(LocalBackend(root: dir.path + "/repo"), packWritesAllowed: 2)
        let failing = try Repository.open(backend: full, password: Fixtures.password, name: "repo")
        expectError(VaultlineError.self, .noSpace) { try Fixtures.backup(failing, [dir.path + "/src"]) }
        #expect(try repo.backend.list(.snapshot).isEmpty)
        #expect(try repo.backend.list(.lock).isEmpty)
        let report = try Checker(repository: repo).run(readData: true)
        #expect(report.ok, "\(report.errors)")

        let result = try Fixtures.backup(repo, [dir.path + "/src"])
        try Restorer(repository: repo).restore(snapshotID: result.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    /// A real ENOSPC: the repository on a small tmpfs (needs root and mount; skipped otherwise).
    @Test(.enabled(if: geteuid() == 0)) func realFullFileSystem() throws {
        let dir = TemporaryDirectory()
        let mnt = dir.path + "/small"
        try FileSystem.makeDirectories(mnt)
        guard Self.shell("mount -t tmpfs -o size=4m vaultline-test \(mnt)") == 0 else { return }
        defer { _ = Self.shell("umount \(mnt)") }
        let repo = try Repository.initialize(path: mnt + "/repo", password: Fixtures.password, options: Fixtures.options)
        try FileSystem.makeDirectories(dir.path + "/src")
        var rng = SplitMix64(seed: 13)
        try Fixtures.writeFile(dir.path + "/src/random.bin", rng.bytes(8_000_000))
        expectError(VaultlineError.self, .noSpace) { try Fixtures.backup(repo, [dir.path + "/src"]) }
        #expect(try repo.backend.list(.snapshot).isEmpty)
        #expect(try Checker(repository: repo).run(readData: true).ok)
        // Space comes back: the same backup now completes.
        #expect(Self.shell("mount -o remount,size=64m \(mnt)") == 0)
        let result = try Fixtures.backup(repo, [dir.path + "/src"])
        try Restorer(repository: repo).restore(snapshotID: result.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
    }

    static func shell(_ command: String) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command + " 2>/dev/null"]
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// The `vaultline` binary the CLI tests run: `VAULTLINE_CLI` when set (CI points it at the
    /// shipped build, tools/release-binary), else the one built beside this test binary.
    static var cliPath: String {
        if let given = ProcessInfo.processInfo.environment["VAULTLINE_CLI"], !given.isEmpty { return given }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("vaultline").path
    }

    @Test(.timeLimit(.minutes(3)))
    func killedBackupLeavesARepositoryThatChecksAndARerunCompletes() throws {
        let dir = TemporaryDirectory()
        _ = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 12, scale: 2)
        var rng = SplitMix64(seed: UInt64(time(nil)))
        let trials = Int(ProcessInfo.processInfo.environment["VAULTLINE_CRASH_TRIALS"] ?? "") ?? 6
        var killed = 0
        for trial in 0..<trials {
            // New content every trial, so every run has data to write when it is killed.
            try Fixtures.writeFile(dir.path + "/src/new-\(trial).bin", rng.bytes(16_000_000 + Int(rng.next() % 16_000_000)))
            let p = try Self.startBackup(dir)
            usleep(useconds_t(5_000 + rng.next() % 300_000))
            if p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                killed += 1
            }
            p.waitUntilExit()
            let repo = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
            let report = try Checker(repository: repo).run(readData: true)
            #expect(report.ok, "trial \(trial): \(report.errors)")
        }
        let final = try Self.startBackup(dir)
        final.waitUntilExit()
        #expect(final.terminationStatus == 0)
        let repo = try Repository.open(path: dir.path + "/repo", password: Fixtures.password)
        #expect(try Checker(repository: repo).run(readData: true).ok)
        let latest = try repo.resolveSnapshot("latest")
        try Restorer(repository: repo).restore(snapshotID: latest, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        #expect(killed > 0, "no backup was still running when its kill came; slow the trial down")
    }

    static func startBackup(_ dir: TemporaryDirectory) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: cliPath)
        // Random test data is incompressible: without a high floor every rerun would be flagged.
        p.arguments = ["backup", "--repo", dir.path + "/repo", "--flag-min-bytes", "1G", dir.path + "/src"]
        var env = ProcessInfo.processInfo.environment
        env["VAULTLINE_PASSWORD"] = String(decoding: Fixtures.password, as: UTF8.self)
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }
}
