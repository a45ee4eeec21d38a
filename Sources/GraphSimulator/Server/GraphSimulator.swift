import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A stand-in for Microsoft Graph and its token endpoint, served over real HTTP (Hummingbird),
/// backed by a generated ``Tenant``. Graph's response shapes, paging, delta links, throttling
/// answers and download URLs are imitated closely enough that the client cannot tell; the
/// shapes follow the bodies in `shared/testdata/graph-samples` (docs/GRAPH.md).
public final class GraphSimulator: Sendable {
    public let tenant: Tenant
    /// The app registration the token endpoint accepts.
    public let tenantId: String
    public let clientId: String
    public let clientSecret: String
    /// A certificate credential registered beside the secret: token requests may sign in with a
    /// client assertion it verifies.
    public let clientCertificate: RegisteredCertificate?
    /// Faults and limits; change them at any time.
    public let faults = Mutex(FaultPlan())
    let counters = Mutex(SimulatorStats())
    let runtime = Mutex(Runtime())
    private let running = Mutex<(task: Task<Void, any Error>, port: Int)?>(nil)
    let logger: Logger

    struct Runtime {
        /// Access tokens issued, with their expiry.
        var tokens: [String: Date] = [:]
        var inFlight: [String: Int] = [:]
        /// Token buckets per mailbox: (tokens, last refill).
        var buckets: [String: (Double, Date)] = [:]
        /// Requests admitted per mailbox.
        var admitted: [String: Int] = [:]
        var baseURL = ""
        var downloads = 0
        var tokenLifetime = 3599.0
        /// Ids whose one-time faults (``FaultPlan/lapsedOnFirstUse``,
        /// ``FaultPlan/editedWhenFetchedByID``) have fired.
        var firedOnce: Set<String> = []
        /// Requests made with each download URL (by its `tempauth`), when their uses are limited.
        var downloadURLUses: [String: Int] = [:]
        /// Graph requests that reached the token check (counts ``FaultPlan/revokeTokensEvery``).
        var authorizations = 0
        /// Open upload sessions by the token in their URL.
        var uploads: [String: UploadSession] = [:]
        /// Upload byte buckets per mailbox: (bytes, last refill).
        var byteBuckets: [String: (Double, Date)] = [:]
        /// Request bytes each mailbox took.
        var uploadedByMailbox: [String: Int64] = [:]
        /// The tenant's drive resource-unit bucket: (units, last refill).
        var driveUnits: (Double, Date)?
        /// Change-notification subscriptions by id, the tenant's sequence number notified up
        /// to, and the delivery loop.
        var subscriptions: [String: Subscription] = [:]
        var notifiedSeq: Int?
        var notifierRunning = false
        var notifier: Task<Void, Never>?
    }

    public init(tenant: Tenant, tenantId: String = "72f988bf-86f1-41af-91ab-2d7cd011db47",
                clientId: String = "6731de76-14a6-49ae-97bc-6eba6914391e", clientSecret: String,
                clientCertificate: RegisteredCertificate? = nil) {
        self.tenant = tenant
        self.tenantId = tenantId
        self.clientId = clientId
        self.clientSecret = clientSecret
        self.clientCertificate = clientCertificate
        var logger = Logger(label: "graph-sim")
        logger.logLevel = ProcessInfo.processInfo.environment["VAULTLINE_SIM_LOG"] != nil ? .debug : .critical
        self.logger = logger
    }

    /// What the simulator has seen so far.
    public var stats: SimulatorStats { counters.withLock { $0 } }

    /// Access tokens live this long (seconds); shorten it to test refreshing.
    public func setTokenLifetime(_ seconds: Double) { runtime.withLock { $0.tokenLifetime = seconds } }

    /// Makes every delta token issued so far expire (answered 410 on next use).
    public func expireDeltaTokens() { faults.withLock { $0.deltaGeneration += 1 } }

    /// The URL the Graph client should use as its Graph base (`…/v1.0`) and authority.
    public var graphURL: String { runtime.withLock { $0.baseURL } + "/v1.0" }
    public var authorityURL: String { runtime.withLock { $0.baseURL } }

    /// Starts serving on `host:port` (0 picks a free port); returns the port.
    @discardableResult
    public func start(host: String = "127.0.0.1", port: Int = 0) async throws -> Int {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { [self] request, _ in await respond(request) },
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            logger: logger)
        let task = Task {
            do { try await app.run() } catch {
                continuation.finish()
                throw error
            }
        }
        var iterator = ports.makeAsyncIterator()
        guard let bound = await iterator.next(), bound > 0 else {
            task.cancel()
            let failure: (any Error)? = await { do { try await task.value; return nil } catch { return error } }()
            throw SimulatorError("cannot listen on \(host):\(port): \(failure.map { "\($0)" } ?? "unknown error")")
        }
        runtime.withLock { $0.baseURL = "http://\(host):\(bound)" }
        running.withLock { $0 = (task, bound) }
        return bound
    }

    /// Stops serving and waits until the listener is closed.
    public func stop() async {
        runtime.withLock { r in
            r.notifier?.cancel()
            r.notifier = nil
            r.notifierRunning = false
        }
        guard let (task, _) = running.withLock({ r in defer { r = nil }; return r }) else { return }
        task.cancel()
        _ = try? await task.value
    }
}

public struct SimulatorError: Error, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}
