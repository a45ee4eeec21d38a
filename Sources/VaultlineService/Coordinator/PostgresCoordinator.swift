import Foundation
import Logging
import NIOSSL
import PostgresNIO
import VaultlineCore

/// The shared state of several `m365 serve --coordinator` workers on one tenant, in PostgreSQL
/// (docs/OPERATIONS.md, "Many workers"). One row per ``WorkTask``: who holds it and until when
/// (a lease on the server's clock, so workers' clocks never matter), when it is next due, and
/// the id of its newest snapshot, whose source state holds the task's delta links: a worker
/// that takes the task over starts from there. A task's snapshot id is written in the same
/// statement that gives its lease back, and only by the lease's holder.
public final class PostgresCoordinator: Sendable {
    public struct Claimed: Sendable, Equatable {
        public var task: WorkTask
        /// The task's newest snapshot recorded here (nil: none yet).
        public var snapshotID: String?
        /// How many times in a row it was taken without being completed (1: the first try).
        public var attempts: Int
    }

    public struct KindSummary: Sendable, Equatable {
        public var kind: WorkTask.Kind
        public var tasks: Int
        public var neverSynced: Int
        /// The oldest last completion among those synced.
        public var oldestSync: Date?
        public var leased: Int
        /// The oldest copy: each task's last completion, or its registration if it has none
        /// (what the RPO is measured against: a task never synced is as old as it is known).
        public var oldestCopy: Date?
        /// Tasks whose last run stored changes.
        public var changing = 0
    }

