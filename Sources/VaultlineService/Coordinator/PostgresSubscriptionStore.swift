import Foundation
import PostgresNIO
import VaultlineCore
import VaultlineGraph

/// The tenant's change-notification subscriptions in the coordinator's database
/// (`vaultline_subscriptions`, one row per subscription; the client state in the tenant's
/// row), so that a notification reaching any worker is checked against the subscriptions the
/// maintenance owner made.
public struct PostgresSubscriptionStore: SubscriptionStore {
    let coordinator: PostgresCoordinator

    public init(coordinator: PostgresCoordinator) { self.coordinator = coordinator }

    public func load() async throws -> SubscriptionRecords? {
        let c = coordinator
        return try await c.bounded("read the subscriptions") {
            var clientState: String?
            for try await state in try await c.client.query(
                "SELECT notify_client_state FROM vaultline_tenants WHERE tenant = \(c.tenant)", logger: c.logger).decode(String?.self) {
                clientState = state
            }
            guard let clientState, !clientState.isEmpty else { return nil }
            var records: [SubscriptionRecords.Record] = []
            let rows = try await c.client.query(
                "SELECT id, target, expires FROM vaultline_subscriptions WHERE tenant = \(c.tenant) ORDER BY id", logger: c.logger)
            for try await (id, key, expires) in rows.decode((String, String, Date).self) {
                guard let target = ChangeSubscriptions.Target(key: key) else {
                    c.logger.warning("a subscription row that is not ours; left alone", metadata: ["target": "\(UntrustedText.escaped(key))"])
                    continue
                }
                records.append(.init(id: id, target: target, expires: expires))
            }
            return SubscriptionRecords(clientState: clientState, subscriptions: records)
        }
    }

    public func save(_ records: SubscriptionRecords) async throws {
        let c = coordinator
        let ids = records.subscriptions.map(\.id), keys = records.subscriptions.map(\.target.key)
        let expires = records.subscriptions.map(\.expires)
        try await c.bounded("keep the subscriptions") {
            try await c.client.withTransaction(logger: c.logger) { connection in
                try await connection.query("""
                    INSERT INTO vaultline_tenants (tenant, notify_client_state) VALUES (\(c.tenant), \(records.clientState))
                    ON CONFLICT (tenant) DO UPDATE SET notify_client_state = EXCLUDED.notify_client_state
                    """, logger: c.logger)
                try await connection.query("DELETE FROM vaultline_subscriptions WHERE tenant = \(c.tenant)", logger: c.logger)
                try await connection.query("""
                    INSERT INTO vaultline_subscriptions (tenant, id, target, expires)
                    SELECT \(c.tenant), * FROM unnest(\(ids)::text[], \(keys)::text[], \(expires)::timestamptz[])
                    """, logger: c.logger)
            }
        }
    }

    public func remove(id: String) async throws {
        let c = coordinator
        try await c.bounded("forget a subscription") {
            try await c.client.query("DELETE FROM vaultline_subscriptions WHERE tenant = \(c.tenant) AND id = \(id)", logger: c.logger)
        }
    }
}
