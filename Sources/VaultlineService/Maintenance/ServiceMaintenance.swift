import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VaultlineCore
import VaultlineGraph

/// The service's housekeeping beside its passes (docs/OPERATIONS.md, "Retention, prune and
/// scrub in the service"): retention thinning of the tenant's snapshots every
/// `forgetEverySeconds`, and prune (once per `pruneEverySeconds`) and a paced scrub only inside
/// the maintenance window. Nothing starts while the RPO is at risk, and a scrub running when it
/// becomes so stops within one batch (its cursor kept); a prune in flight runs to its end, since
/// backups run beside it safely (its two phases). Each job runs on a thread of its own. When the
/// last forget and prune ran is kept in a small state file, so a restart does not redo them.
public final class ServiceMaintenance: Service {
    public struct Configuration: Sendable {
        /// Which snapshots are kept (nil: none are forgotten). The default keeps everything for
        /// 48 hours, the newest of each hour for 14 days and the newest of each day for a year.
        public var retention: ForgetPolicy? = Self.defaultRetention
        public var forgetEverySeconds = 3_600.0
        public var window = MaintenanceWindow.never
        public var pruneEverySeconds = 86_400.0
        public var prune = Pruner.Options()
        /// The scrub's depth; nil runs no scrub.
        public var scrubDepth: Scrubber.Depth? = .keyless
        /// A whole scrub pass is spread over this long (only window time reads).
        public var scrubPeriod: TimeInterval = 30 * 86_400
        public var scrubBytesPerSecond: Double? = Double(64 << 20)
        /// A scrub slice starts at most this often in the window, and runs at most `scrubSliceSeconds`.
        public var scrubEverySeconds = 900.0
        public var scrubSliceSeconds = 600.0
        /// How often the loop looks at the clock and the RPO.
        public var checkEverySeconds = 5.0
        /// Where the state file and the scrub cursor live.
        public var stateDirectory = FileSystem.stateDirectory()
        public init() {}

        public static var defaultRetention: ForgetPolicy {
            var policy = ForgetPolicy()
            policy.within = 48 * 3_600
            policy.withinHourly = 14 * 86_400
            policy.withinDaily = 365 * 86_400
            return policy
        }
    }

    /// Persisted between runs.
    struct Persisted: Codable {
        var lastForget: Date?
        var lastPrune: Date?
        var lastScrub: Date?
    }

    let repository: Repository
    let configuration: Configuration
    let metrics: ServiceMetrics
    let state: ServiceState
    let logger: Logger
    /// True while the RPO is at risk: nothing starts and a scrub stops.
    let atRisk: @Sendable () -> Bool
    /// With a coordinator: whether this worker holds the tenant's maintenance lease (one worker
    /// runs the jobs); nil runs them here.
    let mayRun: (@Sendable () async -> Bool)?
    /// Called once when the service stops (with a coordinator: the lease is given back, so
    /// another worker takes the jobs over at once rather than when it runs out).
    let onStop: (@Sendable () async -> Void)?
    /// The snapshots thinned: this tenant's (its Graph base), not other sources in the repository.
    let graphBase: String
    /// Called after each job, for tests.
    let onJob: (@Sendable (String) -> Void)?
    /// Set on graceful shutdown: a scrub stops at its next batch.
    let stopping = Atomic<Bool>(false)

    public init(repository: Repository, graphBase: String, configuration: Configuration, metrics: ServiceMetrics, state: ServiceState,
                logger: Logger, atRisk: @escaping @Sendable () -> Bool, mayRun: (@Sendable () async -> Bool)? = nil,
                onStop: (@Sendable () async -> Void)? = nil, onJob: (@Sendable (String) -> Void)? = nil) {
        self.repository = repository
        self.graphBase = graphBase
        self.configuration = configuration
        self.metrics = metrics
        self.state = state
        self.logger = logger
        self.atRisk = atRisk
        self.mayRun = mayRun
        self.onStop = onStop
        self.onJob = onJob
    }

    var statePath: String { configuration.stateDirectory + "/serve-maintenance-\(repository.config.id.prefix(16)).json" }
    var scrubStatePath: String {
        Scrubber.statePath(in: configuration.stateDirectory, repositoryID: repository.config.id, depth: configuration.scrubDepth ?? .keyless)
    }

