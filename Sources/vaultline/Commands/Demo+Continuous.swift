import Foundation
import GraphSimulator
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineCore
import VaultlineGraph
import VaultlineService

extension Demo {
    /// The demo's last step: `m365 serve` in this process for a few seconds while the tenant
    /// keeps changing, with the demo's short intervals; prints how soon each change was in a
    /// snapshot at site A.
    func continuousPhase(repository: Repository, client: GraphClient, sim: GraphSimulator, seconds: Double = 10, rate: Double = 5) async throws {
        var configuration = M365Service.Configuration()
        configuration.policy.rpoSeconds = 20
        configuration.policy.commitIntervalSeconds = 1
        configuration.policy.mailBaseSeconds = 1
        configuration.policy.driveBaseSeconds = 2
        configuration.policy.debounceSeconds = 0.5
        var quiet = Logger(label: "vaultline.demo")
        quiet.logLevel = .critical
        let commits = Mutex<[(time: Date, positions: [String: Int])]>([])
        let service = M365Service(repository: repository, client: client, configuration: configuration, metrics: ServiceMetrics(version: "demo"),
                                  state: ServiceState(rpoSeconds: 20, replicates: false), notifier: nil, logger: quiet) { result in
            guard let result, result.committed else { return }
            let positions = RPOBench.Captures.positions(M365State.decode(result.snapshot.sourceState))
            commits.withLock { $0.append((Date(), positions)) }
        }
        let group = ServiceGroup(configuration: .init(services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)], logger: quiet))
        let running = Task { try await group.run() }
        // The first pass polls every collection once (nothing new: no snapshot); the changes
        // start after it.
        let firstDeadline = Date().addingTimeInterval(120)
        while service.state.current.passes < 1 {
            guard Date() < firstDeadline else {
                await group.triggerGracefulShutdown()
                throw VaultlineError(.io, "the continuous service's first pass did not end in 120 s: \(service.state.current.lastError ?? "no error")")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        var rng = SplitMix64(seed: 12)
        var changes: [(time: Date, change: Tenant.Change)] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            try await Task.sleep(for: .milliseconds(Int64(1000 / rate)))
            if let change = sim.tenant.changeOne(seed: rng.next()) { changes.append((Date(), change)) }
        }
        func latencies() -> [Double] {
            let stored = commits.withLock { $0 }
            return changes.compactMap { time, change in
                stored.first { ($0.positions[change.collection] ?? -1) >= change.seq }.map { $0.time.timeIntervalSince(time) }
            }
        }
        let deadline = Date().addingTimeInterval(30)
        while latencies().count < changes.count && Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
        await group.triggerGracefulShutdown()
        try await running.value
        let spread = RPOBench.Report.Spread(latencies())
        guard spread.count == changes.count else {
            throw VaultlineError(.corrupt, "\(changes.count - spread.count) of \(changes.count) changes were not in a snapshot 30 s after the last")
        }
        let state = service.state.current
        print("   \(changes.count) changes in \(Int(seconds)) s; \(state.passes) passes, \(state.snapshotsCommitted) snapshots (a snapshot only when something changed)")
        print("   each change in a snapshot at site A after " + String(format: "p50 %.1f s, max %.1f s (RPO target 20 s at these intervals; default 5 min)", spread.p50, spread.max))
    }
}
