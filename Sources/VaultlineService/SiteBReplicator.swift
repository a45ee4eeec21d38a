import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineCore
import VaultlineReplication

/// Sends each new snapshot to site B as soon as it is stored, in-process: the replication
/// sender (docs/PROTOCOL.md) sends every file the receiver lacks, snapshot files last. Signals
/// that arrive while a transfer runs are coalesced into one more transfer after it, which
/// carries the newest snapshot. On graceful shutdown a transfer in flight runs to its end; a
/// snapshot not yet sent goes with the next start's first transfer. A failed transfer is retried with a doubling delay (from 2 s
/// to 60 s); the files already acknowledged stay at site B and are not sent again.
public final class SiteBReplicator: Service {
    let repositoryPath: String
    let options: ReplicationSender.Options
    let logger: Logger
    let metrics: ServiceMetrics
    let state: ServiceState
    private let pending = Mutex<(id: String, time: Date)?>(nil)

    public init(repositoryPath: String, options: ReplicationSender.Options, metrics: ServiceMetrics, state: ServiceState, logger: Logger) {
        self.repositoryPath = repositoryPath
        self.options = options
        self.metrics = metrics
        self.state = state
        self.logger = logger
    }

    /// A snapshot was stored: replicate it (and whatever came before it) soon.
    func signal(snapshotID: String, time: Date) {
        pending.withLock { $0 = (snapshotID, time) }
    }

    public func run() async throws {
        var failures = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            guard let newest = pending.withLock({ p in defer { p = nil }; return p }) else {
                // Nothing to send: look again in 100 ms (a small part of the 60 s lag allowed).
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(100)) }
                continue
            }
            do {
                let summary = try await ReplicationSender(repositoryPath: repositoryPath, options: options, logger: logger).run()
                failures = 0
                metrics.replicationBytes?.increment(by: summary.bytesSent)
                metrics.replicationLast?.set(to: newest.time.timeIntervalSince1970)
                state.update { s in
                    s.siteB?.lastSnapshotID = newest.id
                    s.siteB?.lastSnapshotTime = UTCTimestamp.rfc3339(newest.time)
                    s.siteB?.lastError = nil
                }
                logger.info("replicated", metadata: ["snapshot": "\(newest.id.prefix(12))", "files": "\(summary.filesSent)", "bytes": "\(summary.bytesSent)"])
            } catch {
                failures += 1
                metrics.replicationFailures?.increment()
                state.update { $0.siteB?.lastError = "\(error)" }
                logger.warning("replication failed", metadata: ["error": "\(error)"])
                // Put back unless a newer snapshot arrived meanwhile, then wait before the retry.
                pending.withLock { p in if p == nil { p = newest } }
                let delay = min(60.0, 2 * pow(2, Double(min(failures - 1, 6))))
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int64(delay * 1000))) }
            }
        }
    }
}
