import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import QuickXorHash

/// Request dispatch, authentication, throttling and the generic pieces of a Graph answer.
extension GraphSimulator {
    static let retryAfterField = HTTPField.Name("Retry-After")!
    static let preferField = HTTPField.Name("Prefer")!
    static let rangeField = HTTPField.Name("Range")!
    static let contentRangeField = HTTPField.Name("Content-Range")!

    func respond(_ request: Request) async -> Response {
        let segments = request.uri.path.split(separator: "/").map { $0.removingPercentEncoding ?? String($0) }
        let query = Self.parseQuery(request.uri.query)
        logger.debug("\(request.method) \(request.uri.string)")
        if request.method == .post, segments.count == 4, segments[1] == "oauth2", segments[3] == "token" {
            var req = request
            let body = (try? await req.collectBody(upTo: 1 << 16)).map { String(buffer: $0) } ?? ""
            return token(segments[0], form: Self.parseQuery(body))
        }
        if segments.first == "_sim", segments.count == 2 {
            return control(segments[1], query: query)
        }
        if segments.first == "download", segments.count == 3, request.method == .get {
            return await download(drive: segments[1], item: segments[2], query: query, range: request.headers[Self.rangeField])
        }
        if segments.first == "upload", segments.count == 2 {
            return await upload(segments[1], request: request)
        }
        guard segments.first == "v1.0" else {
            return Self.error(404, "BadRequest", "Resource not found for the segment '\(segments.first ?? "")'.")
        }
        let plan = faults.withLock { $0 }
        if plan.revokeTokensEvery > 0 {
            let revoke = runtime.withLock { r in
                r.authorizations += 1
                if r.authorizations % plan.revokeTokensEvery == 0 { r.tokens.removeAll(); return true }
                return false
            }
            if revoke { counters.withLock { $0.tokenRevocations += 1 } }
        }
        guard authenticated(request.headers[.authorization]) else {
            counters.withLock { $0.unauthorized += 1 }
            return Self.error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        }
        let n = counters.withLock { $0.requests += 1; return $0.requests }
        if plan.throttleEvery > 0, n % plan.throttleEvery == 0 {
            counters.withLock { $0.throttled += 1 }
            return Self.throttled(plan.retryAfter, "TooManyRequests", "Too many requests.")
        }
        if plan.unavailableEvery > 0, n % plan.unavailableEvery == 0 {
            counters.withLock { $0.unavailable += 1 }
            return Self.error(503, "serviceNotAvailable", "The service is temporarily unavailable.")
        }
        let path = Array(segments.dropFirst())
        if let refused = driveResourceUnits(path, query: query, method: request.method, plan: plan) { return refused }
        // Mailbox-scoped requests count against that mailbox's concurrency and rate limits.
        if path.count >= 3, path[0] == "users", let user = tenant.user(path[1]) {
            let refused: (response: Response, concurrency: Bool)? = runtime.withLock { r in
                let now = Date()
                if plan.mailboxRequestsPerSecond > 0 {
                    let rate = plan.mailboxRequestsPerSecond
                    var (tokens, last) = r.buckets[user.id] ?? (rate, now)
                    tokens = min(rate, tokens + now.timeIntervalSince(last) * rate)
                    if tokens < 1 {
                        r.buckets[user.id] = (tokens, now)
                        return (Self.throttled((1 - tokens) / rate, "ApplicationThrottled", "Application is over its resource limit."), false)
                    }
                    r.buckets[user.id] = (tokens - 1, now)
                }
                let inFlight = r.inFlight[user.id, default: 0] + 1
                if plan.mailboxConcurrency > 0, inFlight > plan.mailboxConcurrency {
                    return (Self.throttled(plan.retryAfter, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."), true)
                }
                r.inFlight[user.id] = inFlight
                r.admitted[user.id, default: 0] += 1
                let admitted = r.admitted[user.id, default: 0]
                counters.withLock { $0.mailboxRequests += 1; $0.busiestMailboxRequests = max($0.busiestMailboxRequests, admitted) }
                return nil
            }
            if let refused {
                counters.withLock { s in
                    s.throttled += 1
                    if refused.concurrency { s.concurrencyRefusals += 1 }
                }
                return refused.response
            }
            let now = runtime.withLock { $0.inFlight[user.id, default: 0] }
            counters.withLock { $0.peakMailboxConcurrency = max($0.peakMailboxConcurrency, now) }
            defer { runtime.withLock { $0.inFlight[user.id, default: 1] -= 1 } }
            // The latency is spent holding the mailbox's slot, as a slow backend would.
            if plan.latency > 0 { try? await Task.sleep(nanoseconds: UInt64(plan.latency * 1e9)) }
            return await dispatch(path, query: query, request: request, plan: plan)
        }
        if plan.latency > 0 { try? await Task.sleep(nanoseconds: UInt64(plan.latency * 1e9)) }
        return await dispatch(path, query: query, request: request, plan: plan)
    }

    /// Reads to ``route(_:query:request:plan:)``, writes to the write side.
    private func dispatch(_ path: [String], query: [String: String], request: Request, plan: FaultPlan) async -> Response {
        if path.first == "subscriptions" { return await subscriptions(path, request: request) }
        if request.method == .get { return route(path, query: query, request: request, plan: plan) }
        if path.first == "drives" { return await driveWrite(path, query: query, request: request, plan: plan) }
        if path.first == "users" { return await mailWrite(path, query: query, request: request, plan: plan) }
        return Self.error(405, "invalidRequest", "The simulator does not take \(request.method) here.")
    }

    /// The simulator's own control endpoints (not Graph): `/_sim/stats`, `/_sim/mutate?share=&seed=`,
    /// `/_sim/ransomware?upn=&share=`, `/_sim/delete-file?upn=&path=`, `/_sim/files?upn=`,
    /// `/_sim/limits?mailbox-rps=&upload-mib-per-5min=&latency=`,
    /// `/_sim/expire-delta-tokens`. For benchmarks and demos that
    /// run the simulator as its own process.
    private func control(_ verb: String, query: [String: String]) -> Response {
        switch verb {
        case "stats":
            let s = stats
            return Self.json(200, ["requests": s.requests, "throttled": s.throttled, "unavailable": s.unavailable,
                                   "concurrencyRefusals": s.concurrencyRefusals, "downloads": s.downloads,
                                   "downloadBytes": s.downloadBytes, "peakMailboxConcurrency": s.peakMailboxConcurrency,
                                   "mailboxRequests": s.mailboxRequests, "busiestMailboxRequests": s.busiestMailboxRequests,
                                   "writes": s.writes, "uploadSessions": s.uploadSessions, "uploadedBytes": s.uploadedBytes,
                                   "filesCommitted": s.filesCommitted, "messagesCreated": s.messagesCreated,
                                   "mailboxUploadedBytes": s.mailboxUploadedBytes, "busiestMailboxUploadedBytes": s.busiestMailboxUploadedBytes,
                                   "items": tenant.itemCount])
        case "mutate":
            let m = tenant.mutate(seed: UInt64(query["seed"] ?? "") ?? 1, share: Double(query["share"] ?? "") ?? 0.01)
            return Self.json(200, ["added": m.added, "modified": m.modified, "moved": m.moved, "deleted": m.deleted])
        case "ransomware":
            let m = tenant.ransomware(upn: query["upn"] ?? "", share: Double(query["share"] ?? "") ?? 0.5)
            return Self.json(200, ["encrypted": m.encrypted])
        case "limits":
            // Graph-like limits, changed while running (a backup without them, a restore with).
            faults.withLock { f in
                if let v = query["mailbox-rps"].flatMap(Double.init) { f.mailboxRequestsPerSecond = v }
                if let v = query["upload-mib-per-5min"].flatMap(Double.init) { f.mailboxUploadBytesPer5Minutes = Int(v * 1_048_576) }
                if let v = query["latency"].flatMap(Double.init) { f.latency = v }
            }
            let f = faults.withLock { $0 }
            return Self.json(200, ["mailboxRps": f.mailboxRequestsPerSecond, "uploadBytesPer5Minutes": f.mailboxUploadBytesPer5Minutes, "latency": f.latency])
        case "reset-stats":
            // Counters from zero (a benchmark measuring a restore after its backup).
            counters.withLock { $0 = SimulatorStats() }
            runtime.withLock { r in
                r.admitted = [:]
                r.uploadedByMailbox = [:]
            }
            return Self.json(200, ["reset": true])
        case "delete-file":
            let done = tenant.deleteFile(upn: query["upn"] ?? "", path: query["path"] ?? "")
            return done ? Self.json(200, ["deleted": query["path"] ?? ""]) : Self.error(404, "itemNotFound", "no such file")
        case "files":
            // What a user's OneDrive holds: path, size and QuickXorHash of every file.
            let files = tenant.driveFiles(upn: query["upn"] ?? "")
            return Self.json(200, ["files": files.keys.sorted().map { ["path": $0, "size": files[$0]?.count ?? 0, "quickXorHash": QuickXorHash.hash(files[$0] ?? [])] }])
        case "expire-delta-tokens":
            expireDeltaTokens()
            return Self.json(200, ["expired": true])
        default:
            return Self.error(404, "BadRequest", "unknown simulator control '\(verb)'")
        }
    }

    private func authenticated(_ header: String?) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let token = String(header.dropFirst(7))
        return runtime.withLock { ($0.tokens[token] ?? .distantPast) > Date() }
    }

    /// The Microsoft identity platform's client-credentials grant.
    private func token(_ tenantSegment: String, form: [String: String]) -> Response {
        counters.withLock { $0.tokenRequests += 1 }
        guard tenantSegment == tenantId || tenantSegment == tenant.spec.tenantDomain else {
            return Self.json(400, ["error": "invalid_request", "error_description": "AADSTS90002: Tenant '\(tenantSegment)' not found."])
        }
        guard form["grant_type"] == "client_credentials" else {
            return Self.json(400, ["error": "unsupported_grant_type", "error_description": "AADSTS70003: The app requested an unsupported grant type."])
        }
        if let assertion = form["client_assertion"] {
            guard form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" else {
                return Self.json(400, ["error": "invalid_request", "error_description": "AADSTS70002: client_assertion_type must be jwt-bearer."])
            }
            guard form["client_id"] == clientId, let certificate = clientCertificate else {
                return Self.json(401, ["error": "invalid_client", "error_description": "AADSTS700027: No certificate is registered on the application."])
            }
            if let (code, text) = certificate.problem(with: assertion, clientId: clientId, audienceSuffix: "/\(tenantSegment)/oauth2/v2.0/token") {
                return Self.json(401, ["error": "invalid_client", "error_description": "\(code): \(text)"])
            }
        } else {
            guard form["client_id"] == clientId, form["client_secret"] == clientSecret else {
                return Self.json(401, ["error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."])
            }
        }
        guard form["scope"] == "https://graph.microsoft.com/.default" else {
            return Self.json(400, ["error": "invalid_scope", "error_description": "AADSTS1002012: The provided value for scope is not valid."])
        }
        let value = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let lifetime = runtime.withLock { r in
            let now = Date()
            if r.tokens.count >= 64 { r.tokens = r.tokens.filter { $0.value > now } }  // a long run signs in again and again
            r.tokens[value] = now.addingTimeInterval(r.tokenLifetime)
            return r.tokenLifetime
        }
        return Self.json(200, ["token_type": "Bearer", "expires_in": Int(lifetime), "ext_expires_in": Int(lifetime), "access_token": value])
    }

