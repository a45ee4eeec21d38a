import Foundation

/// The shape of a generated tenant. The same spec and seed always make the same tenant on the
/// same machine (the text and attachment corpus comes from files found on the machine).
public struct TenantSpec: Sendable, Codable {
    public var seed: UInt64 = 2026
    public var tenantDomain = "contoso.example"
    public var users = 3
    public var messagesPerUser = 40
    /// Mail folders per user besides the well-known ones; every third one is nested.
    public var extraFoldersPerUser = 3
    public var eventsPerUser = 10
    /// Calendars per user besides the default one (Graph v1.0 has no delta for them), and the
    /// events in each.
    public var otherCalendarsPerUser = 1
    public var eventsPerOtherCalendar = 3
    /// Every this many events of a calendar is a weekly series of six with one exception and one
    /// cancellation (0: none).
    public var seriesEvery = 0
    public var contactsPerUser = 10
    /// A contact folder below the default one and another below that, two contacts each.
    public var contactSubfolders = false
    public var filesPerUser = 8
    /// Generated drive files are between these sizes (bytes).
    public var minFileSize = 4_096
    public var maxFileSize = 2 << 20
    /// A OneNote notebook (a `package` item with three files) in every user's Documents.
    public var oneNoteNotebook = false
    /// One file per user of this size (0: none), streamed, never held in memory.
    public var largeFileSize = 0
    /// Share of messages that carry an attachment from the corpus (the same files for many users).
    public var attachmentShare = 0.3
    /// The first message of every mailbox carries a generated attachment of this size (0: none):
    /// past 3 MB a restore must add it through an attachment upload session.
    public var largeAttachmentSize = 0
    /// SharePoint sites, each with one document library.
    public var sites = 1
    public var filesPerSite = 8

    public init() {}

    /// The size the README's demo uses: a couple of users, finishing in seconds.
    public static var demo: TenantSpec {
        var s = TenantSpec()
        s.users = 3
        s.messagesPerUser = 60
        s.filesPerUser = 10
        s.seriesEvery = 4
        return s
    }
}

/// Deterministic pseudo-random numbers (SplitMix64), so a tenant is reproducible from its seed.
struct SimRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
    static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var r = SimRandom(a ^ (b &* 0x9E37_79B9_7F4A_7C15))
        return r.next()
    }
}
