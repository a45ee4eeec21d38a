import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineS3

/// A repository over https with a CA of its own (`AWS_CA_BUNDLE`), in a region other than
/// us-east-1, against the test server's https port; and a certificate nobody said to trust,
/// refused in one attempt with the code that says so, not retried for a minute.
@Suite(.enabled(if: (try? S3TestServer.endpoint.httpsURL) != nil, "needs SeaweedFS with its https port (tools/setup.sh)"))
struct S3TLSTests {
    static func location(_ label: String) throws -> S3Location {
        let https = try #require(try S3TestServer.endpoint.httpsURL)
        return try S3Location(parsing: "s3:\(https)/vl-\(label)-\(encodeHex(try SecureRandom.bytes(6)))/repo")
    }

    static func client(_ location: S3Location, trusting bundle: String?) throws -> S3Client {
        let server = try S3TestServer.endpoint
        var options = S3TestServer.quickOptions
        options.caBundle = bundle
        return try S3Client(location: location, credentials: AWSCredentials(accessKeyID: server.accessKey, secretAccessKey: server.secret),
                            region: "eu-west-3", options: options)
    }

    @Test func aRepositoryOverHTTPSWithItsOwnCARoundTrips() throws {
        let location = try Self.location("tls")
        #expect(location.secure)
        let backend = S3Backend(client: try Self.client(location, trusting: try S3TestServer.endpoint.caBundle), spoolFolder: NSTemporaryDirectory())
        try backend.prepareForInitialize()
        let repo = try Repository.initialize(backend: backend, name: "\(location)", password: Fixtures.password, options: Fixtures.options)
        let dir = TemporaryDirectory()
        try Fixtures.makeTree(at: dir.path + "/src", seed: 41)
        let backup = try Fixtures.backup(repo, [dir.path + "/src"])
        try Restorer(repository: repo).restore(snapshotID: backup.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        #expect(try Checker(repository: repo).run(readData: true).ok)
    }

    @Test func anUntrustedCertificateIsRefusedAtOnceAsTLS() async throws {
        let client = try Self.client(try Self.location("untrusted"), trusting: nil)
        // A blocking wait, on a thread of its own rather than one of the suite's two pool threads;
        // timed there (the await's return waits for a pool thread, which other suites may hold).
        let (failure, seconds) = try await onOwnThread { () -> (S3Error?, TimeInterval) in
            let started = Date()
            do { _ = try client.send(S3Request(.GET, key: "")); return (nil, 0) } catch let error as S3Error {
                return (error, Date().timeIntervalSince(started))
            }
        }
        let error = try #require(failure)
        #expect(error.code == .tls, "\(error.debugDescription)")
        #expect(error.message.contains("AWS_CA_BUNDLE"))
        #expect(client.stats.retries == 0)
        // One attempt, not a minute of retries (nor the pool's own until its connect timeout).
        #expect(seconds < 5)
    }
}
