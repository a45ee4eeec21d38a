import VaultlineGraph

/// The tenant's drive budget kept in the coordinator's database, so that every worker on the
/// tenant spends one SharePoint resource-unit budget and waits out a 429 any of them got.
/// Units are drawn a second's worth at a time (at most 50), so the database sees about one
/// statement a second per busy worker rather than one per request; the tenant's pause is read
/// with every draw and at least every `refreshSeconds`, so a 429 one worker gets holds the
/// others' next requests within about a second. Units drawn and not spent when the worker
/// stops are lost: the budget errs on the side of Microsoft's limit.
public actor SharedDriveBudget: DriveBudget {
    let coordinator: PostgresCoordinator
    let unitsPerSecond: Double
    let batch: Int
    let refresh: Duration
    private var available = 0
    private var availableFrom = ContinuousClock.now
    private var pausedUntil: ContinuousClock.Instant?
    private var checkedAt: ContinuousClock.Instant?
    private var drawing: Task<Void, any Error>?

    /// `unitsPerMinute`: the tenant's budget for all its workers together (0: none; the pause
    /// after a 429 is shared all the same).
    public init(coordinator: PostgresCoordinator, unitsPerMinute: Double, refreshSeconds: Double = 1) {
        self.coordinator = coordinator
        unitsPerSecond = unitsPerMinute > 0 && unitsPerMinute.isFinite ? unitsPerMinute / 60 : 0
        batch = max(1, min(50, Int(unitsPerSecond.rounded(.down))))
        refresh = .milliseconds(Int64(max(0.05, refreshSeconds) * 1000))
    }

    public func admit(units: Int) async throws {
        while true {
            let now = ContinuousClock.now
            // Units drawn long ago are the budget of a moment that has passed: spending them now
            // would add a burst to the others'.
            if available > 0, now - availableFrom > .seconds(2) { available = 0 }
            let short = unitsPerSecond > 0 && available < units
            if short || checkedAt.map({ now - $0 >= refresh }) ?? true {
                // One draw at a time: requests arriving meanwhile wait for it. A draw only to
                // read the pause takes no units.
                let draw = drawing ?? Task { try await self.draw(short ? units : 0) }
                drawing = draw
                defer { if drawing == draw { drawing = nil } }
                try await draw.value
                continue
            }
            var start = max(now, pausedUntil ?? now)
            if unitsPerSecond > 0 {
                available -= units
                start = max(start, availableFrom)
            }
            if start > now { try await Task.sleep(until: start, clock: .continuous) }
            return
        }
    }

    public func pause(seconds: Double) async {
        let seconds = PostgresCoordinator.bounded(seconds: seconds)
        guard seconds > 0 else { return }
        let until = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        pausedUntil = max(pausedUntil ?? until, until)
        // The pause holds here whether or not the database takes it; the other workers learn
        // of it with their next draw.
        do { try await coordinator.pauseDrives(seconds: seconds) } catch {
            coordinator.logger.warning("could not share a drive pause", metadata: ["error": "\(error)"])
        }
    }

    /// Draws a batch (at least `units`; 0: none, only the pause is read).
    private func draw(_ units: Int) async throws {
        let want = units > 0 ? max(batch, units) : 0
        let grant = try await coordinator.drawDriveUnits(want, unitsPerSecond: unitsPerSecond,
                                                         burstSeconds: unitsPerSecond > 0 ? Double(batch) / unitsPerSecond : 0)
        let now = ContinuousClock.now
        checkedAt = now
        if want > 0 {
            available += want
            availableFrom = now + .milliseconds(Int64(grant.startsIn * 1000))
        }
        if grant.pausedFor > 0 {
            let until = now + .milliseconds(Int64(grant.pausedFor * 1000))
            pausedUntil = max(pausedUntil ?? until, until)
        }
    }
}
