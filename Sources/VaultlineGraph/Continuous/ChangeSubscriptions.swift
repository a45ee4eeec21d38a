import Foundation
import Logging
import Synchronization
import VaultlineCore

/// Graph change notifications as hints (docs/GRAPH.md, "Change notifications"): one subscription
/// per mailbox workload (`users/{id}/messages`, `/events`, `/contacts`), per OneDrive
/// (`users/{id}/drive/root`) and per library (`drives/{id}/root`), kept alive by ``reconcile(_:)``; a notification that checks out names
/// the ``Target`` whose collections are polled early. Delta stays the source of truth: a lost
/// notification costs only the wait for the next poll.
///
/// The subscriptions and the `clientState` every notification must carry are kept in a
/// ``SubscriptionStore`` (a file, or the coordinator's database), read again at every reconcile,
/// so a restarted service, or another worker, goes on with them; subscriptions to this
/// notification URL that the store does not know (a lost file) are deleted at the first
/// reconcile rather than left to fire. One process reconciles; any may receive.
public final class ChangeSubscriptions: Sendable {
    public struct Options: Sendable {
        /// Where Graph posts notifications and lifecycle events (public HTTPS, forwarded to the
        /// service's `/graph/notify` and `/graph/lifecycle`).
        public var notificationURL: String
        public var lifecycleURL: String
        /// Lifetimes asked for (minutes): Graph's longest for Outlook items (4,230 in the stored
        /// documentation) and drive items (42,300). Renewed at half of it.
        public var outlookMinutes = 4_230.0
        public var driveMinutes = 42_300.0
        public init(notificationURL: String, lifecycleURL: String) {
            self.notificationURL = notificationURL
            self.lifecycleURL = lifecycleURL
        }
    }

    /// What one subscription covers.
    public enum Target: Hashable, Sendable, Codable, CustomStringConvertible {
        case mail(user: String)
        case calendar(user: String)
        case contacts(user: String)
        case onedrive(user: String)
        case drive(id: String)

        public var resource: String {
            switch self {
            case .mail(let user): "users/\(user)/messages"
            case .calendar(let user): "users/\(user)/events"
            case .contacts(let user): "users/\(user)/contacts"
            case .onedrive(let user): "users/\(user)/drive/root"
            case .drive(let id): "drives/\(id)/root"
            }
        }

        /// Graph takes only `updated` on a drive root.
        var changeType: String { isDrive ? "updated" : "created,updated,deleted" }

        var isDrive: Bool {
            switch self {
            case .onedrive, .drive: true
            default: false
            }
        }

        public var description: String { resource }

        /// A stable text form (`mail:ID`, `calendar:ID`, `contacts:ID`, `onedrive:ID`,
        /// `drive:ID`), for a database column.
        public var key: String {
            switch self {
            case .mail(let user): "mail:" + user
            case .calendar(let user): "calendar:" + user
            case .contacts(let user): "contacts:" + user
            case .onedrive(let user): "onedrive:" + user
            case .drive(let id): "drive:" + id
            }
        }

        public init?(key: String) {
            guard let colon = key.firstIndex(of: ":") else { return nil }
            let value = String(key[key.index(after: colon)...])
            guard !value.isEmpty else { return nil }
            switch key[..<colon] {
            case "mail": self = .mail(user: value)
            case "calendar": self = .calendar(user: value)
            case "contacts": self = .contacts(user: value)
            case "onedrive": self = .onedrive(user: value)
            case "drive": self = .drive(id: value)
            default: return nil
            }
        }

        /// Whether `key` is one of the collections this target's notifications are about.
        public func covers(_ key: CollectionKey) -> Bool {
            switch self {
            case .mail(let user): key.user == user && (key.kind == .mailFolder || key.kind == .mailFolders)
            case .calendar(let user): key.user == user && key.kind == .calendar
            case .contacts(let user): key.user == user && key.kind == .contacts
            case .onedrive(let user): key.user == user && key.kind == .onedrive
            case .drive(let id): key.kind == .library && key.id == id
            }
        }

