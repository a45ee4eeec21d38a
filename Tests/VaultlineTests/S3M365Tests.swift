import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineS3
#if canImport(Glibc)
import Glibc
#endif

/// A tenant split across two `m365 backup` processes writing into one repository on a bucket at
/// once (a users file each, as two machines would), then `find` and `m365 restore` from it.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3M365Tests {
    @Test(.timeLimit(.minutes(3)))
    func twoMachinesBackUpHalvesOfATenantIntoOneBucket() async throws {
        let fixture = try await GraphFixture()
        let repo = "\(try S3TestServer.freshLocation("m365"))"
        let dir = fixture.dir.path
        try Fixtures.writeFile(dir + "/secret", Array("test-secret".utf8))
        let users = fixture.sim.tenant.users.map(\.upn)
        #expect(users.count == 2)
        for (index, upn) in users.enumerated() {
            try Fixtures.writeFile(dir + "/users-\(index)", Array("# machine \(index)\n\(upn)\n\n".utf8))
        }
        let graph = ["--graph-url", fixture.sim.graphURL, "--authority", fixture.sim.authorityURL, "--tenant", fixture.sim.tenantId,
                     "--client-id", fixture.sim.clientId, "--client-secret-file", dir + "/secret"]
        #expect(try await onOwnThread { try S3CLITests.vaultline(["init", "--repo", repo]) }.status == 0)
        // Two machines: each its own cache directory, both at once.
        let runs = try await withThrowingTaskGroup(of: S3CLITests.Run.self) { group in
            for index in users.indices {
                group.addTask {
                    try await onOwnThread {
                        try S3CLITests.vaultline(["m365", "backup", "--repo", repo, "--users-file", dir + "/users-\(index)"] + graph,
                                                 environment: ["XDG_CACHE_HOME": dir + "/cache-\(index)"])
                    }
                }
            }
            var out: [S3CLITests.Run] = []
            for try await run in group { out.append(run) }
            return out
        }
        for run in runs { #expect(run.status == 0, "\(run.errors)") }
        let backend = S3Backend(client: try S3TestServer.client(try S3Location(parsing: repo)))
        let repository = try Repository.open(backend: backend, password: Fixtures.password, name: repo)
        let snapshots = try repository.listSnapshots()
        #expect(snapshots.count == 2)
        #expect(try Checker(repository: repository).run(readData: true).ok)
        for upn in users {
            let snapshot = try #require(snapshots.first { $0.snapshot.paths.contains { $0.hasSuffix("/users/" + upn.lowercased()) } }, "a snapshot of \(upn)")
            try Restorer(repository: repository).restore(snapshotID: snapshot.id, path: "/users/\(upn)/mail", target: dir + "/out-\(upn)")
            #expect(try FileSystem.list(dir + "/out-\(upn)").count > 0)
        }
        // find reads the bucket's snapshots too.
        let found = try await onOwnThread { try S3CLITests.vaultline(["find", "--repo", repo, "--all", "--kind", "mail", "--json"]) }
        #expect(found.status == 0, "\(found.errors)")
        #expect(found.output.contains(users[0]) && found.output.contains(users[1]))
        // A deleted OneDrive file goes back into Microsoft 365 from the bucket.
        let upn = users[0]
        let before = fixture.sim.tenant.driveFileDigests(upn: upn)
        let name = try #require(before.keys.sorted().first)
        #expect(fixture.sim.tenant.deleteFile(upn: upn, path: name))
        let snapshot = try #require(snapshots.first { $0.snapshot.paths.contains { $0.hasSuffix("/users/" + upn.lowercased()) } })
        let restored = try await onOwnThread {
            try S3CLITests.vaultline(["m365", "restore", "\(snapshot.id):/users/\(upn)/onedrive", "--only-changed", "--repo", repo] + graph,
                                     environment: ["XDG_CACHE_HOME": dir + "/cache-0"])
        }
        #expect(restored.status == 0, "\(restored.errors)")
        #expect(fixture.sim.tenant.driveFileDigests(upn: upn)[name]?.sha256 == before[name]?.sha256)
        await fixture.sim.stop()
    }
}
