import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import VaultlineCore

/// One S3 request: method, key (under the bucket, "" for the bucket itself), query, headers and
/// body. Everything in it is signed.
public struct S3Request: Sendable {
    public var method: HTTPMethod
    public var key: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer?
    /// Hex SHA-256 of the body when the caller knows it (a content-addressed file's name);
    /// computed otherwise.
    public var payloadHash: String?
    /// The largest answer body accepted (at least 64 KiB, so that an error body always fits);
    /// a server that sends more is cut off (`malformed`).
    public var maximumResponseBody: Int
    /// A body streamed from a spool file instead of `body` (``payloadHash`` must then be set).
    var spooled: (file: SpoolFile, offset: Int, length: Int)?

    public init(
        _ method: HTTPMethod, key: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [], body: ByteBuffer? = nil, payloadHash: String? = nil,
        maximumResponseBody: Int = S3XML.maximumBodySize
    ) {
        self.method = method
        self.key = key
        self.query = query
        self.headers = headers
        self.body = body
        self.payloadHash = payloadHash
        self.maximumResponseBody = max(maximumResponseBody, 64 << 10)
    }

    var object: String { "\(method.rawValue) \(key.isEmpty ? "/" : key)" }
}

/// An answer: status, headers and the body (empty for HEAD).
public struct S3Response: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: ByteBuffer
}

/// Sends signed requests to one bucket and waits for their answers. The `Backend` protocol is
/// synchronous and called from the engine's threads, so ``send(_:accepting:)`` blocks the
/// calling thread; the requests themselves run on NIO's event loops (never call it on one).
///
/// Retries (jittered exponential backoff, 0.2 s doubling to 20 s): 500, 502, 503 (`SlowDown`
/// included), 504, 429, 408 and 409 `ConditionalRequestConflict` for up to
/// ``Options/retryFor`` (10 minutes: restic's issue 4018 is a client that gave up on a provider's
/// 503s too early); no answer at all (refused, reset, timed out) for ``Options/transportRetryFor``.
/// Every other answer is returned or thrown at once.
public final class S3Client: Sendable {
    public struct Options: Sendable {
        /// Requests in flight at once: the most the limiter grows to.
        public var maximumRequests = 16
        public var initialRequests = 4
        public var retryFor: TimeInterval = 600
        public var transportRetryFor: TimeInterval = 60
        /// The first retry waits up to this long; each further one twice as long, at most 20 s.
        public var retryBaseDelay: TimeInterval = 0.2
        public var connectTimeout: TimeInterval = 10
        /// A request whose answer stalls this long fails (and is retried).
        public var readTimeout: TimeInterval = 60
        /// A PEM file of CA certificates to trust for https (`AWS_CA_BUNDLE`), instead of the system's.
        public var caBundle: String?

        public init() {}

        /// Options from the environment: `AWS_CA_BUNDLE`, `VAULTLINE_S3_CONNECTIONS` (1–256),
        /// `VAULTLINE_S3_RETRY_SECONDS`.
        public static func from(environment: [String: String]) throws -> Options {
            var options = Options()
            if let bundle = environment["AWS_CA_BUNDLE"], !bundle.isEmpty { options.caBundle = bundle }
            if let text = environment["VAULTLINE_S3_CONNECTIONS"], !text.isEmpty {
                guard let count = Int(text), (1...256).contains(count) else {
                    throw VaultlineError(.invalidArgument, "VAULTLINE_S3_CONNECTIONS must be 1–256, not \(text.prefix(20))")
                }
                options.maximumRequests = count
                options.initialRequests = min(options.initialRequests, count)
            }
            if let text = environment["VAULTLINE_S3_RETRY_SECONDS"], !text.isEmpty {
                guard let seconds = Double(text), seconds >= 0, seconds <= 86_400 else {
                    throw VaultlineError(.invalidArgument, "VAULTLINE_S3_RETRY_SECONDS must be 0–86400, not \(text.prefix(20))")
                }
                options.retryFor = seconds
                options.transportRetryFor = min(options.transportRetryFor, seconds)
            }
            return options
        }
    }

