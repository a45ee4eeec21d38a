import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Where to find Graph and which app registration to sign in as.
public struct GraphCredentials: Sendable {
    public var tenantId: String
    public var clientId: String
    public var clientSecret: String
    /// A certificate credential: when set, token requests carry a signed client assertion
    /// instead of the secret.
    public var certificate: ClientCertificate?
    /// The identity platform (national clouds differ; the simulator serves its own).
    public var authority = "https://login.microsoftonline.com"
    /// Graph's base URL, up to and including the version.
    public var graphBase = "https://graph.microsoft.com/v1.0"

    public init(tenantId: String, clientId: String, clientSecret: String) {
        self.tenantId = tenantId
        self.clientId = clientId
        self.clientSecret = clientSecret
    }
}

/// A Microsoft Graph client: app-only sign-in, paging, delta rounds, throttling and streamed
/// downloads (docs/GRAPH.md).
///
/// Throttling: 429, 503 and 504 honour `Retry-After` (fractional seconds allowed); other
/// retryable failures back off exponentially with jitter; at most `maxAttempts` tries, 429s
/// with `Retry-After` aside (up to `maxThrottledSeconds` of them). Every OneDrive and SharePoint
/// request passes the tenant's ``DriveBudget`` (its resource units, and the pause a 429 there
/// sets for every drive request). At most
/// `perMailbox` requests run for one mailbox (Exchange refuses a fifth with MailboxConcurrency)
/// and `maxConcurrent` in all.
public final class GraphClient: Sendable {
    public struct Options: Sendable {
        public var maxConcurrent = 64
        public var perMailbox = 4
        /// Requests started per second per mailbox (0: no budget), with half a second of unused
        /// budget spendable at once. Exchange allows 10,000 requests per 10 minutes per app and
        /// mailbox (16.7 per second); the default, 9,900 per 10 minutes at most, stays 1% under.
        public var mailboxRequestsPerSecond = 16.5
        /// SharePoint and OneDrive resource units spent per minute, tenant-wide (0: no budget; a
        /// 429 still pauses every drive request). Microsoft grants 1,200 to 6,000 by licence count.
        public var driveUnitsPerMinute = 0.0
        public var maxAttempts = 8
        /// Seconds one request may spend waiting out 429s (whose `Retry-After` Graph asks to be
        /// honoured: nothing was done) before it fails; 429s do not count against `maxAttempts`.
        public var maxThrottledSeconds = 900.0
        /// First backoff when Graph gives no Retry-After; doubles per attempt, with jitter.
        public var baseBackoff = 0.5
        public var maxBackoff = 60.0
        /// Page size asked for with `Prefer: odata.maxpagesize`.
        public var pageSize = 100
        public var requestTimeout: TimeAmount = .seconds(120)
        public init() {}
    }

    let credentials: GraphCredentials
    let options: Options
    let http: HTTPClient
    let logger: Logger
    private let token = TokenCache()
    private let global: AsyncLimiter
    private let mailboxes = Mutex<[String: AsyncLimiter]>([:])
    /// Every OneDrive and SharePoint request passes it: SharePoint counts refused requests
    /// against the tenant's resource units, so a 429's `Retry-After` holds every drive request,
    /// not only the refused one (as Corso fences its scope), here and in every worker sharing it.
    let driveBudget: any DriveBudget
    let counters = Mutex(GraphStats())

    /// `driveBudget`: the tenant's, when several processes share it (nil: this process's own,
    /// of `options.driveUnitsPerMinute`).
    public init(credentials: GraphCredentials, options: Options = Options(), driveBudget: (any DriveBudget)? = nil,
                logger: Logger = Logger(label: "vaultline.graph")) {
        self.credentials = credentials
        self.driveBudget = driveBudget ?? LocalDriveBudget(unitsPerMinute: options.driveUnitsPerMinute)
        self.options = options
        self.logger = logger
        var config = HTTPClient.Configuration()
        config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = options.maxConcurrent
        config.timeout = .init(connect: .seconds(10), read: .seconds(60))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        global = AsyncLimiter(options.maxConcurrent)
    }

    private let isShutDown = Mutex(false)

    public func shutdown() async throws {
        guard !isShutDown.withLock({ s in defer { s = true }; return s }) else { return }
        try await http.shutdown()
    }

