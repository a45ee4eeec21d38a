import Foundation
import GraphSimulator
import Logging
import ServiceLifecycle
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// A real Prometheus server (Debian's package) scrapes the service and evaluates the alert
/// rules we ship (tools/prometheus/vaultline.rules.yml); making the repository unreachable
/// fires the failing-pass alert.
@Suite("Continuous protection: Prometheus")
struct PrometheusScrapeTests {
    static let prometheus = "/usr/bin/prometheus"
    static let promtool = "/usr/bin/promtool"
    static var rulesFile: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/prometheus/vaultline.rules.yml").path
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: prometheus), "Debian's prometheus package is not installed (tools/setup.sh installs it)"),
          .timeLimit(.minutes(10)))
    func prometheusScrapesTheServiceAndTheAlertFiresWhenTheRepositoryIsGone() async throws {
        // The shipped rules are valid as Prometheus reads them.
        let check = try run(Self.promtool, ["check", "rules", Self.rulesFile])
        #expect(check == 0)

        let f = try await GraphFixture()
        let service = ContinuousServiceTests.service(f) {
            $0.policy.commitIntervalSeconds = 1
            $0.policy.mailBaseSeconds = 1
            $0.policy.driveBaseSeconds = 1
            $0.failureBackoffSeconds = 0.5
        }
        let port = try freeLoopbackPort()
        let http = StatusServer.application(host: "127.0.0.1", port: port, metrics: service.metrics, state: service.state, logger: Logger(label: "test.http"))
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: http), .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)], logger: Logger(label: "test.group")))
        let running = Task { try await group.run() }

        // The shipped rules with their `for:` windows shortened to a second.
        let dir = f.dir.path + "/prometheus"
        try FileSystem.makeDirectories(dir)
        let rules = String(decoding: try FileSystem.readFile(Self.rulesFile), as: UTF8.self)
            .replacingOccurrences(of: "for: 5m", with: "for: 1s").replacingOccurrences(of: "for: 2m", with: "for: 1s")
        try Fixtures.writeFile(dir + "/rules.yml", Array(rules.utf8))
        try Fixtures.writeFile(dir + "/prometheus.yml", Array("""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            rule_files: ["\(dir)/rules.yml"]
            scrape_configs:
              - job_name: vaultline
                static_configs:
                  - targets: ["127.0.0.1:\(port)"]
            """.utf8))
        let promPort = try freeLoopbackPort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.prometheus)
        server.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data", "--web.listen-address=127.0.0.1:\(promPort)"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let api = "http://127.0.0.1:\(promPort)/api/v1"

        // Scraped: Prometheus has the newest snapshot's time and no alert firing.
        let scraped = try await ContinuousServiceTests.poll(seconds: 180) {
            (try? await Self.query(api, "vaultline_m365_snapshot_last_timestamp_seconds")).map { $0 > 1_700_000_000 } ?? false
        }
        #expect(scraped, "Prometheus scraped the newest snapshot's time")
        #expect(try await Self.query(api, "vaultline_m365_last_pass_success") == 1)
        // (VaultlineDown may fire on the first evaluation, before the first scrape: it clears.)
        var firing: [String] = []
        let quiet = try await ContinuousServiceTests.poll(seconds: 180) {
            firing = (try? await Self.firing(api)) ?? ["no answer"]
            return firing.isEmpty
        }
        #expect(quiet, "alerts firing while the service is well: \(firing)")

        // The repository's directory replaced by a file: every pass fails, and the alert fires.
        let repoPath = f.dir.path + "/repo"
        #expect(rename(repoPath, repoPath + ".away") == 0)
        try Fixtures.writeFile(repoPath, [])
        let fired = try await ContinuousServiceTests.poll(seconds: 180) { (try? await Self.firing(api))?.contains("VaultlinePassFailing") ?? false }
        #expect(fired, "VaultlinePassFailing fires")

        await group.triggerGracefulShutdown()
        try await running.value
        await f.close()
    }

    /// The first sample of an instant query's answer.
    static func query(_ api: String, _ expression: String) async throws -> Double? {
        let encoded = expression.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? expression
        let answer = try JSONValue.parse(Array(try await ContinuousServiceTests.get(api + "/query?query=" + encoded).body.utf8))
        guard let sample = answer["data"]?["result"]?.array?.first?["value"]?.array, sample.count == 2 else { return nil }
        return sample[1].string.flatMap(Double.init)
    }

    /// The names of the alerts firing now.
    static func firing(_ api: String) async throws -> [String] {
        let answer = try JSONValue.parse(Array(try await ContinuousServiceTests.get(api + "/alerts").body.utf8))
        return (answer["data"]?["alerts"]?.array ?? []).filter { $0["state"]?.string == "firing" }.compactMap { $0["labels"]?["alertname"]?.string }
    }

    func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}
