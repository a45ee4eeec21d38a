import Foundation
import PostgresNIO

/// The tenant's row in `vaultline_tenants`: which worker runs the maintenance (a lease on the
/// server's clock, like the tasks'), and how far behind the workers are.
extension PostgresCoordinator {
    /// Takes or renews the tenant's maintenance lease for `leaseSeconds`; false when another
    /// worker holds it. One worker thins, prunes and scrubs the repository; when it stops, its
    /// lease runs out and another takes the jobs over.
    public func holdMaintenance(leaseSeconds: Double) async throws -> Bool {
        try await bounded("hold the maintenance lease") {
            try await self.client.query("INSERT INTO vaultline_tenants (tenant) VALUES (\(self.tenant)) ON CONFLICT (tenant) DO NOTHING",
                                        logger: self.logger)
            let rows = try await self.client.query("""
                UPDATE vaultline_tenants SET maintenance_owner = \(self.worker), maintenance_until = now() + make_interval(secs => \(leaseSeconds))
                WHERE tenant = \(self.tenant)
                  AND (maintenance_owner = \(self.worker) OR maintenance_until IS NULL OR maintenance_until < now())
                RETURNING tenant
                """, logger: self.logger)
            var held = false
            for try await _ in rows.decode(String.self) { held = true }
            return held
        }
    }

    /// Gives the maintenance lease back (a worker stopping), so another takes it at once.
    public func releaseMaintenance() async throws {
        try await bounded("release the maintenance lease") {
            try await self.client.query("""
                UPDATE vaultline_tenants SET maintenance_owner = NULL, maintenance_until = NULL
                WHERE tenant = \(self.tenant) AND maintenance_owner = \(self.worker)
                """, logger: self.logger)
        }
    }

    /// Tasks that have been due for longer than `seconds` without a worker taking them: the
    /// workers are behind, and maintenance waits.
    public func overdueTasks(olderThanSeconds seconds: Double) async throws -> Int {
        try await bounded("count overdue tasks") {
            let rows = try await self.client.query("""
                SELECT count(*)::int4 FROM vaultline_tasks
                WHERE tenant = \(self.tenant) AND not_before < now() - make_interval(secs => \(seconds))
                  AND (lease_until IS NULL OR lease_until < now())
                """, logger: self.logger)
            var count = 0
            for try await n in rows.decode(Int32.self) { count = Int(n) }
            return count
        }
    }
}

/// The tenant's drive budget, shared by its workers (``SharedDriveBudget``): `drive_next` is
/// when the next resource unit may be spent, on the server's clock (a token bucket kept as its
/// theoretical arrival time: each draw moves it `units / rate` seconds on, never from further
/// back than `burst` seconds ago), and `drive_paused_until` is the end of the longest pause a
/// 429 asked for, `drive_paused_by` the worker it answered.
extension PostgresCoordinator {
    public struct DriveGrant: Sendable, Equatable {
        /// Seconds until the units drawn may be spent (0: now).
        public var startsIn: Double
        /// Seconds the tenant's drive requests are still paused (0: none).
        public var pausedFor: Double
    }

    /// Draws `units` of the tenant's drive budget at `unitsPerSecond` (units 0: only reads the
    /// pause). The answer's seconds are the server's, bounded here by a day.
    public func drawDriveUnits(_ units: Int, unitsPerSecond: Double, burstSeconds: Double) async throws -> DriveGrant {
        try await bounded("draw drive resource units") {
            let rows: PostgresRowSequence
            if units > 0, unitsPerSecond > 0 {
                let cost = Double(units) / unitsPerSecond
                rows = try await self.client.query("""
                    INSERT INTO vaultline_tenants (tenant, drive_next) VALUES (\(self.tenant), now() + make_interval(secs => \(cost)))
                    ON CONFLICT (tenant) DO UPDATE SET drive_next =
                        GREATEST(COALESCE(vaultline_tenants.drive_next, now()), now() - make_interval(secs => \(burstSeconds))) + make_interval(secs => \(cost))
                    RETURNING EXTRACT(EPOCH FROM (drive_next - make_interval(secs => \(cost)) - now()))::float8,
                              COALESCE(EXTRACT(EPOCH FROM (drive_paused_until - now())), 0)::float8
                    """, logger: self.logger)
            } else {
                rows = try await self.client.query("""
                    SELECT 0::float8, COALESCE(EXTRACT(EPOCH FROM (drive_paused_until - now())), 0)::float8
                    FROM vaultline_tenants WHERE tenant = \(self.tenant)
                    """, logger: self.logger)
            }
            var grant = DriveGrant(startsIn: 0, pausedFor: 0)
            for try await (startsIn, pausedFor) in rows.decode((Double, Double).self) {
                grant = DriveGrant(startsIn: Self.bounded(seconds: startsIn), pausedFor: Self.bounded(seconds: pausedFor))
            }
            return grant
        }
    }

    /// A 429 on a drive request asked for `seconds`: every worker's drive requests wait until
    /// then (a longer pause already set stays).
    public func pauseDrives(seconds: Double) async throws {
        let seconds = Self.bounded(seconds: seconds)
        try await bounded("pause the tenant's drive requests") {
            try await self.client.query("""
                INSERT INTO vaultline_tenants (tenant, drive_paused_until, drive_paused_by)
                VALUES (\(self.tenant), now() + make_interval(secs => \(seconds)), \(self.worker))
                ON CONFLICT (tenant) DO UPDATE SET
                    drive_paused_by = CASE WHEN vaultline_tenants.drive_paused_until IS NULL OR vaultline_tenants.drive_paused_until < EXCLUDED.drive_paused_until
                                           THEN EXCLUDED.drive_paused_by ELSE vaultline_tenants.drive_paused_by END,
                    drive_paused_until = GREATEST(COALESCE(vaultline_tenants.drive_paused_until, now()), EXCLUDED.drive_paused_until)
                """, logger: self.logger)
        }
    }

    /// Seconds from the database, as a wait: negative and not-a-number are 0, at most a day.
    static func bounded(seconds: Double) -> Double {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return min(seconds, 86_400)
    }
}
