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
