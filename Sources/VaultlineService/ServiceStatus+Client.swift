import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import VaultlineCore

extension ServiceStatus {
    /// The largest `/status` answer read (a tenant's status is a few kilobytes).
    static let maximumBytes = 1 << 20

    /// Reads a running service's `/status` (`url` is its base, e.g. `http://127.0.0.1:9464`);
    /// gives up after `timeout` seconds.
    public static func fetch(from url: String, timeout: Double = 10) async throws -> ServiceStatus {
        let base = url.hasSuffix("/") ? String(url.dropLast()) : url
        var request = HTTPClientRequest(url: base + "/status")
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
        guard response.status == .ok else {
            throw VaultlineError(.io, "the service answered \(response.status.code)", object: base + "/status")
        }
        let body = try await response.body.collect(upTo: maximumBytes)
        do {
            return try JSONDecoder().decode(ServiceStatus.self, from: Data(buffer: body))
        } catch {
            throw VaultlineError(.corrupt, "the answer is not a service status: \(error)", object: base + "/status")
        }
    }

    /// A few lines for a person: each site's newest snapshot and its age, each kind's oldest
    /// collection and its age.
    public func summary(now: Date) -> String {
        func age(_ text: String?) -> String {
            guard let text, let date = UTCTimestamp.parseRFC3339(text) else { return "never" }
            return "\(text) (\(Int(now.timeIntervalSince(date).rounded())) s ago)"
        }
        var lines = ["status: \(lastStatus), \(passes) passes, \(snapshotsCommitted) snapshots stored; next pass \(nextRun ?? "unknown")"]
        if let lastError { lines.append("last error: \(lastError)") }
        lines.append("site A: newest snapshot \(siteA.lastSnapshotID.map { String($0.prefix(12)) } ?? "none") at \(age(siteA.lastSnapshotTime))")
        if let siteB {
            lines.append("site B: newest snapshot \(siteB.lastSnapshotID.map { String($0.prefix(12)) } ?? "none") at \(age(siteB.lastSnapshotTime))")
            if let error = siteB.lastError { lines.append("site B error: \(error)") }
        }
        for (kind, summary) in collections.sorted(by: { $0.key < $1.key }) {
            lines.append("\(kind): \(summary.count) collections, \(summary.dirty) changing, oldest synced \(age(summary.oldestSync))")
        }
        lines.append(String(format: "RPO %.0f s, poll interval cap %.0f s, pass p99 %.1f s; %@", rpoSeconds, pollCapSeconds, passSecondsP99,
                            rpoAtRisk ? "AT RISK" : "within the RPO"))
        return lines.joined(separator: "\n")
    }
}
