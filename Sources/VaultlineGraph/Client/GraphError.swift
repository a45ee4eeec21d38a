import Foundation
import VaultlineCore

/// A Graph request that failed for good, with what Graph said (status, Graph's error code,
/// message) and which URL it was (see `ContextualError` for the shape all of Vaultline's errors
/// share).
public struct GraphError: ContextualError, Sendable {
    /// What kind of failure it was; Graph's own code (`itemNotFound`, `activityLimitReached`)
    /// is ``graphCode``. New codes may be added: switch over them with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case authentication, notFound, syncStateExpired, exhausted, http, transport, malformed
        }

        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// The token endpoint refused the app's credentials, or they cannot be read.
        public static let authentication = Code(.authentication)
        /// The item does not exist (any more): deleted between listing and download.
        public static let notFound = Code(.notFound)
        /// 410: the delta token expired; the folder or drive must be enumerated again.
        public static let syncStateExpired = Code(.syncStateExpired)
        /// Still throttled or failing after every attempt.
        public static let exhausted = Code(.exhausted)
        /// Any other HTTP answer.
        public static let http = Code(.http)
        /// No answer: connection refused, reset or cut short.
        public static let transport = Code(.transport)
        /// The answer was not what Graph sends.
        public static let malformed = Code(.malformed)

        public var description: String { backing.rawValue }
    }

    public var code: Code
    /// The HTTP status, when there was an answer.
    public var status: Int?
    /// Graph's `error.code` from the answer's body.
    public var graphCode: String?
    public var message: String
    /// The request's URL, query included (it may hold tokens: ``object`` leaves it out).
    public var url: String
    public var cause: (any Error)?
    public var location: ErrorLocation

    public init(
        _ code: Code, status: Int? = nil, graphCode: String? = nil, _ message: String, url: String,
        cause: (any Error)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.status = status
        self.graphCode = graphCode
        self.message = message
        self.url = url
        self.cause = cause
        self.location = ErrorLocation(fileID: file, line: line)
    }

    /// The URL without its query, which may hold tokens.
    public var object: String? { Self.redacted(url) }

    public var description: String {
        var text = "Graph"
        if let status { text += " \(status)" }
        if let graphCode { text += " \(graphCode)" }
        text += ": \(message) (\(Self.redacted(url)))"
        if let cause { text += " (\(cause))" }
        return text
    }

    /// Whether no part of a run can go on after it: the app cannot sign in, or Graph never
    /// accepts its token. Anything else fails only the item or collection it came from.
    public var endsTheRun: Bool { code == .authentication || status == 401 }

    /// Whether it says the user has no such service: no Exchange Online mailbox (a guest, an
    /// on-premises or unlicensed one) or no OneDrive ("User's mysite not found").
    var serviceAbsent: Bool {
        status == 404 && (graphCode == "MailboxNotEnabledForRESTAPI" || graphCode == "ResourceNotFound")
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
    /// OneDrive and SharePoint resource units spent (as ``GraphClient/resourceUnits(method:url:)``
    /// prices them), and seconds drive requests waited for the budget or a tenant's pause.
    public var driveUnits = 0
    public var driveBudgetSeconds = 0.0
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
        d.driveUnits -= earlier.driveUnits
        d.driveBudgetSeconds -= earlier.driveBudgetSeconds
        return d
    }
}