    /// Requests sent and answers by kind, for `stats` and the benchmarks.
    public struct Counters: Sendable, Equatable {
        public var requests = 0
        public var retries = 0
        public var throttled = 0
        public var bytesSent: Int64 = 0
        public var bytesReceived: Int64 = 0
    }

    public let location: S3Location
    public let signer: SigV4Signer
    public let options: Options
    public let limiter: RequestLimiter
    private let http: HTTPClient
    private let counters = Mutex(Counters())

    public init(location: S3Location, credentials: AWSCredentials, region: String, options: Options = Options()) throws {
        self.location = location
        signer = SigV4Signer(credentials: credentials, region: region)
        self.options = options
        limiter = RequestLimiter(initial: options.initialRequests, minimum: 1, maximum: options.maximumRequests)
        var config = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(options.connectTimeout * 1000)), read: .milliseconds(Int64(options.readTimeout * 1000))))
        config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = options.maximumRequests
        config.httpVersion = .http1Only
        // A connection that cannot be made fails its request at once: `send` decides what is
        // retried and for how long (the pool would otherwise try again until the connect timeout,
        // even for a handshake that fails the same way every time).
        config.connectionPool.retryConnectionEstablishment = false
        if location.secure {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let bundle = options.caBundle {
                guard FileManager.default.isReadableFile(atPath: bundle) else {
                    throw VaultlineError(.invalidArgument, "the CA bundle cannot be read", object: bundle)
                }
                tls.trustRoots = .file(bundle)
            }
            config.tlsConfiguration = tls
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Starts the connection pool's shutdown without waiting (a backend has no close call;
    /// `syncShutdown()` must not run where a deinit may, on an event loop or in async code).
    deinit {
        http.shutdown(queue: .global()) { _ in }
    }

    public var stats: Counters { counters.withLock { $0 } }

    /// Sends `request`, retrying as the type's comment says, and returns the answer when its
    /// status is 2xx or in `accepting` (a 404 or 412 the caller handles); throws ``S3Error``
    /// for anything else.
    public func send(_ request: S3Request, accepting: Set<Int> = []) throws -> S3Response {
        let started = Date()
        var attempt = 0
        while true {
            let outcome: Result<S3Response, any Error>
            guard limiter.acquire(timeout: max(1, options.retryFor - Date().timeIntervalSince(started))) else {
                throw S3Error(.throttled, "no request slot came free in \(Int(options.retryFor)) s", object: request.object)
            }
            outcome = Result { try attemptOnce(request) }
            let status = (try? outcome.get())?.status
            let throttled = status == 503 || status == 429
            limiter.release(throttled: throttled)
            counters.withLock {
                $0.requests += 1
                if throttled { $0.throttled += 1 }
            }
            let elapsed = Date().timeIntervalSince(started)
            switch outcome {
            case .success(let response):
                if (200..<300).contains(response.status) || accepting.contains(response.status) { return response }
                let failure = Self.error(for: response, object: request.object)
                guard Self.isRetryable(failure), elapsed < options.retryFor else { throw failure }
            case .failure(let error):
                let failure = error as? S3Error ?? Self.transportError(error, location: location, object: request.object)
                guard failure.code == .transport, elapsed < options.transportRetryFor else { throw failure }
            }
            attempt += 1
            counters.withLock { $0.retries += 1 }
            let ceiling = min(20, options.retryBaseDelay * pow(2, Double(min(attempt, 10))))
            Thread.sleep(forTimeInterval: Double.random(in: ceiling / 2...ceiling))
        }
    }

    private func attemptOnce(_ request: S3Request) throws -> S3Response {
        let target = location.target(key: request.key)
        let encodedPath = SigV4Signer.encode(target.path, keepSlash: true)
        let query = request.query.map { "\(SigV4Signer.encode($0.name, keepSlash: false))=\(SigV4Signer.encode($0.value, keepSlash: false))" }
            .joined(separator: "&")
        let url = "\(location.secure ? "https" : "http")://\(target.host)\(encodedPath)\(query.isEmpty ? "" : "?" + query)"
        guard request.spooled == nil || request.payloadHash != nil else {
            throw S3Error(.malformed, "a streamed body needs its SHA-256 given", object: request.object)
        }
        let payloadHash = request.payloadHash ?? (request.body.map { body in body.withUnsafeReadableBytes { VaultlineCore.SHA256.hash($0).hex } } ?? SigV4Signer.emptyPayloadHash)
        var headers = [(name: "Host", value: target.host)] + request.headers
        let signing = SigningRequest(method: request.method.rawValue, path: target.path, query: request.query, headers: headers)
        headers += signer.signingHeaders(for: signing, date: Date(), payloadHash: payloadHash, addsContentHash: true)
        var httpRequest = try HTTPClient.Request(url: url, method: request.method, headers: HTTPHeaders(headers))
        if let body = request.body { httpRequest.body = .byteBuffer(body) }
        if let spooled = request.spooled {
            httpRequest.body = spooled.file.body(offset: spooled.offset, length: spooled.length, loop: http.eventLoopGroup.next())
        }
        let bodyBytes = Int64(request.body?.readableBytes ?? request.spooled?.length ?? 0)
        // A generous deadline for the whole exchange: a minute plus one second per MiB.
        let deadline = NIODeadline.now() + .seconds(60 + bodyBytes / (1 << 20) + Int64(request.maximumResponseBody >> 20))
        let delegate = ResponseAccumulator(request: httpRequest, maxBodySize: request.maximumResponseBody)
        let answer: HTTPClient.Response
        do {
            answer = try http.execute(request: httpRequest, delegate: delegate, deadline: deadline).futureResult.wait()
        } catch is ResponseAccumulator.ResponseTooBigError {
            throw S3Error(.malformed, "the answer's body is larger than \(request.maximumResponseBody) bytes", object: request.object)
        }
        let body = answer.body ?? ByteBuffer()
        counters.withLock {
            $0.bytesSent += bodyBytes
            $0.bytesReceived += Int64(body.readableBytes)
        }
        return S3Response(status: Int(answer.status.code), headers: answer.headers, body: body)
    }

    static func error(for response: S3Response, object: String) -> S3Error {
        let parsed = S3XML.errorBody(Array(response.body.readableBytesView))
        let requestID = response.headers.first(name: "x-amz-request-id")
        let code: S3Error.Code = switch response.status {
        case 404: .notFound
        case 403: .accessDenied
        case 412: .preconditionFailed
        case 429, 503: .throttled
        case 500...599: .server
        default: .http
        }
        let said = parsed.map { "\($0.code): \($0.message)" } ?? "no error body"
        return S3Error(code, status: response.status, s3Code: parsed?.code,
                       "the server answered \(response.status) (\(UntrustedText.escaped(said, maxLength: 300)))", object: object, requestID: requestID)
    }

    /// A failure without an answer: `tls` for a handshake that failed (with what to do about an
    /// untrusted certificate), else `transport`.
    static func transportError(_ error: any Error, location: S3Location, object: String) -> S3Error {
        let server = "\(location.host):\(location.port)"
        switch error as? NIOSSLError {
        case .handshakeFailed?:
            return S3Error(.tls, "the TLS handshake with \(server) failed: its certificate is not trusted or not for this host "
                + "(AWS_CA_BUNDLE names a PEM file of the CAs to trust)", object: object, cause: error)
        default:
            return S3Error(.transport, "no answer from \(server)", object: object, cause: error)
        }
    }

    static func isRetryable(_ error: S3Error) -> Bool {
        switch error.status {
        case 500, 502, 503, 504, 429, 408: true
        case 409: error.s3Code == "ConditionalRequestConflict"
        default: false
        }
    }
}
