import Foundation

/// Faults the simulator injects on demand, and the Graph-like limits it enforces. Change them
/// at any time through ``GraphSimulator/faults``.
public struct FaultPlan: Sendable {
    /// Every Nth Graph request is answered 429 with `Retry-After: retryAfter` (0: never).
    public var throttleEvery = 0
    /// Whether `POST /subscriptions` takes an `http://` notification URL (Graph takes HTTPS
    /// only; tests on loopback have no certificate the simulator would trust).
    public var plainNotificationURLs = false
    /// Seconds between a change and its notification (Graph: under a minute on average).
    public var notificationDelay = 0.2
    /// Seconds sent in `Retry-After`; fractional, as Graph sends (`2.128`).
    public var retryAfter = 0.128
    /// Every Nth Graph request is answered 503 without `Retry-After` (0: never).
    public var unavailableEvery = 0
    /// Requests in flight per mailbox past which Graph answers 429 `MailboxConcurrency` (0: no limit).
    public var mailboxConcurrency = 4
    /// Requests per second per mailbox before 429 (0: no limit). Graph's Outlook limit is
    /// 10,000 requests per 10 minutes per app and mailbox (about 16.7 per second).
    public var mailboxRequestsPerSecond = 0.0
    /// Seconds added to every Graph request.
    public var latency = 0.0
    /// Every Nth download stops half way through (the connection is closed).
    public var cutDownloadsEvery = 0
    /// Seconds a download URL works after it was handed out; later requests answer 401 as an
    /// expired pre-authenticated URL does (Graph's last about an hour).
    public var downloadURLLifetime = 3600.0
    /// Requests one download URL answers before it answers 401 as expired (0: no limit): a
    /// deterministic stand-in for a URL that lapsed while its download was broken off.
    public var downloadURLUses = 0
    /// Drive file ids whose first download request finds its URL lapsed (401).
    public var lapsedOnFirstUse: Set<String> = []
    /// Drive file ids that get a new version when first fetched by id (edited by their user
    /// while a backup was downloading them).
    public var editedWhenFetchedByID: Set<String> = []
    /// Item ids whose content answers 404 (deleted between listing and download).
    public var notFound: Set<String> = []
    /// Item ids whose content, and mail folder or drive ids whose delta, answer 500 every time.
    public var alwaysFail: Set<String> = []
    /// Users (by UPN) without an Exchange Online mailbox (guests, on-premises, unlicensed): their
    /// mail, calendar and contacts answer 404 `MailboxNotEnabledForRESTAPI`.
    public var usersWithoutMailbox: Set<String> = []
    /// Users (by UPN) whose OneDrive was never provisioned: 404 `ResourceNotFound`.
    public var usersWithoutDrive: Set<String> = []
    /// `GET /users/{id}/calendars` leaves out `isDefaultCalendar`, as v1.0's documented example does.
    public var calendarsWithoutDefaultFlag = false
    /// Delta tokens made before this generation are answered 410 (expired sync state).
    public var deltaGeneration = 0
    /// Every Nth Graph request first revokes every access token issued so far, as an
    /// administrator's revocation or a continuous access evaluation event does before the
    /// token's expiry: that request and any other still carrying an old token answer 401
    /// (0: never).
    public var revokeTokensEvery = 0

    // MARK: The write side