        /// The subscription a collection needs.
        public static func of(_ key: CollectionKey) -> Target? {
            switch key.kind {
            case .mailFolder, .mailFolders: key.user.map { .mail(user: $0) }
            case .calendar: key.user.map { .calendar(user: $0) }
            case .contacts: key.user.map { .contacts(user: $0) }
            case .onedrive: key.user.map { .onedrive(user: $0) }
            case .library: key.id.isEmpty ? nil : .drive(id: key.id)
            }
        }
    }

    typealias Record = SubscriptionRecords.Record

    /// What a reconcile did.
    public struct Summary: Sendable, Equatable {
        public var created = 0, renewed = 0, deleted = 0, failed = 0
        public var active = 0
    }

    let client: GraphClient
    public let options: Options
    let store: any SubscriptionStore
    let logger: Logger
    private let state: Mutex<State>

    struct State {
        var clientState: String
        var byTarget: [Target: Record] = [:]
        /// Targets Graph refused, and when to ask again (an app without the permission, a
        /// resource Graph does not notify on).
        var refusedUntil: [Target: Date] = [:]
        var sweptStrangers = false
        /// When the store was last read (a receiving process reads it again for an id it does
        /// not know, at most every 2 s).
        var loadedAt: Date?
    }

    /// Throws when the system cannot give random bytes for the client state.
    public init(client: GraphClient, options: Options, store: any SubscriptionStore, logger: Logger) throws {
        self.client = client
        self.options = options
        self.store = store
        self.logger = logger
        // A stored client state replaces this one at the first reload.
        state = Mutex(State(clientState: encodeHex(try SecureRandom.bytes(24))))
    }

    /// Reads the store (what another process, or an earlier run, made). False when it cannot
    /// be read: nothing is changed then, and nothing should be made on top of it.
    @discardableResult
    func reload() async -> Bool {
        do {
            let records = try await store.load()
            state.withLock { s in
                s.loadedAt = Date()
                guard let records, !records.clientState.isEmpty else { return }
                s.clientState = records.clientState
                s.byTarget = Dictionary(records.subscriptions.map { ($0.target, $0) }, uniquingKeysWith: { a, b in a.expires >= b.expires ? a : b })
            }
            return true
        } catch {
            logger.warning("could not read the subscriptions", metadata: ["error": "\(error)"])
            return false
        }
    }

    public var active: [Target] { state.withLock { Array($0.byTarget.keys) } }

    // MARK: Keeping the subscriptions

    /// Brings the subscriptions in line with `wanted`: creates the missing ones, renews those
    /// past half their lifetime, deletes those no longer
    /// wanted. Each failure is logged and tried again at the next reconcile; a target Graph
    /// refuses (400, 403) is asked again after an hour.
    @discardableResult
    public func reconcile(_ wanted: Set<Target>, now: Date = Date()) async -> Summary {
        var summary = Summary()
        guard await reload() else {
            summary.failed = wanted.count
            return summary
        }
        if !state.withLock({ $0.sweptStrangers }) {
            if await sweepStrangers() { state.withLock { $0.sweptStrangers = true } }
        }
        let (current, refused) = state.withLock { ($0.byTarget, $0.refusedUntil) }
        for (target, record) in current where !wanted.contains(target) {
            do {
                _ = try await client.write(.DELETE, client.url("subscriptions", record.id), idempotent: true)
            } catch let error as GraphError where error.status == 404 {
                // Gone already.
            } catch {
                summary.failed += 1
                logger.warning("could not delete a subscription", metadata: ["resource": "\(target)", "error": "\(error)"])
                continue
            }
            summary.deleted += 1
            state.withLock { _ = $0.byTarget.removeValue(forKey: target) }
        }
        for target in wanted.sorted(by: { $0.resource < $1.resource }) {
            if let until = refused[target], until > now { continue }
            let lifetime = lifetimeSeconds(target)
            if let record = current[target] {
                let renewAt = record.expires.addingTimeInterval(-lifetime / 2)
                guard now >= renewAt else { continue }
                if record.expires > now, await renew(record, lifetime: lifetime, now: now) {
                    summary.renewed += 1
                    continue
                }
                // Expired or unknown to Graph: made again below.
                state.withLock { _ = $0.byTarget.removeValue(forKey: target) }
            }
            switch await create(target, lifetime: lifetime, now: now) {
            case true: summary.created += 1
            case false: summary.failed += 1
            }
        }
        summary.active = state.withLock { $0.byTarget.count }
        await save()
        return summary
    }

