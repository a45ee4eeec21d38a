import Foundation

/// A Graph request that failed for good, with what Graph said (status, error code, message)
/// and which URL it was.
public struct GraphError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The token endpoint refused the app's credentials.
        case authentication
        /// The item does not exist (any more): deleted between listing and download.
        case notFound
        /// 410: the delta token expired; the folder or drive must be enumerated again.
        case syncStateExpired
        /// Still throttled or failing after every attempt.
        case exhausted
        /// Any other HTTP answer.
        case http
        /// No answer: connection refused, reset or cut short.
        case transport
        /// The answer was not what Graph sends.
        case malformed
    }

    public var kind: Kind
    public var status: Int?
    public var code: String?
    public var message: String
    public var url: String

    public init(_ kind: Kind, status: Int? = nil, code: String? = nil, _ message: String, url: String) {
        self.kind = kind
        self.status = status
        self.code = code
        self.message = message
        self.url = url
    }

    public var description: String {
        var s = "Graph"
        if let status { s += " \(status)" }
        if let code { s += " \(code)" }
        return s + ": \(message) (\(Self.redacted(url)))"
    }

    /// A URL without its query, which may hold tokens.
    /// Whether no part of a run can go on after it: the app cannot sign in, or Graph never
    /// accepts its token. Anything else fails only the item or collection it came from.
    public var endsTheRun: Bool { kind == .authentication || status == 401 }

    /// Whether it says the user has no such service: no Exchange Online mailbox (a guest, an
    /// on-premises or unlicensed one) or no OneDrive ("User's mysite not found").
    var serviceAbsent: Bool {
        status == 404 && (code == "MailboxNotEnabledForRESTAPI" || code == "ResourceNotFound")
    }

    static func redacted(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
}

/// What the client did, for summaries and benchmarks.
public struct GraphStats: Sendable, Codable, Equatable {
    public var requests = 0
    public var throttled = 0
    public var serverErrors = 0
    public var retries = 0
    public var tokenRequests = 0
    /// Answers 401 (a token expired early or revoked): the request signs in again, up to three times.
    public var unauthorized = 0
    public var bytesDownloaded: Int64 = 0
    public var resumedDownloads = 0
    /// Download URLs that had lapsed and were fetched again.
    public var renewedDownloadURLs = 0
    /// Seconds spent waiting on Retry-After and backoff.
    public var waitedSeconds = 0.0
    public init() {}

    /// What happened after `earlier` (one run's share of a client used for several).
    public func since(_ earlier: GraphStats) -> GraphStats {
        var d = self
        d.requests -= earlier.requests
        d.throttled -= earlier.throttled
        d.serverErrors -= earlier.serverErrors
        d.retries -= earlier.retries
        d.tokenRequests -= earlier.tokenRequests
        d.unauthorized -= earlier.unauthorized
        d.bytesDownloaded -= earlier.bytesDownloaded
        d.resumedDownloads -= earlier.resumedDownloads
        d.renewedDownloadURLs -= earlier.renewedDownloadURLs
        d.waitedSeconds -= earlier.waitedSeconds
        return d
    }
}
