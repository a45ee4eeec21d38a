import Foundation
import VaultlineCore

/// Where ``ChangeSubscriptions`` keeps its subscriptions and the client state every
/// notification must carry: a file for one `serve` (``FileSubscriptionStore``), the
/// coordinator's database for several (`PostgresSubscriptionStore`), so that whichever worker
/// a notification reaches can check it.
public protocol SubscriptionStore: Sendable {
    /// What was kept (nil: nothing yet).
    func load() async throws -> SubscriptionRecords?
    /// Keeps `records` in place of what was kept.
    func save(_ records: SubscriptionRecords) async throws
    /// Forgets one subscription (Graph removed it); the next reconcile makes it again.
    func remove(id: String) async throws
}

/// The subscriptions of one tenant, and the client state they were made with.
public struct SubscriptionRecords: Codable, Sendable, Equatable {
    public struct Record: Codable, Sendable, Equatable {
        public var id: String
        public var target: ChangeSubscriptions.Target
        public var expires: Date
        public init(id: String, target: ChangeSubscriptions.Target, expires: Date) {
            self.id = id
            self.target = target
            self.expires = expires
        }
    }

    public var clientState: String
    public var subscriptions: [Record]
    public init(clientState: String, subscriptions: [Record]) {
        self.clientState = clientState
        self.subscriptions = subscriptions
    }
}

/// The subscriptions in a JSON file, replaced whole (fsync'd) at each save.
public struct FileSubscriptionStore: SubscriptionStore {
    public let path: String
    public init(path: String) { self.path = path }

    public func load() async throws -> SubscriptionRecords? {
        guard FileSystem.exists(path) else { return nil }
        do {
            return try Self.decoder.decode(SubscriptionRecords.self, from: Data(try FileSystem.readFile(path)))
        } catch {
            throw VaultlineError(.corrupt, "the subscriptions file is not readable: \(error)", object: path)
        }
    }

    public func save(_ records: SubscriptionRecords) async throws {
        try FileSystem.makeDirectories((path as NSString).deletingLastPathComponent)
        try FileSystem.replaceFile(path, with: Array(try Self.encoder.encode(records)))
    }

    public func remove(id: String) async throws {
        guard var records = try await load() else { return }
        records.subscriptions.removeAll { $0.id == id }
        try await save(records)
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }()
}