    /// Drive writes answer 403 `accessDenied` (the app lacks `Files.ReadWrite.All`).
    public var drivesReadOnly = false
    /// Mailbox writes answer 403 `ErrorAccessDenied` (the app lacks `Mail.ReadWrite`).
    public var mailboxesReadOnly = false
    /// Bytes of request bodies one mailbox takes per 5 minutes before 429 "IncomingBytes"
    /// (Exchange: 150 MB per app and mailbox; 0: no limit).
    public var mailboxUploadBytesPer5Minutes = 0
    /// The window of that budget in seconds (300, as Exchange's; shorter in tests).
    public var mailboxUploadWindow = 300.0
    /// `createUploadSession` with `fileSystemInfo` answers 400, as some tenants do.
    public var refuseFileSystemInfo = false
    /// Every Nth upload fragment answers 503 without being stored (0: never).
    public var failUploadFragmentsEvery = 0
    /// Files (by name) whose last fragment commits them and then answers 500: the client cannot
    /// tell the upload succeeded.
    public var failAfterCommit: Set<String> = []
    /// A message's first attachment POST answers 404 `ErrorItemNotFound`, as Exchange sometimes
    /// does right after creating the message.
    public var attachmentNotFoundFirst = false
    /// Every Nth message created is stored and then answered 500: the client cannot tell it was
    /// made (0: never).
    public var failAfterCreatingEvery = 0
    /// PATCH of a message answers 500 without changing it.
    public var failMessagePatches = false
    /// Seconds an upload session lives after its last fragment (Graph's are about 15 minutes).
    public var uploadSessionLifetime = 900.0
    /// Seconds an upload URL's own token lasts from the session's creation, however busy the
    /// session: past it the URL answers 401 `expiredToken` (Graph: 24 hours).
    public var uploadURLTokenLifetime = 86_400.0
    /// The first session of each file answers 401 `expiredToken` once this many fragments were
    /// stored (0: never): a stand-in for an upload that outlived its URL's 24 hours.
    public var uploadTokenExpiresAfterFragments = 0
    /// Resource units the app may spend per minute on OneDrive and SharePoint (0: no limit).
    /// SharePoint's per-app limit is 1,200 a minute for a tenant under 1,000 licences; a GET
    /// costs 1, a create, update, delete or upload request 2; past it 429 with `Retry-After`,
    /// and a refused request still counts. Fragments sent to an upload URL are not counted
    /// (whether Graph counts them is not documented).
    public var driveResourceUnitsPerMinute = 0
    /// Bytes each drive may hold; a commit past it answers 507 `quotaLimitReached` (0: no quota).
    public var driveQuotaBytes: Int64 = 0

    public init() {}
}

/// What the simulator saw and did, for tests and the demo's summary.
public struct SimulatorStats: Sendable, Codable {
    public var requests = 0
    public var tokenRequests = 0
    public var throttled = 0
    public var unavailable = 0
    public var concurrencyRefusals = 0
    public var downloads = 0
    public var downloadBytes: Int64 = 0
    public var cutDownloads = 0
    /// Download requests refused because their URL had expired.
    public var expiredDownloadURLs = 0
    public var expiredTokens = 0
    /// Graph requests answered 401 (no token, an expired or a revoked one).
    public var unauthorized = 0
    /// Times every access token issued so far was revoked (``FaultPlan/revokeTokensEvery``).
    public var tokenRevocations = 0
    /// Highest number of requests in flight for one mailbox.
    public var peakMailboxConcurrency = 0
    /// Mailbox-scoped requests admitted (not throttled), in all and for the busiest mailbox:
    /// the busiest one's count at the per-mailbox rate is the least time a client can take.
    public var mailboxRequests = 0
    public var busiestMailboxRequests = 0
    /// Write requests (POST, PUT, PATCH, DELETE, upload fragments), upload sessions opened,
    /// fragments received, bytes uploaded and files committed.
    public var writes = 0
    public var uploadSessions = 0
    public var fragments = 0
    public var uploadedBytes: Int64 = 0
    public var filesCommitted = 0
    /// Messages created, and request bytes mailboxes took under the upload budget.
    public var messagesCreated = 0
    public var mailboxUploadedBytes: Int64 = 0
    public var busiestMailboxUploadedBytes: Int64 = 0
    /// Events and contacts created, and invitations sent to attendees of created events.
    public var eventsCreated = 0
    public var contactsCreated = 0
    public var invitationsSent = 0
    /// Attachment POSTs answered 404 on purpose (``FaultPlan/attachmentNotFoundFirst``).
    public var transientNotFound = 0
    /// Upload fragments and session reads answered 401 `expiredToken`.
    public var expiredUploadTokens = 0
    /// Drive resource units spent, and drive requests refused for them (429).
    public var driveResourceUnits = 0
    public var driveThrottled = 0
    /// Change-notification subscriptions created and renewed, validations that failed, and
    /// notifications posted (2xx within 3 s) and not.
    public var subscriptionsCreated = 0
    public var subscriptionRenewals = 0
    public var subscriptionValidationsFailed = 0
    public var notificationsDelivered = 0
    public var notificationsFailed = 0
    /// Commits refused with 507 (the drive's quota).
    public var quotaRefusals = 0
}