    /// The owner calls ``shutdown()`` and awaits it. A client dropped without it (an error path)
    /// starts the connection pool's shutdown here without waiting for it: `syncShutdown()`
    /// must not run on an event loop or in async code, where a deinit may run.
    deinit {
        if !isShutDown.withLock({ $0 }) { http.shutdown(queue: .global()) { _ in } }
    }

    public var stats: GraphStats { counters.withLock { $0 } }

    /// `base/path` with each given segment percent-encoded (Graph ids contain `/`, `+`, `=`).
    public func url(_ segments: String...) -> String {
        credentials.graphBase + "/" + segments.map(Self.encode).joined(separator: "/")
    }

    private static let segmentCharacters: CharacterSet = {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~$@!'(),;:")
        return allowed
    }()

    static func encode(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: segmentCharacters) ?? segment
    }

    // MARK: Requests

    /// GET a Graph resource as JSON.
    /// `authorized`: false for a pre-authenticated URL (an upload session's), which must not
    /// carry the bearer token.
    public func json(_ url: String, mailbox: String? = nil, authorized: Bool = true) async throws -> JSONValue {
        let body = try await bytes(url, mailbox: mailbox, limit: 64 << 20, authorized: authorized)
        do { return try JSONValue.parse(body) } catch {
            throw GraphError(.malformed, "the answer is not JSON: \(error)", url: url)
        }
    }

    /// GET a Graph resource's bytes (a message's MIME through `$value`), at most `limit` bytes.
    public func bytes(_ url: String, mailbox: String? = nil, limit: Int = 160 << 20, authorized: Bool = true) async throws -> [UInt8] {
        try await send(url, mailbox: mailbox, authorized: authorized) { response in
            var buffer = try await response.body.collect(upTo: limit)
            return buffer.readBytes(length: buffer.readableBytes) ?? []
        }
    }

    /// Follows `@odata.nextLink` from `url` and hands each page's `value` to `page`; returns the
    /// round's `@odata.deltaLink` (nil for a listing that is not a delta function).
    public func pages(_ url: String, mailbox: String? = nil, page: ([JSONValue]) async throws -> Void) async throws -> String? {
        var next = url
        while true {
            let body = try await json(next, mailbox: mailbox)
            guard let value = body["value"]?.array else {
                throw GraphError(.malformed, "a collection without \"value\"", url: next)
            }
            try await page(value)
            if let link = body["@odata.nextLink"]?.string { next = link; continue }
            return body["@odata.deltaLink"]?.string
        }
    }

    /// One attempt loop: sign-in, limits, retries. `read` consumes a successful response.
    /// `body`: sent with each attempt. `retryAmbiguous`: whether a 5xx or a broken connection is
    /// tried again here; false for a create, which such a failure may have committed (the caller
    /// looks before it tries again). 429 is always tried again: Graph did nothing.
    func send<T>(_ url: String, mailbox: String?, method: HTTPMethod = .GET, authorized: Bool = true,
                 headers extra: [(String, String)] = [], body: [UInt8]? = nil, retryAmbiguous: Bool = true,
                 read: (HTTPClientResponse) async throws -> T) async throws -> T {
        var attempt = 0
        var signIns = 0
        var throttledSeconds = 0.0
        var throttled = false
        let fenced = authorized && isDriveScoped(url)
        while true {
            if !throttled { attempt += 1 }
            throttled = false
            if fenced {
                let units = Self.resourceUnits(method: method.rawValue, url: url), asked = ContinuousClock.now
                try await driveBudget.admit(units: units)
                let waited = ContinuousClock.now - asked
                counters.withLock { s in
                    s.driveUnits += units
                    s.driveBudgetSeconds += waited / .seconds(1)
                }
            }
            var request = HTTPClientRequest(url: url)
            request.method = method
            request.headers.add(name: "Prefer", value: "odata.maxpagesize=\(options.pageSize)")
            for (k, v) in extra { request.headers.add(name: k, value: v) }
            if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
            let limiter = mailbox.map(limiterFor)
            try await limiter?.acquire()
            do { try await global.acquire() } catch {
                await limiter?.release()
                throw error
            }
            // The token is taken after the limits admit the request: a request can wait there
            // long enough for the token it would have carried to expire.
            var bearer: String?
            if authorized {
                do { bearer = try await token.get(self) } catch {
                    await global.release()
                    await limiter?.release()
                    // The identity platform unreachable or busy is retried like Graph; a refusal is not.
                    guard let e = error as? GraphError, e.code == .transport || e.code == .exhausted,
                          attempt < options.maxAttempts else { throw error }
                    let wait = backoff(attempt)
                    counters.withLock { $0.retries += 1; $0.waitedSeconds += wait }
                    try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                    continue
                }
                request.headers.add(name: "Authorization", value: "Bearer " + (bearer ?? ""))
            }
            counters.withLock { $0.requests += 1 }
            var outcome: Result<T, any Error>
            var wait: Double?
            /// An error while reading a good answer is the caller's to handle: retrying here would
            /// hand it bytes it has already seen.
            var readError: (any Error)?
            do {
                let response = try await http.execute(request, timeout: options.requestTimeout)
                let status = Int(response.status.code)
                if (200..<300).contains(status) {
                    do { outcome = .success(try await read(response)) } catch {
                        readError = error
                        outcome = .failure(error)
                    }
                } else {
                    let body = (try? await response.body.collect(upTo: 1 << 20)).map { String(buffer: $0) } ?? ""
                    let parsed = try? JSONValue.parse(Array(body.utf8))
                    let code = parsed?["error"]?["code"]?.string, message = parsed?["error"]?["message"]?.string ?? "HTTP \(status)"
                    let retryAfter = response.headers.first(name: "Retry-After").flatMap(Double.init)
                    if status == 401 { counters.withLock { $0.unauthorized += 1 } }
                    switch status {
                    case 401 where authorized && signIns < Self.signInsPerRequest:
                        // Expired early or revoked: sign in again. Requests that carried the same
                        // token and fail at the same time ask for one new token between them.
                        if let bearer { await token.invalidate(bearer) }
                        signIns += 1
                        wait = 0
                        outcome = .failure(GraphError(.http, status: status, graphCode: code, message, url: url))
                    case 429, 503, 504:
                        counters.withLock { if status == 429 { $0.throttled += 1 } else { $0.serverErrors += 1 } }
                        // The mailbox's rate halves, and comes back a tenth a quiet minute.
                        if status != 504 { await limiter?.slowDown() }
                        if status == 429 || retryAmbiguous { wait = retryAfter ?? backoff(attempt) }
                        if status == 429, let wait, throttledSeconds + wait <= options.maxThrottledSeconds {
                            throttled = true
                            throttledSeconds += wait
                        }
                        if status == 429, fenced, let wait { await driveBudget.pause(seconds: min(wait, options.maxThrottledSeconds)) }
                        outcome = .failure(GraphError(.exhausted, status: status, graphCode: code, message, url: url))
                    case 500, 502:
                        counters.withLock { $0.serverErrors += 1 }
                        if retryAmbiguous { wait = backoff(attempt) }
                        outcome = .failure(GraphError(.exhausted, status: status, graphCode: code, message, url: url))
                    case 404:
                        outcome = .failure(GraphError(.notFound, status: status, graphCode: code, message, url: url))
                    case 410:
                        outcome = .failure(GraphError(.syncStateExpired, status: status, graphCode: code, message, url: url))
                    default:
                        outcome = .failure(GraphError(.http, status: status, graphCode: code, message, url: url))
                    }
                }
            } catch let error as GraphError {
                outcome = .failure(error)
            } catch {
                if retryAmbiguous { wait = backoff(attempt) }
                outcome = .failure(GraphError(.transport, "\(error)", url: url))
            }
            await global.release()
            await limiter?.release()
            if let readError { throw readError }
            switch outcome {
            case .success(let value):
                return value
            case .failure(let error):
                guard let wait, attempt < options.maxAttempts || throttled else { throw error }
                logger.debug("retrying", metadata: ["url": "\(GraphError.redacted(url))", "error": "\(error)", "wait": "\(wait)"])
                counters.withLock { $0.retries += 1; $0.waitedSeconds += wait }
                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            }
        }
    }

    /// Whether a Graph URL is OneDrive's or SharePoint's (their throttling is the tenant's, not
    /// a mailbox's): its path under the Graph base starts `drives`, `sites` or `users/{id}/drive`.
    func isDriveScoped(_ url: String) -> Bool {
        guard url.hasPrefix(credentials.graphBase + "/") else { return false }
        let path = url.dropFirst(credentials.graphBase.count + 1).prefix { $0 != "?" }
        let segments = path.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard let first = segments.first else { return false }
        if first == "drives" || first == "sites" { return true }
        return segments.count >= 3 && first == "users" && segments[2] == "drive"
    }

    /// Fresh tokens one request may ask for after 401s before its 401 is final: a token revoked
    /// again while the request retried is survivable, a token Graph never accepts is not.
    static let signInsPerRequest = 3

    /// Exponential backoff with full jitter in [0.5, 1.5) of the step.
    func backoff(_ attempt: Int) -> Double {
        let step = min(options.maxBackoff, options.baseBackoff * Double(1 << min(attempt - 1, 16)))
        return step * Double.random(in: 0.5..<1.5)
    }

    /// The request rate in force for a mailbox (nil: no budget, or no request yet), for tests.
    func mailboxRate(_ mailbox: String) async -> Double? {
        guard let limiter = mailboxes.withLock({ $0[mailbox] }) else { return nil }
        return await limiter.ratePerSecond
    }

    private func limiterFor(_ mailbox: String) -> AsyncLimiter {
        mailboxes.withLock { m in
            if let l = m[mailbox] { return l }
            let l = AsyncLimiter(options.perMailbox, ratePerSecond: options.mailboxRequestsPerSecond)
            m[mailbox] = l
            return l
        }
    }

    // MARK: Sign-in

    /// Fetches an app-only token (client credentials grant).
    func fetchToken() async throws -> (String, Double) {
        let url = "\(credentials.authority)/\(Self.encode(credentials.tenantId))/oauth2/v2.0/token"
        func form(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s }
        var body = "client_id=\(form(credentials.clientId))&scope=\(form("https://graph.microsoft.com/.default"))&grant_type=client_credentials"
        if let certificate = credentials.certificate {
            let assertion = try certificate.assertion(audience: url, clientId: credentials.clientId)
            body += "&client_assertion_type=\(form("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))&client_assertion=\(form(assertion))"
        } else {
            body += "&client_secret=\(form(credentials.clientSecret))"
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.body = .bytes(ByteBuffer(string: body))
        counters.withLock { $0.tokenRequests += 1 }
        let response: HTTPClientResponse
        do { response = try await http.execute(request, timeout: .seconds(30)) } catch {
            throw GraphError(.transport, "cannot reach the token endpoint: \(error)", url: url)
        }
        let data = try await response.body.collect(upTo: 1 << 20)
        let json = try? JSONValue.parse(Array(buffer: data))
        guard response.status == .ok, let token = json?["access_token"]?.string else {
            let status = Int(response.status.code)
            let code = json?["error"]?.string
            let message = json?["error_description"]?.string ?? "HTTP \(status)"
            if [429, 500, 502, 503, 504].contains(status) {
                throw GraphError(.exhausted, status: status, graphCode: code, "the token endpoint is busy: \(message)", url: url)
            }
            throw GraphError(.authentication, status: status, graphCode: code, "sign-in refused: \(message)", url: url)
        }
        return (token, Double(json?["expires_in"]?.int64 ?? 3599))
    }
}

/// The app's access token, fetched once and refreshed before it expires (at the later of half
/// its lifetime and five minutes before the end).
actor TokenCache {
    private var token: String?
    private var refreshAt = Date.distantPast
    private var pending: Task<(String, Double), any Error>?

    func get(_ client: GraphClient) async throws -> String {
        if let token, Date() < refreshAt { return token }
        let task: Task<(String, Double), any Error>
        if let pending { task = pending } else {
            task = Task { try await client.fetchToken() }
            pending = task
        }
        do {
            let (value, lifetime) = try await task.value
            // Only the sign-in still pending is recorded: by the time a waiter resumes, its token
            // may have been rejected and a newer sign-in begun.
            if pending == task {
                pending = nil
                token = value
                refreshAt = Date().addingTimeInterval(max(lifetime - 300, lifetime / 2))
            }
            return value
        } catch {
            if pending == task { pending = nil }
            throw error
        }
    }

    /// Forgets `rejected` if it is still the cached token (a newer one is kept).
    func invalidate(_ rejected: String) {
        guard token == rejected else { return }
        token = nil
        refreshAt = .distantPast
    }
}
