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

    @Test func anUntrustedCertificateIsRefusedAtOnceAsTLS() throws {
        let client = try Self.client(try Self.location("untrusted"), trusting: nil)
        let started = Date()
        let error = expectError(S3Error.self, .tls) { _ = try client.send(S3Request(.GET, key: "")) }
        #expect(error?.message.contains("AWS_CA_BUNDLE") == true)
        #expect(client.stats.retries == 0)
        // One attempt: AsyncHTTPClient's pool tries the connection again within its 10 s connect
        // timeout, then gives up (a transport failure was retried for a minute more).
        #expect(Date().timeIntervalSince(started) < 30)
    }
}
