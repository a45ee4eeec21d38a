import ArgumentParser
import Foundation
import VaultlineCore
import VaultlineService

/// `m365 serve`'s retention, prune and scrub (docs/OPERATIONS.md, "Retention, prune and scrub
/// in the service").
struct ServeMaintenanceOptions: ParsableArguments {
    @Option(help: "Keep every snapshot this recent (relative to the newest of its path).")
    var keepWithin = "48h"
    @Option(help: "Keep the newest snapshot of each hour this far back.")
    var keepWithinHourly = "14d"
    @Option(help: "Keep the newest snapshot of each day this far back.")
    var keepWithinDaily = "365d"
    @Option(help: "Keep the newest snapshot of each ISO week this far back (none by default).")
    var keepWithinWeekly: String?
    @Option(help: "Keep the newest snapshot of each month this far back (none by default).")
    var keepWithinMonthly: String?
    @Flag(help: "Forget no snapshot (no retention thinning); prune and scrub still run.")
    var noRetention = false
    @Option(help: "Retention thinning runs this often.")
    var forgetEvery = "1h"
    @Option(help: "When prune and scrub may run, in local time: HH:MM-HH:MM (may cross midnight), always or never.")
    var maintenanceWindow = "01:00-05:00"
    @Option(help: "Prune at most this often (inside the window).")
    var pruneEvery = "24h"
    @Option(help: "How long packs marked by prune wait before they are deleted.")
    var pruneGrace = "6h"
    @Option(help: "Scrub depth: keyless (every file's SHA-256), deep (also every blob decrypted), or off.")
    var scrub = "keyless"
    @Option(help: "A whole scrub pass is spread over this long.")
    var scrubPeriod = "30d"
    @Option(help: "Cap on the scrub's reads: 64M (bytes/s), 500mbit.")
    var scrubRate = "64M"

    func configuration() throws -> ServiceMaintenance.Configuration {
        var configuration = ServiceMaintenance.Configuration()
        if noRetention {
            configuration.retention = nil
        } else {
            var policy = ForgetPolicy()
            policy.within = try parseDuration(keepWithin, option: "--keep-within")
            policy.withinHourly = try parseDuration(keepWithinHourly, option: "--keep-within-hourly")
            policy.withinDaily = try parseDuration(keepWithinDaily, option: "--keep-within-daily")
            policy.withinWeekly = try keepWithinWeekly.map { try parseDuration($0, option: "--keep-within-weekly") }
            policy.withinMonthly = try keepWithinMonthly.map { try parseDuration($0, option: "--keep-within-monthly") }
            configuration.retention = policy
        }
        configuration.forgetEverySeconds = try bounded(parseDuration(forgetEvery, option: "--forget-every"), "--forget-every", 60...(7 * 86_400))
        configuration.window = try MaintenanceWindow(parsing: maintenanceWindow)
        configuration.pruneEverySeconds = try bounded(parseDuration(pruneEvery, option: "--prune-every"), "--prune-every", 60...(90 * 86_400))
        configuration.prune.grace = try parseDuration(pruneGrace, option: "--prune-grace")
        switch scrub {
        case "off": configuration.scrubDepth = nil
        case let depth:
            guard let parsed = Scrubber.Depth(rawValue: depth) else {
                throw VaultlineError(.invalidArgument, "--scrub takes keyless, deep or off, not \(depth)")
            }
            configuration.scrubDepth = parsed
        }
        configuration.scrubPeriod = try bounded(parseDuration(scrubPeriod, option: "--scrub-period"), "--scrub-period", 3_600...(3_650 * 86_400))
        configuration.scrubBytesPerSecond = try parseRate(scrubRate)
        return configuration
    }

    private func bounded(_ value: Double, _ option: String, _ range: ClosedRange<Double>) throws -> Double {
        guard range.contains(value) else {
            throw VaultlineError(.invalidArgument, "\(option) must be between \(Int(range.lowerBound)) s and \(Int(range.upperBound)) s, not \(Int(value)) s")
        }
        return value
    }
}