    // MARK: Answers

    static func json(_ status: Int, _ object: Any, headers: HTTPFields = [:]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        var h = headers
        h[.contentType] = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
        h[.contentLength] = "\(data.count)"
        return Response(status: .init(code: status), headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> Response {
        json(status, ["error": ["code": code, "message": message, "innerError": ["date": Tenant.iso(Date()), "request-id": UUID().uuidString.lowercased()]]])
    }

    static func throttled(_ seconds: Double, _ code: String, _ message: String) -> Response {
        var h = HTTPFields()
        h[retryAfterField] = String(format: "%.3f", max(0.001, seconds))
        let body: [String: Any] = ["error": ["code": code, "message": message,
                                              "innerError": ["code": "429", "date": Tenant.iso(Date()), "request-id": UUID().uuidString.lowercased()]]]
        return json(429, body, headers: h)
    }

    static func parseQuery(_ query: String?) -> [String: String] {
        var out: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            let key = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[0])
            let value = kv.count > 1 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1])) : ""
            out[key] = value
        }
        return out
    }

    static func pageSize(_ request: Request, query: [String: String], default d: Int) -> Int {
        if let top = query["$top"].flatMap(Int.init) { return max(1, min(top, 999)) }
        if let prefer = request.headers[preferField], let r = prefer.range(of: "odata.maxpagesize=") {
            let digits = prefer[r.upperBound...].prefix { $0.isNumber }
            if let n = Int(digits) { return max(1, min(n, 999)) }
        }
        return d
    }

    /// SharePoint's resource units (``FaultPlan/driveResourceUnitsPerMinute``): a 429 when a
    /// drive request finds the tenant's bucket spent; the request counts either way. Priced as
    /// Microsoft documents: a permission call 5, a delta without a token and any write 2, any
    /// other read 1.
    private func driveResourceUnits(_ path: [String], query: [String: String], method: HTTPRequest.Method, plan: FaultPlan) -> Response? {
        let isDrive = path.first == "drives" || path.first == "sites" || (path.count >= 3 && path[0] == "users" && path[2] == "drive")
        guard isDrive else { return nil }
        let cost: Double
        if path.contains("permissions") || (query["$expand"] ?? "").contains("permissions") { cost = 5 }
        else if method != .get { cost = 2 }
        else if path.last == "delta", query["token"] == nil { cost = 2 }
        else { cost = 1 }
        guard plan.driveResourceUnitsPerMinute > 0 else {
            counters.withLock { $0.driveResourceUnits += Int(cost) }
            return nil
        }
        let perSecond = Double(plan.driveResourceUnitsPerMinute) / 60
        let wait: Double? = runtime.withLock { r in
            let now = Date()
            var (units, last) = r.driveUnits ?? (Double(plan.driveResourceUnitsPerMinute), now)
            units = min(Double(plan.driveResourceUnitsPerMinute), units + now.timeIntervalSince(last) * perSecond)
            let enough = units >= cost
            units -= cost
            r.driveUnits = (units, now)
            // Until the bucket holds this request's cost again.
            return enough ? nil : max(0.05, (cost - units) / perSecond)
        }
        counters.withLock { s in
            s.driveResourceUnits += Int(cost)
            if wait != nil { s.driveThrottled += 1; s.throttled += 1 }
        }
        guard let wait else { return nil }
        return Self.throttled(wait, "activityLimitReached", "The request has been throttled.")
    }
}
