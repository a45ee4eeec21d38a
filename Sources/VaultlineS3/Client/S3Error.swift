import VaultlineCore

/// An S3 request that failed for good, with what the server said (HTTP status, S3's error code
/// such as `NoSuchKey` or `SlowDown`, its request id) and which key it was about (see
/// `ContextualError` for the shape all of Vaultline's errors share).
///
/// ``S3Backend`` wraps it in a `VaultlineError` (as its cause) so that the storage engine sees
/// the same codes from every backend: a missing key is `notFound`, a refusal `invalidArgument`.
public struct S3Error: ContextualError, Sendable {
    /// What kind of failure it was. New codes may be added: switch over them with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case notFound, accessDenied, preconditionFailed, throttled, server, http, transport, tls, malformed, unsupportedServer
        }

        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// 404: no such key, or no such bucket.
        public static let notFound = Code(.notFound)
        /// 403: the credentials are wrong, or they may not do this (an Object-Lock refusal too).
        public static let accessDenied = Code(.accessDenied)
        /// 412: a conditional write found the key there (or an `If-Match` that no longer holds).
        public static let preconditionFailed = Code(.preconditionFailed)
        /// 503 SlowDown or 429, still so after every retry.
        public static let throttled = Code(.throttled)
        /// 5xx, still so after every retry.
        public static let server = Code(.server)
        /// Any other HTTP answer (400, 409, 416…).
        public static let http = Code(.http)
        /// No answer: connection refused, reset, timed out or cut short.
        public static let transport = Code(.transport)
        /// The TLS handshake failed: the server's certificate is not trusted or not for this
        /// host (never retried: it fails the same way again).
        public static let tls = Code(.tls)
        /// The answer was not what S3 sends (a body too large, a listing that does not parse).
        public static let malformed = Code(.malformed)
        /// The server does not do something Vaultline relies on (it ignores `If-None-Match`).
        public static let unsupportedServer = Code(.unsupportedServer)

        public var description: String { backing.rawValue }
    }

    public var code: Code
    /// The HTTP status, when there was an answer.
    public var status: Int?
    /// S3's `<Code>` from the answer's body (`NoSuchKey`, `SlowDown`, `BadDigest`).
    public var s3Code: String?
    public var message: String
    /// `METHOD bucket/key` of the request.
    public var object: String?
    /// The server's `x-amz-request-id`, for its operators.
    public var requestID: String?
    public var cause: (any Error)?
    public var location: ErrorLocation

    public init(
        _ code: Code, status: Int? = nil, s3Code: String? = nil, _ message: String, object: String?,
        requestID: String? = nil, cause: (any Error)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.status = status
        self.s3Code = s3Code
        self.message = message
        self.object = object
        self.requestID = requestID
        self.cause = cause
        self.location = ErrorLocation(fileID: file, line: line)
    }

    /// The storage engine's code for this failure.
    public var engineCode: VaultlineError.Code {
        switch code {
        case .notFound: .notFound
        case .accessDenied: .invalidArgument
        case .preconditionFailed: .alreadyExists
        case .unsupportedServer: .unsupported
        case .malformed: .corrupt
        default: .io
        }
    }
}
