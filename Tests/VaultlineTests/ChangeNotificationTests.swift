import AsyncHTTPClient
import Foundation
import GraphSimulator
import Logging
import NIOCore
import ServiceLifecycle
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
@testable import VaultlineService

/// `serve --notify-url` against the simulator, which validates the webhook and posts its
/// notifications as Graph does: subscriptions made, kept, renewed, remade and not leaked; a
/// change polled early; a forged notification refused.
@Suite("Change notifications") struct ChangeNotificationTests {
    @Test(.timeLimit(.minutes(5)))
    func aNotificationPollsItsCollectionsEarlyAndTheSubscriptionsAreKept() async throws {
        let f = try await GraphFixture()
        f.sim.faults.withLock { $0.plainNotificationURLs = true; $0.notificationDelay = 0.05 }
        // Nothing is polled by the clock in this test: only notifications make collections due.
        let service = ContinuousServiceTests.service(f) {
            $0.policy.mailBaseSeconds = 3_600; $0.policy.driveBaseSeconds = 3_600; $0.policy.debounceSeconds = 3_600
            $0.policy.rpoSeconds = 86_400
        }
        _ = try #require(await service.pass())
        let port = try freeLoopbackPort()
        let base = "http://127.0.0.1:\(port)"
        let statePath = f.dir.path + "/state/subscriptions.json"
        var options = ChangeSubscriptions.Options(notificationURL: base + "/graph/notify", lifecycleURL: base + "/graph/lifecycle")
        let store = FileSubscriptionStore(path: statePath)
        options.outlookMinutes = 1
        options.driveMinutes = 1
        let logger = Logger(label: "test.notify") { _ in SwiftLogNoOpLogHandler() }
        let subscriptions = try ChangeSubscriptions(client: f.client, options: options, store: store, logger: logger)
        let notifications = ChangeNotifications(subscriptions: subscriptions, schedule: service.schedule, metrics: service.metrics, logger: logger)
        let http = StatusServer.application(host: "127.0.0.1", port: port, metrics: service.metrics, state: service.state, logger: logger,
                                            notifications: notifications)
        let serving = Task { try await http.run() }
        defer { serving.cancel() }
        try await Self.waitForListener(port)

        // One subscription per user and workload and per drive, each validated by the simulator.
        let wanted = Set(service.schedule.entries.keys.compactMap(ChangeSubscriptions.Target.of))
        let users = f.sim.tenant.users
        #expect(wanted.count >= users.count * 4, "mail, events, contacts and a OneDrive per user, and the libraries")
        let made = await subscriptions.reconcile(wanted)
        #expect(made.created == wanted.count && made.failed == 0, "\(made)")
        #expect(Set(f.sim.subscriptionResources.values) == Set(wanted.map(\.resource)))

        // A deleted message: its mailbox's mail collections fall due, nothing else does.
        let user = users[0]
        let message = try #require(f.sim.tenant.mailbox(upn: user.upn).first)
        f.sim.tenant.deleteMessage(upn: user.upn, id: message.id)
        func due() -> [CollectionKey] { service.schedule.entries.filter { $0.value.nextDue <= Date() }.map(\.key) }
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, due().isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        let marked = due()
        #expect(!marked.isEmpty && marked.allSatisfy { $0.user == user.id && ($0.kind == .mailFolder || $0.kind == .mailFolders) }, "\(marked)")
        // The service marks before it answers; the simulator counts once it has the answer.
        while Date() < deadline, f.sim.stats.notificationsDelivered == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(f.sim.stats.notificationsDelivered >= 1)
        let pass = try #require(await service.pass())
        #expect(pass.committed, "the early poll stored the deletion")
        #expect(!f.sim.tenant.mailbox(upn: user.upn).contains { $0.id == message.id })

        // A post naming a real subscription with the wrong client state is refused.
        let id = try #require(f.sim.subscriptionResources.first { $0.value == "users/\(users[1].id)/messages" }?.key)
        let forged = #"{"value":[{"subscriptionId":"\#(id)","clientState":"guess","changeType":"updated","resource":"x"}]}"#
        #expect(try await Self.post(base + "/graph/notify", forged) == 202)
        #expect(due().isEmpty, "nothing marked by a forged notification")
        #expect(service.metrics.text().contains("vaultline_graph_notifications_refused_total 1"))
        #expect(try await Self.post(base + "/graph/notify", "not json") == 400)

        // Removed by Graph: the collections are polled (notifications were lost), and the next
        // reconcile makes the subscription again.
        #expect(await f.sim.sendLifecycleEvent("subscriptionRemoved", subscription: id))
        let removedDeadline = Date().addingTimeInterval(60)
        while Date() < removedDeadline, due().isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        #expect(due().contains { $0.user == users[1].id && $0.kind == .mailFolder })
        let remade = await subscriptions.reconcile(wanted)
        #expect(remade.created == 1 && remade.failed == 0, "\(remade)")

        // Past half their lifetime they are renewed, not made again.
        let renewed = await subscriptions.reconcile(wanted, now: Date().addingTimeInterval(31))
        #expect(renewed.renewed == wanted.count && renewed.created == 0, "\(renewed)")
        #expect(f.sim.stats.subscriptionRenewals == wanted.count)

        // A restart goes on with them; a lost state file leaves none behind.
        let restarted = try ChangeSubscriptions(client: f.client, options: options, store: store, logger: logger)
        #expect(await restarted.reconcile(wanted).created == 0)
        #expect(Set(restarted.active) == wanted)
        try FileManager.default.removeItem(atPath: statePath)
        let forgetful = try ChangeSubscriptions(client: f.client, options: options, store: store, logger: logger)
        #expect(await forgetful.reconcile(wanted).created == wanted.count)
        #expect(f.sim.subscriptionResources.count == wanted.count, "the strangers were deleted")
        serving.cancel()
        await f.close()
    }

    /// Graph takes only HTTPS webhooks and only one that answers its validation.
    @Test(.timeLimit(.minutes(2)))
    func aWebhookThatDoesNotAnswerItsValidationIsRefused() async throws {
        let f = try await GraphFixture()
        let port = try freeLoopbackPort()
        let logger = Logger(label: "test.notify") { _ in SwiftLogNoOpLogHandler() }
        let options = ChangeSubscriptions.Options(notificationURL: "http://127.0.0.1:\(port)/graph/notify",
                                                  lifecycleURL: "http://127.0.0.1:\(port)/graph/lifecycle")
        let store = FileSubscriptionStore(path: f.dir.path + "/s.json")
        let subscriptions = try ChangeSubscriptions(client: f.client, options: options, store: store, logger: logger)
        let target = ChangeSubscriptions.Target.mail(user: f.sim.tenant.users[0].id)
        // Plain HTTP: refused by Graph.
        #expect(await subscriptions.reconcile([target]).failed == 1)
        // HTTP allowed, but nobody listens: the validation fails.
        f.sim.faults.withLock { $0.plainNotificationURLs = true }
        let again = try ChangeSubscriptions(client: f.client, options: options, store: store, logger: logger)
        #expect(await again.reconcile([target]).failed == 1)
        #expect(f.sim.stats.subscriptionValidationsFailed == 1 && f.sim.subscriptionResources.isEmpty)
        await f.close()
    }

    static func post(_ url: String, _ body: String) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 16)
        return Int(response.status.code)
    }

    static func waitForListener(_ port: Int) async throws {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/livez")
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)), response.status == .ok { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw VaultlineError(.io, "the status server did not start", object: "127.0.0.1:\(port)")
    }
}