    /// The tenant the rows belong to (several tenants may share a database).
    public let tenant: String
    public let worker: String
    let client: PostgresClient
    let runner: Task<Void, Never>
    let logger: Logger
    /// No statement waits longer (seconds): the server's `statement_timeout` and the client's.
    let statementSeconds: Double

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=disable|prefer|require]`;
    /// the password may also come from `PGPASSWORD`). Nothing is sent until the first call.
    public init(url: String, tenant: String, worker: String, statementSeconds: Double = 30, logger: Logger) throws {
        var configuration = try Self.configuration(url)
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.additionalStartupParameters = [("statement_timeout", String(Int(statementSeconds * 1000))),
                                                             ("application_name", "vaultline")]
        configuration.options.maximumConnections = 4
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.runner = Task { await client.run() }
        self.tenant = tenant
        self.worker = worker
        self.logger = logger
        self.statementSeconds = statementSeconds
    }

    public func close() {
        runner.cancel()
    }

    static func configuration(_ url: String) throws -> PostgresClient.Configuration {
        guard let parts = URLComponents(string: url), parts.scheme == "postgres" || parts.scheme == "postgresql",
              let host = parts.host, !host.isEmpty, let user = parts.user, !user.isEmpty else {
            throw VaultlineError(.invalidArgument, "the coordinator is postgres://user[:password]@host[:port]/database", object: Self.redacted(url))
        }
        let database = String(parts.path.drop { $0 == "/" })
        let password = parts.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
        let tls: PostgresClient.Configuration.TLS
        switch parts.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer" {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-full": tls = .require(.makeClientConfiguration())
        case let other: throw VaultlineError(.invalidArgument, "sslmode takes disable, prefer or require", object: other)
        }
        return .init(host: host, port: parts.port ?? 5432, username: user, password: password, database: database.isEmpty ? nil : database, tls: tls)
    }

    /// The URL without its password, for messages and logs.
    public static func redacted(_ url: String) -> String {
        guard var parts = URLComponents(string: url), parts.password != nil else { return url }
        parts.password = "***"
        return parts.string ?? "postgres://…"
    }

    // MARK: Schema

    /// Creates the tables when they are missing (one worker at a time: an advisory lock).
    public func migrate() async throws {
        try await bounded("create the tables") {
            try await self.client.withTransaction(logger: self.logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(7316449000001)", logger: self.logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS vaultline_tasks (
                        tenant TEXT NOT NULL,
                        task TEXT NOT NULL,
                        snapshot_id TEXT,
                        lease_owner TEXT,
                        lease_until TIMESTAMPTZ,
                        not_before TIMESTAMPTZ NOT NULL DEFAULT now(),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        runs BIGINT NOT NULL DEFAULT 0,
                        last_synced TIMESTAMPTZ,
                        last_changed TIMESTAMPTZ,
                        last_error TEXT,
                        PRIMARY KEY (tenant, task))
                    """, logger: self.logger)
                try await connection.query(
                    "ALTER TABLE vaultline_tasks ADD COLUMN IF NOT EXISTS created TIMESTAMPTZ NOT NULL DEFAULT now()", logger: self.logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS vaultline_workers (
                        tenant TEXT NOT NULL,
                        worker TEXT NOT NULL,
                        started TIMESTAMPTZ NOT NULL DEFAULT now(),
                        last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
                        PRIMARY KEY (tenant, worker))
                    """, logger: self.logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS vaultline_tenants (
                        tenant TEXT NOT NULL PRIMARY KEY,
                        maintenance_owner TEXT,
                        maintenance_until TIMESTAMPTZ)
                    """, logger: self.logger)
                // The drive budget's columns (PostgresCoordinator+Tenant), also added to a table
                // an earlier build created.
                try await connection.query("""
                    ALTER TABLE vaultline_tenants ADD COLUMN IF NOT EXISTS drive_next TIMESTAMPTZ,
                        ADD COLUMN IF NOT EXISTS drive_paused_until TIMESTAMPTZ, ADD COLUMN IF NOT EXISTS drive_paused_by TEXT,
                        ADD COLUMN IF NOT EXISTS notify_client_state TEXT
                    """, logger: self.logger)
                // Change-notification subscriptions (PostgresSubscriptionStore).
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS vaultline_subscriptions (
                        tenant TEXT NOT NULL,
                        id TEXT NOT NULL,
                        target TEXT NOT NULL,
                        expires TIMESTAMPTZ NOT NULL,
                        PRIMARY KEY (tenant, id))
                    """, logger: self.logger)
            }
        }
    }

    // MARK: Tasks

    /// Adds the tasks not yet known (a new mailbox, a new site); known ones are left as they are.
    public func register(_ tasks: [WorkTask]) async throws {
        guard !tasks.isEmpty else { return }
        let ids = tasks.map(\.id)
        try await bounded("register tasks") {
            try await self.client.query("""
                INSERT INTO vaultline_tasks (tenant, task) SELECT \(self.tenant), unnest(\(ids)::text[])
                ON CONFLICT (tenant, task) DO NOTHING
                """, logger: self.logger)
        }
    }

    /// Takes up to `limit` due tasks nobody holds (or whose holder's lease ran out), leased for
    /// `leaseSeconds`; the longest-due first. Rows locked by another worker's claim are skipped.
    public func claim(limit: Int, leaseSeconds: Double) async throws -> [Claimed] {
        try await bounded("claim tasks") {
            try await self.client.query("""
                INSERT INTO vaultline_workers (tenant, worker) VALUES (\(self.tenant), \(self.worker))
                ON CONFLICT (tenant, worker) DO UPDATE SET last_seen = now()
                """, logger: self.logger)
            let rows = try await self.client.query("""
                UPDATE vaultline_tasks AS t
                SET lease_owner = \(self.worker), lease_until = now() + make_interval(secs => \(leaseSeconds)), attempts = t.attempts + 1
                WHERE (t.tenant, t.task) IN (
                    SELECT tenant, task FROM vaultline_tasks
                    WHERE tenant = \(self.tenant) AND not_before <= now() AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY not_before, task LIMIT \(max(0, limit))
                    FOR UPDATE SKIP LOCKED)
                RETURNING t.task, t.snapshot_id, t.attempts
                """, logger: self.logger)
            var out: [Claimed] = []
            for try await (id, snapshot, attempts) in rows.decode((String, String?, Int32).self) {
                guard let task = WorkTask(id: id) else {
                    self.logger.warning("a task row that is not ours; left alone", metadata: ["task": "\(UntrustedText.escaped(id))"])
                    continue
                }
                out.append(Claimed(task: task, snapshotID: snapshot, attempts: Int(attempts)))
            }
            return out
        }
    }

    /// Extends the leases this worker still holds; returns the tasks whose lease it lost.
    public func renew(_ tasks: [WorkTask], leaseSeconds: Double) async throws -> Set<WorkTask> {
        guard !tasks.isEmpty else { return [] }
        let ids = tasks.map(\.id)
        return try await bounded("renew leases") {
            let rows = try await self.client.query("""
                UPDATE vaultline_tasks SET lease_until = now() + make_interval(secs => \(leaseSeconds))
                WHERE tenant = \(self.tenant) AND task = ANY(\(ids)::text[]) AND lease_owner = \(self.worker) AND lease_until >= now()
                RETURNING task
                """, logger: self.logger)
            var kept = Set<String>()
            for try await id in rows.decode(String.self) { kept.insert(id) }
            return Set(tasks.filter { !kept.contains($0.id) })
        }
    }

    /// Records a finished run and gives the lease back: its snapshot (nil: nothing was stored,
    /// the recorded one stays), whether anything changed, and when the task is next due.
    /// False when this worker no longer held the lease (another may have run the task since):
    /// nothing is written then.
    public func complete(_ task: WorkTask, snapshotID: String?, changed: Bool, nextDueSeconds: Double) async throws -> Bool {
        try await bounded("complete a task") {
            let rows = try await self.client.query("""
                UPDATE vaultline_tasks SET snapshot_id = COALESCE(\(snapshotID), snapshot_id), lease_owner = NULL, lease_until = NULL,
                    attempts = 0, runs = runs + 1, last_synced = now(), last_error = NULL,
                    last_changed = CASE WHEN \(changed) THEN now() ELSE last_changed END,
                    not_before = now() + make_interval(secs => \(nextDueSeconds))
                WHERE tenant = \(self.tenant) AND task = \(task.id) AND lease_owner = \(self.worker) AND lease_until >= now()
                RETURNING task
                """, logger: self.logger)
            var count = 0
            for try await _ in rows.decode(String.self) { count += 1 }
            return count == 1
        }
    }

    /// Gives the lease back after a failed run; the task is due again after `retrySeconds`.
    public func fail(_ task: WorkTask, error: String, retrySeconds: Double) async throws {
        let message = String(error.prefix(2_000))
        try await bounded("record a failure") {
            try await self.client.query("""
                UPDATE vaultline_tasks SET lease_owner = NULL, lease_until = NULL, last_error = \(message),
                    not_before = now() + make_interval(secs => \(retrySeconds))
                WHERE tenant = \(self.tenant) AND task = \(task.id) AND lease_owner = \(self.worker)
                """, logger: self.logger)
        }
    }

    /// Makes tasks due now (every task of the tenant when nil): what a change notification or
    /// an administrator asks. A task being run stays with its holder.
    public func markDue(_ tasks: [WorkTask]? = nil) async throws {
        let ids = tasks?.map(\.id)
        try await bounded("mark tasks due") {
            try await self.client.query("""
                UPDATE vaultline_tasks SET not_before = now()
                WHERE tenant = \(self.tenant) AND (\(ids)::text[] IS NULL OR task = ANY(\(ids)::text[]))
                """, logger: self.logger)
        }
    }

    /// Forgets every task and worker of the tenant (a tenant no longer backed up; tests).
    public func deleteTenant() async throws {
        try await bounded("delete the tenant's rows") {
            try await self.client.withTransaction(logger: self.logger) { connection in
                try await connection.query("DELETE FROM vaultline_tasks WHERE tenant = \(self.tenant)", logger: self.logger)
                try await connection.query("DELETE FROM vaultline_workers WHERE tenant = \(self.tenant)", logger: self.logger)
                try await connection.query("DELETE FROM vaultline_tenants WHERE tenant = \(self.tenant)", logger: self.logger)
                try await connection.query("DELETE FROM vaultline_subscriptions WHERE tenant = \(self.tenant)", logger: self.logger)
            }
        }
    }

    /// Every task's newest recorded snapshot (what a restore of the whole tenant reads).
    public func snapshots() async throws -> [WorkTask: String] {
        try await bounded("read the tasks") {
            let rows = try await self.client.query("""
                SELECT task, snapshot_id FROM vaultline_tasks WHERE tenant = \(self.tenant) AND snapshot_id IS NOT NULL
                """, logger: self.logger)
            var out: [WorkTask: String] = [:]
            for try await (id, snapshot) in rows.decode((String, String).self) {
                if let task = WorkTask(id: id) { out[task] = snapshot }
            }
            return out
        }
    }

    /// Per kind: how many tasks, how many never synced, the oldest sync, how many are held.
    public func summary() async throws -> [KindSummary] {
        try await bounded("summarise the tasks") {
            let rows = try await self.client.query("""
                SELECT split_part(task, ':', 1), count(*)::int4, count(*) FILTER (WHERE last_synced IS NULL)::int4, min(last_synced),
                       count(*) FILTER (WHERE lease_until >= now())::int4, min(COALESCE(last_synced, created)),
                       count(*) FILTER (WHERE last_changed = last_synced)::int4
                FROM vaultline_tasks WHERE tenant = \(self.tenant) GROUP BY 1 ORDER BY 1
                """, logger: self.logger)
            var out: [KindSummary] = []
            for try await (kind, tasks, never, oldest, leased, copy, changing) in rows.decode((String, Int32, Int32, Date?, Int32, Date?, Int32).self) {
                guard let kind = WorkTask.Kind(rawValue: kind) else { continue }
                out.append(KindSummary(kind: kind, tasks: Int(tasks), neverSynced: Int(never), oldestSync: oldest, leased: Int(leased),
                                       oldestCopy: copy, changing: Int(changing)))
            }
            return out
        }
    }

    /// Runs `body` within the statement bound (the server's `statement_timeout` covers a slow
    /// statement; this covers a server or network that stops answering), naming what timed out.
    @discardableResult
    func bounded<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let seconds = statementSeconds + 5
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                return nil
            }
            defer { group.cancelAll() }
            do {
                guard let first = try await group.next(), let value = first else {
                    throw VaultlineError(.io, "timed out: the coordinator did not answer within \(Int(seconds)) s", object: what)
                }
                return value
            } catch let error as PSQLError {
                throw VaultlineError(.io, "the coordinator: " + UntrustedText.escaped(error.serverInfo?[.message] ?? String(describing: error.code)), object: what)
            }
        }
    }
}