    private func lifetimeSeconds(_ target: Target) -> Double {
        if target.isDrive { return options.driveMinutes * 60 }
        return options.outlookMinutes * 60
    }

    private func create(_ target: Target, lifetime: Double, now: Date) async -> Bool {
        let clientState = state.withLock { $0.clientState }
        let expires = now.addingTimeInterval(lifetime)
        let body = JSONValue.object([
            "changeType": .string(target.changeType), "notificationUrl": .string(options.notificationURL),
            "lifecycleNotificationUrl": .string(options.lifecycleURL), "resource": .string(target.resource),
            "expirationDateTime": .string(GraphDate.format(expires)), "clientState": .string(clientState),
        ])
        do {
            let answer = try await client.write(.POST, client.url("subscriptions"), json: body, idempotent: false)
            guard let id = answer.json?["id"]?.string, !id.isEmpty else {
                throw GraphError(.malformed, "a subscription without an id", url: client.url("subscriptions"))
            }
            let granted = answer.json?["expirationDateTime"]?.string.flatMap(GraphDate.parse) ?? expires
            state.withLock { $0.byTarget[target] = Record(id: id, target: target, expires: granted) }
            logger.debug("subscribed", metadata: ["resource": "\(target)", "expires": "\(GraphDate.format(granted))"])
            return true
        } catch let error as GraphError where error.status == 400 || error.status == 403 || error.status == 404 {
            state.withLock { $0.refusedUntil[target] = now.addingTimeInterval(3_600) }
            logger.warning("Graph refused a subscription; polling alone covers it, asked again in an hour",
                           metadata: ["resource": "\(target)", "error": "\(error)"])
            return false
        } catch {
            logger.warning("could not subscribe; tried again at the next round", metadata: ["resource": "\(target)", "error": "\(error)"])
            return false
        }
    }

    private func renew(_ record: Record, lifetime: Double, now: Date) async -> Bool {
        let expires = now.addingTimeInterval(lifetime)
        do {
            let answer = try await client.write(.PATCH, client.url("subscriptions", record.id),
                                                json: .object(["expirationDateTime": .string(GraphDate.format(expires))]), idempotent: true)
            let granted = answer.json?["expirationDateTime"]?.string.flatMap(GraphDate.parse) ?? expires
            state.withLock { $0.byTarget[record.target]?.expires = granted }
            return true
        } catch {
            logger.info("could not renew a subscription; making it again", metadata: ["resource": "\(record.target)", "error": "\(error)"])
            return false
        }
    }

    /// Deletes this app's subscriptions to our notification URL that the store does not
    /// know. True once the list was read.
    private func sweepStrangers() async -> Bool {
        let known = Set(state.withLock { $0.byTarget.values.map(\.id) })
        var strangers: [String] = []
        do {
            _ = try await client.pages(client.url("subscriptions")) { page in
                for item in page where item["notificationUrl"]?.string == options.notificationURL {
                    if let id = item["id"]?.string, !known.contains(id) { strangers.append(id) }
                }
            }
        } catch {
            logger.info("could not list the subscriptions", metadata: ["error": "\(error)"])
            return false
        }
        for id in strangers {
            _ = try? await client.write(.DELETE, client.url("subscriptions", id), idempotent: true)
        }
        if !strangers.isEmpty { logger.info("deleted subscriptions a lost state file left behind", metadata: ["count": "\(strangers.count)"]) }
        return true
    }

