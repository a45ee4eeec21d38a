import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineS3

/// The `vaultline` binary on an `s3:` repository, as an administrator runs it: credentials
/// from the environment, every everyday command, and clear refusals.
@Suite(.enabled(if: S3TestServer.isAvailable, "needs SeaweedFS (tools/setup.sh installs it into .venv-s3)"))
struct S3CLITests {
    struct Run {
        var status: Int32
        var output: String
        var errors: String
    }

    static func vaultline(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FaultTests.cliPath)
        process.arguments = arguments
        var environment = try S3TestServer.environment
        environment["VAULTLINE_PASSWORD"] = String(decoding: Fixtures.password, as: UTF8.self)
        environment["HOME"] = "/nonexistent"
        for (name, value) in extra { environment[name] = value }
        process.environment = environment
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        // A crash reads as the shell shows it (128 + the signal), never as an exit status.
        let crashed = process.terminationReason == .uncaughtSignal
        return Run(status: crashed ? 128 + process.terminationStatus : process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                   errors: String(decoding: errorData, as: UTF8.self) + (crashed ? "\n[killed by signal \(process.terminationStatus)]" : ""))
    }

    @Test(.timeLimit(.minutes(2)))
    func everydayCommandsWorkOnABucket() throws {
        let repo = "\(try S3TestServer.freshLocation("cli"))"
        let dir = TemporaryDirectory()
        try Fixtures.makeTree(at: dir.path + "/src", seed: 44)
        let created = try Self.vaultline(["init", "--repo", repo, "--pack-size-mib", "1"])
        #expect(created.status == 0, "\(created.errors)")
        #expect(created.output.contains("created repository"))
        for _ in 0..<2 {
            let backup = try Self.vaultline(["backup", "--repo", repo, dir.path + "/src"])
            #expect(backup.status == 0, "\(backup.errors)")
        }
        let listed = try Self.vaultline(["snapshots", "--repo", repo, "--json"])
        #expect(listed.status == 0, "\(listed.errors)")
        #expect(listed.output.components(separatedBy: "\"id\"").count - 1 == 2)
        let restored = try Self.vaultline(["restore", "latest", "--repo", repo, "--target", dir.path + "/out"])
        #expect(restored.status == 0, "\(restored.errors)")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        let checked = try Self.vaultline(["check", "--repo", repo, "--read-data"])
        #expect(checked.status == 0, "\(checked.errors)")
        #expect(checked.output.contains("no errors were found"))
        let scrubbed = try Self.vaultline(["scrub", "--repo", repo, "--state", dir.path + "/scrub-state", "--limit-rate", "200M"])
        #expect(scrubbed.status == 0, "\(scrubbed.errors)")
        #expect(scrubbed.output.contains("pass complete"))
        let forgot = try Self.vaultline(["forget", "--repo", repo, "--keep-last", "1"])
        #expect(forgot.status == 0, "\(forgot.errors)")
        let pruned = try Self.vaultline(["prune", "--repo", repo])
        #expect(pruned.status == 0, "\(pruned.errors)")
        let again = try Self.vaultline(["check", "--repo", repo, "--read-data"])
        #expect(again.status == 0, "\(again.errors)")
        let twice = try Self.vaultline(["init", "--repo", repo])
        #expect(twice.status == 1, "\(twice.errors)")
        #expect(twice.errors.contains("a repository already exists here"))
    }

    @Test(.timeLimit(.minutes(2)))
    func replicateToALockedBucketThenRestoreThereWithThePasswordAlone() throws {
        let dir = TemporaryDirectory()
        _ = try Fixtures.repository(in: dir)
        try Fixtures.makeTree(at: dir.path + "/src", seed: 45)
        #expect(try Self.vaultline(["backup", "--repo", dir.path + "/repo", dir.path + "/src"]).status == 0)
        let bucket = "\(try S3TestServer.freshLocation("cli-b"))"
        let shipped = try Self.vaultline(["replicate", "--repo", dir.path + "/repo", "--to", bucket, "--lock-days", "2", "--json"])
        #expect(shipped.status == 0, "\(shipped.errors)")
        #expect(shipped.output.contains("\"filesSent\""))
        let again = try Self.vaultline(["replicate", "--repo", dir.path + "/repo", "--to", bucket])
        #expect(again.output.contains("sent 0 files"), "\(again.output)\(again.errors)")
        let extended = try Self.vaultline(["bucket", "extend-locks", "--repo", bucket, "--lock-days", "5", "--renew-within-days", "3"])
        #expect(extended.status == 0, "\(extended.errors)")
        #expect(extended.output.contains("extended"), "\(extended.output)")
        let restored = try Self.vaultline(["restore", "latest", "--repo", bucket, "--target", dir.path + "/out"])
        #expect(restored.status == 0, "\(restored.errors)")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        // A bucket without Object Lock is no site B.
        let plain = "\(try S3TestServer.freshLocation("cli-plain"))"
        #expect(try Self.vaultline(["init", "--repo", plain]).status == 0)
        let refused = try Self.vaultline(["replicate", "--repo", dir.path + "/repo", "--to", plain])
        #expect(refused.status == 1)
        #expect(refused.errors.contains("has no Object Lock"), "\(refused.errors)")
    }

    @Test func badLocationsAndCredentialsAreRefusedClearly() throws {
        let malformed = try Self.vaultline(["snapshots", "--repo", "s3:ftp://127.0.0.1/bucket"])
        #expect(malformed.status == 64)
        #expect(malformed.errors.contains("no http:// or https:// scheme"))
        let location = try S3TestServer.freshLocation("creds")
        let wrongSecret = try Self.vaultline(["init", "--repo", "\(location)"], environment: ["AWS_SECRET_ACCESS_KEY": "wrong"])
        #expect(wrongSecret.status == 64)
        #expect(wrongSecret.errors.contains("403"), "\(wrongSecret.errors)")
        #expect(!wrongSecret.errors.contains("wrong"), "the secret is never printed")
        let missing = try Self.vaultline(["snapshots", "--repo", "\(location)"], environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""])
        #expect(missing.status == 64, "\(missing.errors)")
        let unsupported = try Self.vaultline(["replica", "status", "--repo", "\(location)"])
        #expect(unsupported.status != 0)
    }
}
