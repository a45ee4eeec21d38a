import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Change notifications, as Graph delivers them to a webhook (docs/GRAPH.md, "Change
/// notifications"): `POST /subscriptions` validates the notification URL (and the lifecycle
/// URL) by posting `?validationToken=…` and wanting the token back as `text/plain` with 200
/// within 10 s; `PATCH` renews, `DELETE` removes, `GET` lists. While a subscription lives, a
/// change to what it covers is posted to its URL within about `notificationDelay` seconds, as
/// Graph's basic notifications: `value` holding `subscriptionId`, `clientState`, `changeType`,
/// `resource`, `tenantId` and `resourceData` (for a drive, only its `@odata.type`).
///
/// Covered: `users/{id}/messages` (every mail folder), `users/{id}/events` (every calendar),
/// `users/{id}/contacts` (every contact folder), `drives/{id}/root` and `users/{id}/drive/root`
/// (`updated` only).
extension GraphSimulator {
    struct Subscription: Sendable {
        var id: String
        var resource: String
        /// The tenant's collection keys it covers: those equal to or under one of these prefixes.
        var prefixes: [String]
        var changeType: String
        var notificationURL: String
        var lifecycleURL: String?
        var clientState: String?
        var expires: Date
    }

    /// Longest lifetimes Graph grants (minutes): Outlook items 4,230 (the stored text; learn is
    /// reported at 10,080), drive items 42,300.
    static let outlookSubscriptionMinutes = 4_230.0
    static let driveSubscriptionMinutes = 42_300.0

    func subscriptions(_ path: [String], request: Request) async -> Response {
        switch (request.method, path.count) {
        case (.get, 1):
            let all = runtime.withLock { Array($0.subscriptions.values) }.sorted { $0.id < $1.id }
            return Self.json(200, ["value": all.map(subscriptionJSON)])
        case (.post, 1):
            return await createSubscription(request)
        case (.patch, 2):
            guard let expires = (await Self.jsonBody(request)?["expirationDateTime"] as? String).flatMap(Tenant.parseISO) else {
                return Self.error(400, "InvalidRequest", "expirationDateTime is required.")
            }
            let id = path[1]
            enum Renewal { case renewed(Subscription), unknown, tooLong(Double) }
            // The lifetime is checked before anything changes: a refused renewal leaves the old expiry.
            let renewal: Renewal = runtime.withLock { r in
                guard var s = r.subscriptions[id], s.expires > Date() else { return .unknown }
                let limit = Self.lifetimeMinutes(s.resource) ?? 0
                guard expires.timeIntervalSinceNow <= limit * 60 + 60 else { return .tooLong(limit) }
                s.expires = expires
                r.subscriptions[id] = s
                return .renewed(s)
            }
            switch renewal {
            case .unknown: return Self.error(404, "ResourceNotFound", "The object was not found.")
            case .tooLong(let limit): return Self.error(400, "InvalidRequest", "Subscription expiration can only be \(Int(limit)) minutes in the future.")
            case .renewed(let updated):
                counters.withLock { $0.subscriptionRenewals += 1 }
                return Self.json(200, subscriptionJSON(updated))
            }
        case (.delete, 2):
            let removed = runtime.withLock { $0.subscriptions.removeValue(forKey: path[1]) }
            return removed == nil ? Self.error(404, "ResourceNotFound", "The object was not found.") : Response(status: .noContent)
        default:
            return Self.error(405, "invalidRequest", "The simulator does not take \(request.method) here.")
        }
    }

    /// A request's JSON object body (at most 64 KiB), nil when it is not one.
    static func jsonBody(_ request: Request) async -> [String: Any]? {
        var request = request
        guard let buffer = try? await request.collectBody(upTo: 1 << 16) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]
    }

    private func createSubscription(_ request: Request) async -> Response {
        guard let body = await Self.jsonBody(request) else {
            return Self.error(400, "InvalidRequest", "The request body is not JSON.")
        }
        guard let resource = body["resource"] as? String, let changeType = body["changeType"] as? String,
              let url = body["notificationUrl"] as? String, let expires = (body["expirationDateTime"] as? String).flatMap(Tenant.parseISO) else {
            return Self.error(400, "InvalidRequest", "resource, changeType, notificationUrl and expirationDateTime are required.")
        }
        guard let prefixes = coveredPrefixes(resource), let limit = Self.lifetimeMinutes(resource) else {
            return Self.error(400, "InvalidRequest", "Resource '\(resource)' is not supported for change notifications.")
        }
        if resource.lowercased().hasSuffix("/root"), changeType != "updated" {
            return Self.error(400, "InvalidRequest", "Only 'updated' changeType is supported for driveItem.")
        }
        guard expires > Date(), expires.timeIntervalSinceNow <= limit * 60 + 60 else {
            return Self.error(400, "InvalidRequest", "Subscription expiration can only be \(Int(limit)) minutes in the future.")
        }
        let clientState = body["clientState"] as? String
        if let clientState, clientState.count > 128 { return Self.error(400, "InvalidRequest", "clientState is at most 128 characters.") }
        let lifecycle = body["lifecycleNotificationUrl"] as? String
        let plain = faults.withLock { $0.plainNotificationURLs }
        for target in [url] + (lifecycle.map { [$0] } ?? []) {
            guard target.hasPrefix("https://") || (plain && target.hasPrefix("http://")) else {
                return Self.error(400, "InvalidRequest", "The notification URL must be HTTPS.")
            }
            guard await validate(target) else {
                counters.withLock { $0.subscriptionValidationsFailed += 1 }
                return Self.error(400, "InvalidRequest", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.")
            }
        }
        let subscription = Subscription(id: UUID().uuidString.lowercased(), resource: resource, prefixes: prefixes, changeType: changeType,
                                        notificationURL: url, lifecycleURL: lifecycle, clientState: clientState, expires: expires)
        let seq = tenant.changed(after: Int.max).seq
        runtime.withLock { r in
            r.subscriptions[subscription.id] = subscription
            if r.notifiedSeq == nil { r.notifiedSeq = seq }
        }
        counters.withLock { $0.subscriptionsCreated += 1 }
        startNotifier()
        return Self.json(201, subscriptionJSON(subscription))
    }

    /// Graph's validation: a POST with `validationToken`, answered 200 `text/plain` with the
    /// token, within 10 s.
    private func validate(_ url: String) async -> Bool {
        let token = "Validation: Testing client application reachability for subscription Request-Id: " + UUID().uuidString
        let encoded = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        var post = HTTPClientRequest(url: url + (url.contains("?") ? "&" : "?") + "validationToken=" + encoded)
        post.method = .POST
        post.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        guard let response = try? await HTTPClient.shared.execute(post, timeout: .seconds(10)), response.status.code == 200,
              response.headers.first(name: "Content-Type")?.hasPrefix("text/plain") == true,
              let body = try? await response.body.collect(upTo: 1 << 16) else { return false }
        return String(buffer: body) == token
    }

    /// The collection-key prefixes a resource covers (nil: not one the simulator notifies on).
    func coveredPrefixes(_ resource: String) -> [String]? {
        let parts = resource.split(separator: "/").map(String.init)
        if parts.count == 4, parts[0].lowercased() == "users", parts[2].lowercased() == "drive", parts[3].lowercased() == "root" {
            return tenant.user(parts[1]).map { [Tenant.driveKey($0.driveId)] }
        }
        guard parts.count == 3 else { return nil }
        if parts[0].lowercased() == "drives", parts[2].lowercased() == "root" {
            return tenant.collection(Tenant.driveKey(parts[1])) == nil ? nil : [Tenant.driveKey(parts[1])]
        }
        guard parts[0].lowercased() == "users", let user = tenant.user(parts[1]) else { return nil }
        switch parts[2].lowercased() {
        case "messages": return ["u/\(user.id)/f/"]
        case "events": return [Tenant.eventsKey(user.id), "u/\(user.id)/cal/"]
        case "contacts": return [Tenant.contactsKey(user.id)]
        default: return nil
        }
    }

    static func lifetimeMinutes(_ resource: String) -> Double? {
        let lower = resource.lowercased().drop { $0 == "/" }
        if lower.hasPrefix("drives/") || lower.hasSuffix("/drive/root") { return driveSubscriptionMinutes }
        if lower.hasPrefix("users/") { return outlookSubscriptionMinutes }
        return nil
    }

    func subscriptionJSON(_ s: Subscription) -> [String: Any] {
        var o: [String: Any] = ["id": s.id, "resource": s.resource, "changeType": s.changeType, "notificationUrl": s.notificationURL,
                                "expirationDateTime": Tenant.iso(s.expires), "applicationId": clientId]
        o["clientState"] = s.clientState ?? NSNull()
        o["lifecycleNotificationUrl"] = s.lifecycleURL ?? NSNull()
        return o
    }

    // MARK: Delivery

    /// Starts the loop that posts notifications (once; it ends with the server).
    private func startNotifier() {
        let start = runtime.withLock { r in defer { r.notifierRunning = true }; return !r.notifierRunning }
        guard start else { return }
        let task = Task { [self] in
            while !Task.isCancelled {
                let delay = faults.withLock { $0.notificationDelay }
                try? await Task.sleep(for: .milliseconds(Int64(max(0.01, delay) * 1000)))
                await deliverChanges()
            }
        }
        runtime.withLock { $0.notifier = task }
    }

    private func deliverChanges() async {
        let last = runtime.withLock { $0.notifiedSeq } ?? 0
        let (keys, seq) = tenant.changed(after: last)
        let now = Date()
        let live: [Subscription] = runtime.withLock { r in
            r.notifiedSeq = seq
            r.subscriptions = r.subscriptions.filter { $0.value.expires > now }
            return Array(r.subscriptions.values)
        }
        guard !keys.isEmpty else { return }
        for subscription in live where keys.contains(where: { key in subscription.prefixes.contains { key.hasPrefix($0) } }) {
            await post(subscription.notificationURL, ["value": [notificationJSON(subscription)]])
        }
    }

    func notificationJSON(_ s: Subscription) -> [String: Any] {
        var o: [String: Any] = ["subscriptionId": s.id, "subscriptionExpirationDateTime": Tenant.iso(s.expires),
                                "changeType": "updated",
                                "resource": s.resource, "tenantId": tenantId]
        o["clientState"] = s.clientState ?? NSNull()
        if s.resource.lowercased().hasSuffix("/root") {
            o["resourceData"] = ["@odata.type": "#Microsoft.Graph.DriveItem"]
        } else {
            o["resourceData"] = ["@odata.type": "#Microsoft.Graph.Message", "@odata.id": s.resource]
        }
        return o
    }

    /// Sends a lifecycle event (`reauthorizationRequired`, `subscriptionRemoved`, `missed`) to
    /// a subscription's lifecycle URL; `subscriptionRemoved` also removes it. False when the
    /// subscription is unknown or has no lifecycle URL.
    @discardableResult
    public func sendLifecycleEvent(_ event: String, subscription id: String) async -> Bool {
        let found: Subscription? = runtime.withLock { r in
            defer { if event == "subscriptionRemoved" { r.subscriptions[id] = nil } }
            return r.subscriptions[id]
        }
        guard let found, let url = found.lifecycleURL else { return false }
        var o: [String: Any] = ["subscriptionId": id, "subscriptionExpirationDateTime": Tenant.iso(found.expires),
                                "lifecycleEvent": event, "resource": found.resource, "tenantId": tenantId]
        o["clientState"] = found.clientState ?? NSNull()
        await post(url, ["value": [o]])
        return true
    }

    /// The subscriptions alive now, by id: their resources.
    public var subscriptionResources: [String: String] {
        runtime.withLock { r in r.subscriptions.filter { $0.value.expires > Date() }.mapValues(\.resource) }
    }

    /// Posts a notification; Graph wants 2xx within 3 s and otherwise tries again later, with
    /// growing waits (for up to 4 hours; the simulator 5 tries over about 15 s, then drops it).
    private func post(_ url: String, _ body: [String: Any]) async {
        guard let data = try? JSONSerialization.data(withJSONObject: body) else { return }
        for attempt in 0..<5 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(500 << (attempt - 1))) }
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
            var ok = false
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(3)) {
                ok = (200..<300).contains(Int(response.status.code))
                _ = try? await response.body.collect(upTo: 1 << 16)
            }
            counters.withLock { if ok { $0.notificationsDelivered += 1 } else { $0.notificationsFailed += 1 } }
            if ok { return }
        }
    }
}