    // MARK: Notifications

    /// What a notification post named: the targets to poll early, and how many entries were
    /// refused (a wrong client state or an unknown subscription: not Graph, or not ours).
    public struct Received: Sendable, Equatable {
        public var targets: Set<Target> = []
        public var refused = 0
    }

    /// Reads a notification post (`value` of `subscriptionId`, `clientState`, …). Throws when
    /// the body is not Graph's shape at all.
    public func received(_ body: [UInt8]) async throws -> Received {
        let entries = try Self.entries(body)
        await reloadForUnknown(entries)
        let (clientState, byID) = state.withLock { s in (s.clientState, Dictionary(s.byTarget.values.map { ($0.id, $0.target) }, uniquingKeysWith: { a, _ in a })) }
        var out = Received()
        for entry in entries {
            guard let id = entry["subscriptionId"]?.string, let target = byID[id],
                  Self.equalInConstantTime(entry["clientState"]?.string ?? "", clientState) else {
                out.refused += 1
                continue
            }
            out.targets.insert(target)
        }
        return out
    }

    /// Reads a lifecycle post: `reauthorizationRequired` renews the subscription at once;
    /// `subscriptionRemoved` forgets it (in the store too: the next reconcile makes it again)
    /// and `missed` changes nothing here; both name their target, whose collections are polled
    /// at once, since notifications were lost.
    public func lifecycle(_ body: [UInt8]) async throws -> Received {
        let entries = try Self.entries(body)
        await reloadForUnknown(entries)
        var out = Received()
        var renew: [Record] = [], removed: [String] = []
        state.withLock { s in
            for entry in entries {
                guard let id = entry["subscriptionId"]?.string, let record = s.byTarget.values.first(where: { $0.id == id }),
                      Self.equalInConstantTime(entry["clientState"]?.string ?? "", s.clientState) else {
                    out.refused += 1
                    continue
                }
                switch entry["lifecycleEvent"]?.string {
                case "reauthorizationRequired":
                    renew.append(record)
                case "subscriptionRemoved":
                    s.byTarget[record.target] = nil
                    removed.append(id)
                    out.targets.insert(record.target)
                default:
                    out.targets.insert(record.target)
                }
            }
        }
        for record in renew { _ = await self.renew(record, lifetime: lifetimeSeconds(record.target), now: Date()) }
        for id in removed {
            do { try await store.remove(id: id) } catch {
                logger.warning("could not forget a removed subscription; it is made again when its renewal fails", metadata: ["error": "\(error)"])
            }
        }
        return out
    }

    /// Reads the store again when a post names a subscription this process does not know (made
    /// by another worker, or since), at most every 2 s.
    private func reloadForUnknown(_ entries: [JSONValue]) async {
        let ids = entries.compactMap { $0["subscriptionId"]?.string }
        let stale: Bool = state.withLock { s in
            let known = Set(s.byTarget.values.map(\.id))
            guard ids.contains(where: { !known.contains($0) }) else { return false }
            return s.loadedAt.map { Date().timeIntervalSince($0) >= 2 } ?? true
        }
        if stale { await reload() }
    }

    static func entries(_ body: [UInt8]) throws -> [JSONValue] {
        guard let json = try? JSONValue.parse(body), let value = json["value"]?.array else {
            throw GraphError(.malformed, "a notification post without \"value\"", url: "")
        }
        guard value.count <= 1_000 else { throw GraphError(.malformed, "a notification post of \(value.count) entries", url: "") }
        return value
    }

    static func equalInConstantTime(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<x.count { difference |= x[i] ^ y[i] }
        return difference == 0
    }

    // MARK: The store

    func save() async {
        let records = state.withLock { SubscriptionRecords(clientState: $0.clientState, subscriptions: Array($0.byTarget.values).sorted { $0.id < $1.id }) }
        do { try await store.save(records) } catch {
            logger.warning("could not keep the subscriptions; a restart makes them again", metadata: ["error": "\(error)"])
        }
    }
}
