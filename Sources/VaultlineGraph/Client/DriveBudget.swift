/// What every OneDrive and SharePoint request passes before it is sent. SharePoint meters an
/// app by resource units per tenant (1,200 to 6,000 a minute by licence count; refused requests
/// count too), and a 429 there is the tenant's, not the request's: so the budget and the pause
/// after a 429 belong to the tenant. ``LocalDriveBudget`` keeps them in the process;
/// `SharedDriveBudget` (VaultlineService) keeps them in the coordinator's database, for several
/// workers on one tenant.
public protocol DriveBudget: Sendable {
    /// Waits until `units` resource units may be spent and no pause holds, and spends them.
    func admit(units: Int) async throws
    /// Graph refused a drive request (429) and asked for `seconds`: no drive request is sent
    /// before then, by anyone who shares this budget.
    func pause(seconds: Double) async
}

extension GraphClient {
    /// What a request costs in resource units, as Microsoft prices them: a permission call 5, a
    /// delta without a token, a multi-item query, a create, update, delete or upload 2, anything
    /// else read (one item, a delta with its token, a download) 1. A listing that is not a delta
    /// is counted as one item: Graph pages it.
    public static func resourceUnits(method: String, url: String) -> Int {
        if url.contains("permissions") { return 5 }
        guard method == "GET" else { return 2 }
        if url.contains("/delta") && !url.contains("token=") { return 2 }
        return 1
    }
}

/// The tenant's drive budget in one process: `unitsPerMinute` (0: no budget, only the pause
/// after a 429), with a second of unused budget spendable at once; a 429 also halves the rate
/// for a while (``RequestBudget``).
public actor LocalDriveBudget: DriveBudget {
    private var budget: RequestBudget?
    private var pausedUntil: ContinuousClock.Instant?

    public init(unitsPerMinute: Double) {
        budget = unitsPerMinute > 0 ? RequestBudget(ratePerSecond: unitsPerMinute / 60, now: .now, burst: .seconds(1)) : nil
    }

    public func admit(units: Int) async throws {
        let now = ContinuousClock.now
        var start = max(now, pausedUntil ?? now)
        start = budget?.reserve(now: start, units: units) ?? start
        if start > now { try await Task.sleep(until: start, clock: .continuous) }
    }

    public func pause(seconds: Double) async {
        budget?.slowDown(now: .now)
        guard seconds > 0, seconds.isFinite else { return }
        let until = ContinuousClock.now + .milliseconds(Int64(min(seconds, 86_400) * 1000))
        pausedUntil = max(pausedUntil ?? until, until)
    }
}