    public func run() async throws {
        var persisted = load()
        state.update { $0.maintenance = ServiceStatus.Maintenance(window: configuration.window.description) }
        publish(persisted)
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                await round(&persisted)
                try? await cancelWhenGracefulShutdown {
                    try await Task.sleep(for: .milliseconds(Int64(self.configuration.checkEverySeconds * 1000)))
                }
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
        }
        // Not cancelled with the loop: giving the lease back is worth the statement it takes.
        if let onStop { await Task { await onStop() }.value }
    }

    /// One look at the clock: at most one job is started.
    func round(_ persisted: inout Persisted) async {
        let now = Date()
        if atRisk() {
            setPaused("the RPO is at risk: backups first")
            return
        }
        if let mayRun, !(await mayRun()) {
            setPaused("another worker holds the tenant's maintenance")
            return
        }
        setPaused(nil)
        if configuration.retention != nil, Self.due(persisted.lastForget, every: configuration.forgetEverySeconds, now: now) {
            await job("forget") { try self.forget() }
            persisted.lastForget = Date()
        } else if configuration.window.contains(now), Self.due(persisted.lastPrune, every: configuration.pruneEverySeconds, now: now) {
            await job("prune") { try self.prune() }
            persisted.lastPrune = Date()
        } else if configuration.scrubDepth != nil, configuration.window.contains(now), Self.due(persisted.lastScrub, every: configuration.scrubEverySeconds, now: now) {
            await job("scrub") { try self.scrub() }
            persisted.lastScrub = Date()
        } else {
            return
        }
        save(persisted)
        publish(persisted)
    }

    static func due(_ last: Date?, every: Double, now: Date) -> Bool {
        guard let last else { return true }
        // A clock set back: due now rather than after the jump.
        return now.timeIntervalSince(last) >= every || last > now
    }

    /// Runs a job on its own thread; a failure is logged, counted and shown, and tried again
    /// at the job's next turn.
    func job(_ name: String, _ body: @escaping @Sendable () throws -> String) async {
        state.update { $0.maintenance?.running = name }
        let started = Date()
        do {
            let summary = try await BlockingJob.run("vaultline-\(name)", body)
            metrics.recordMaintenance(name, succeeded: true, at: Date())
            logger.info("\(name) finished", metadata: ["seconds": "\(String(format: "%.2f", Date().timeIntervalSince(started)))", "result": "\(summary)"])
            state.update { $0.maintenance?.lastErrors[name] = nil }
        } catch {
            metrics.recordMaintenance(name, succeeded: false, at: Date())
            logger.error("\(name) failed", metadata: ["error": "\(error)"])
            state.update { $0.maintenance?.lastErrors[name] = "\(error)" }
        }
        state.update { $0.maintenance?.running = nil }
        onJob?(name)
    }

    func forget() throws -> String {
        guard let policy = configuration.retention else { return "no retention" }
        let base = graphBase
        let decisions = try repository.forget(policy: policy, grouping: .path, only: { snapshot in
            snapshot.sourceKind == M365Backup.sourceKind && !snapshot.paths.isEmpty
                && snapshot.paths.allSatisfy { $0 == base || $0.hasPrefix(base + "/") }
        }, dryRun: false)
        let removed = decisions.filter { !$0.keep }.count
        metrics.forgetRemoved.increment(by: Int64(removed))
        return "\(removed) of \(decisions.count) snapshots removed"
    }

    func prune() throws -> String {
        let report = try Pruner(repository: repository, options: configuration.prune).run()
        metrics.pruneFreed.increment(by: Int64(clamping: report.bytesFreed))
        return "\(report.packsMarked) packs marked, \(report.packsDeleted) deleted, \(report.bytesFreed) bytes freed"
    }

    func scrub() throws -> String {
        guard let depth = configuration.scrubDepth else { return "no scrub" }
        var options = Scrubber.Options(statePath: scrubStatePath)
        options.depth = depth
        options.paced = true
        options.period = configuration.scrubPeriod
        options.bytesPerSecond = configuration.scrubBytesPerSecond
        options.maxSeconds = configuration.scrubSliceSeconds
        options.workers = 1
        let window = configuration.window, atRisk = self.atRisk
        options.shouldStop = { [self] in stopping.load(ordering: .relaxed) || atRisk() || !window.contains(Date()) }
        let report = try Scrubber(backend: repository.backend, key: depth == .deep ? repository.key : nil, options: options).run()
        for damage in report.damaged {
            logger.error("damaged file", metadata: ["file": "\(damage.file)", "problem": "\(damage.problem)"])
        }
        metrics.recordScrub(report)
        state.update { s in
            s.maintenance?.scrubPassFraction = report.passCompleted ? 1 : report.passFraction
            s.maintenance?.scrubDamaged += report.damaged.map(\.file)
            s.maintenance?.lastCompletedScrubPass = report.lastCompletedPass.map { UTCTimestamp.rfc3339($0) }
        }
        if let warning = report.warning { logger.warning("\(warning)") }
        return "\(report.filesRead) files, \(report.bytesRead) bytes read, \(report.damaged.count) damaged, pass \(Int(report.passFraction * 100))%"
    }

    func setPaused(_ reason: String?) {
        metrics.maintenancePaused.set(to: reason == nil ? 0 : 1)
        state.update { $0.maintenance?.paused = reason }
    }

    func publish(_ persisted: Persisted) {
        state.update { s in
            s.maintenance?.lastForget = persisted.lastForget.map { UTCTimestamp.rfc3339($0) }
            s.maintenance?.lastPrune = persisted.lastPrune.map { UTCTimestamp.rfc3339($0) }
            s.maintenance?.lastScrub = persisted.lastScrub.map { UTCTimestamp.rfc3339($0) }
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    func load() -> Persisted {
        guard FileSystem.exists(statePath), let bytes = try? FileSystem.readFile(statePath),
              let persisted = try? Self.decoder.decode(Persisted.self, from: Data(bytes)) else {
            // Missing or damaged: every job is due once, which is only early work, never lost data.
            return Persisted()
        }
        return persisted
    }

    func save(_ persisted: Persisted) {
        do {
            try FileSystem.makeDirectories(configuration.stateDirectory)
            try FileSystem.replaceFile(statePath, with: Array(try Self.encoder.encode(persisted)))
        } catch {
            logger.warning("could not keep the maintenance state; the jobs run again after a restart", metadata: ["error": "\(error)"])
        }
    }
}
