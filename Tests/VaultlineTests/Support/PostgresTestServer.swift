import Foundation
@testable import VaultlineService
#if canImport(Glibc)
import Glibc
#endif

/// A PostgreSQL server on loopback for the coordinator tests of this process: Debian's
/// `postgresql` package (`/usr/lib/postgresql/<version>/bin`; tools/setup.sh installs it), a
/// cluster made by `initdb` in a temporary directory (trust authentication, loopback only), on a
/// port of its own. As root it runs as the `postgres` user (the server refuses root). A watchdog
/// shell stops it and removes the directory when this test process ends, however it ends.
/// `VAULTLINE_TEST_POSTGRES_URL` points the tests at a server started elsewhere instead.
enum PostgresTestServer {
    struct SkipReason: Error, CustomStringConvertible { var description: String }

    static let shared: Result<String, SkipReason> = start()

    static var isAvailable: Bool { (try? shared.get()) != nil }

    static var url: String {
        get throws { try shared.get() }
    }

    static var skipReason: String {
        if case .failure(let reason) = shared { return reason.description }
        return ""
    }

    private static func start() -> Result<String, SkipReason> {
        let env = ProcessInfo.processInfo.environment
        if let url = env["VAULTLINE_TEST_POSTGRES_URL"], !url.isEmpty { return .success(url) }
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).compactMap(Int.init).sorted()
        guard let version = versions.last else {
            return .failure(SkipReason(description: "no PostgreSQL server: Debian's postgresql package is not installed (tools/setup.sh installs it)"))
        }
        let bin = "/usr/lib/postgresql/\(version)/bin"
        guard let port = try? freeLoopbackPort() else { return .failure(SkipReason(description: "no free loopback port")) }
        let directory = "/tmp/vaultline-pg-\(getpid())-\(port)"
        // The server refuses to run as root: as root, initdb and postgres run as `postgres`.
        let asServer = getuid() == 0 ? "setpriv --reuid=postgres --regid=postgres --init-groups --" : ""
        let script = """
            set -e
            mkdir -p '\(directory)'
            \(getuid() == 0 ? "chown postgres '\(directory)'" : "")
            \(asServer) '\(bin)/initdb' -D '\(directory)/data' -A trust -U vaultline -E UTF8 --no-sync >'\(directory)/initdb.log' 2>&1
            \(asServer) '\(bin)/postgres' -D '\(directory)/data' -p \(port) -k '\(directory)' -c listen_addresses=127.0.0.1 \
                -c fsync=off -c max_connections=100 >'\(directory)/server.log' 2>&1 &
            p=$!
            set +e
            while kill -0 \(getpid()) 2>/dev/null && kill -0 $p 2>/dev/null; do sleep 0.5; done
            kill -INT $p 2>/dev/null; wait $p 2>/dev/null; rm -rf '\(directory)'
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch {
            return .failure(SkipReason(description: "PostgreSQL could not start: \(error)"))
        }
        let deadline = Date(timeIntervalSinceNow: 60)
        while Date() < deadline {
            if S3TestServer.canConnect(port: port) { return .success("postgres://vaultline@127.0.0.1:\(port)/postgres?sslmode=disable") }
            if !process.isRunning {
                let log = (try? String(contentsOfFile: directory + "/initdb.log", encoding: .utf8)) ?? ""
                return .failure(SkipReason(description: "PostgreSQL did not start: \(log.suffix(400))"))
            }
            usleep(100_000)
        }
        return .failure(SkipReason(description: "PostgreSQL did not listen on port \(port) within 60 s"))
    }
}
