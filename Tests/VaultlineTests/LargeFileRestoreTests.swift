import Foundation
import GraphSimulator
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

/// A 5 GiB file backed up and restored into its OneDrive by `vaultline m365 restore` as a
/// process, whose peak memory is read from /proc while it runs. Long (a few minutes, 5 GiB
/// through the repository and the simulator): runs when VAULTLINE_LONG_TESTS is set
/// (`VAULTLINE_LONG_TESTS=1 swift test --filter LargeFileRestore`).
@Suite("Restore into Microsoft 365: a 5 GiB file", .enabled(if: ProcessInfo.processInfo.environment["VAULTLINE_LONG_TESTS"] != nil))
struct LargeFileRestoreTests {
    static let size = 5 << 30

    @Test(.timeLimit(.minutes(20)))
    func aFiveGiBFileStreamsBackWithBoundedMemory() async throws {
        var spec = GraphFixture.smallSpec
        spec.users = 1
        spec.filesPerUser = 2
        spec.largeFileSize = Self.size
        let f = try await GraphFixture(spec: spec)
        let upn = f.sim.tenant.users[0].upn
        let before = f.sim.tenant.driveFileDigests(upn: upn)
        let name = try #require(before.keys.first { before[$0]?.size == Int64(Self.size) })
        let backup = try await f.backup { $0.mail = false; $0.calendar = false; $0.contacts = false; $0.sites = false }
        #expect(!backup.snapshot.partial)
        #expect(f.sim.tenant.deleteFile(upn: upn, path: name))
        try Fixtures.writeFile(f.dir.path + "/secret", Array("test-secret".utf8))

        let p = Process()
        p.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        p.arguments = ["m365", "restore", "latest:/users/\(upn)/onedrive", "--only-changed", "--repo", f.dir.path + "/repo",
                       "--graph-url", f.sim.graphURL, "--authority", f.sim.authorityURL, "--tenant", f.sim.tenantId,
                       "--client-id", f.sim.clientId, "--client-secret-file", f.dir.path + "/secret", "--json"]
        p.environment = ["VAULTLINE_PASSWORD": String(decoding: Fixtures.password, as: UTF8.self), "XDG_CACHE_HOME": f.dir.path + "/cache"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        let started = Date()
        try p.run()
        var peakKiB = 0
        while p.isRunning {
            // VmHWM: the process's peak resident set so far.
            if let status = try? String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8),
               let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
               let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") {
                peakKiB = max(peakKiB, kib)
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let seconds = Date().timeIntervalSince(started)
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(printed)")
        let after = f.sim.tenant.driveFileDigests(upn: upn)
        #expect(after[name]?.size == before[name]?.size)
        #expect(after[name]?.sha256 == before[name]?.sha256, "the 5 GiB file came back byte-identical (SHA-256)")
        #expect(peakKiB > 0 && peakKiB < 300 << 10, "peak RSS \(peakKiB / 1024) MiB")
        print("5 GiB restore: \(String(format: "%.1f", seconds)) s, \(String(format: "%.0f", Double(Self.size) / seconds / 1e6)) MB/s, peak RSS \(peakKiB / 1024) MiB")
        await f.close()
    }
}
