/// A counting semaphore for tasks: at most `limit` holders at once, the rest wait in order, and
/// urgent waiters before the others. With a rate, each acquisition also waits for its turn in a
/// ``RequestBudget``. A task cancelled while it waits leaves the queue and gets
/// `CancellationError`, holding nothing.
actor AsyncLimiter {
    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    let limit: Int
    private var used = 0
    private var nextID = 0
    private var waiters: [Waiter] = []
    private var urgentWaiters: [Waiter] = []
    private var budget: RequestBudget?

    init(_ limit: Int, ratePerSecond: Double = 0) {
        self.limit = max(1, limit)
        budget = ratePerSecond > 0 ? RequestBudget(ratePerSecond: ratePerSecond, now: .now) : nil
    }

    /// Waits for a slot. An urgent caller is served before every non-urgent one still waiting.
    func acquire(urgent: Bool = false) async throws {
        if used < limit {
            used += 1
        } else {
            let id = nextID
            nextID += 1
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                    if urgent { urgentWaiters.append(Waiter(id: id, continuation: continuation)) } else { waiters.append(Waiter(id: id, continuation: continuation)) }
                }
            } onCancel: {
                Task { await self.cancelWaiter(id) }
            }
        }
        let now = ContinuousClock.now
        if let start = budget?.reserve(now: now), start > now {
            do { try await Task.sleep(until: start, clock: .continuous) } catch {
                release()
                throw error
            }
        }
    }

    func release() {
        // The slot passes straight to the next waiter, urgent ones first.
        if !urgentWaiters.isEmpty {
            urgentWaiters.removeFirst().continuation.resume()
        } else if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume()
        } else {
            used -= 1
        }
    }

    /// A waiter whose task was cancelled leaves the queue (if the slot has not reached it yet).
    private func cancelWaiter(_ id: Int) {
        if let i = urgentWaiters.firstIndex(where: { $0.id == id }) {
            urgentWaiters.remove(at: i).continuation.resume(throwing: CancellationError())
        } else if let i = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: i).continuation.resume(throwing: CancellationError())
        }
    }

    /// Graph throttled a request of this limiter's: its rate halves (``RequestBudget/slowDown(now:)``).
    func slowDown() { budget?.slowDown(now: .now) }

    /// The rate in force (nil: no budget), for tests and the stats.
    var ratePerSecond: Double? { budget?.ratePerSecond }

    /// Tasks waiting (for tests).
    var waiting: Int { waiters.count + urgentWaiters.count }
}

/// A request budget: a token bucket holding half a second of budget. Requests start at most
/// `rate` per second on average, and budget left unused in the last half second may be spent
/// at once, so that a short pause (a page turn, a busy moment) is made up rather than lost. The
/// bucket is kept small so that requests delayed on their way (up to about half a second) still
/// arrive inside a service limit a little above the rate.
///
/// After a 429 or 503 the rate halves (``slowDown(now:)``, down to an eighth of the set rate), and
/// each quiet minute after gives back a tenth of the set rate, up to it: additive increase,
/// multiplicative decrease, so a limit lower than the set rate (another app on the same
/// mailbox, a tenant under pressure) is found instead of hit again at every turn.
struct RequestBudget {
    let setRate: Double
    private(set) var ratePerSecond: Double
    private(set) var interval: Duration
    let burst: Duration
    /// When the next request may start if the bucket is empty.
    private var nextStart: ContinuousClock.Instant
    /// The last slow-down or the last minute's recovery.
    private var changed: ContinuousClock.Instant

    init(ratePerSecond: Double, now: ContinuousClock.Instant, burst: Duration = .milliseconds(500)) {
        setRate = ratePerSecond
        self.ratePerSecond = ratePerSecond
        interval = Self.interval(ratePerSecond)
        self.burst = burst
        nextStart = now
        changed = now
    }

    static func interval(_ rate: Double) -> Duration { .nanoseconds(Int64(1e9 / rate)) }

    /// Halves the rate (at most once a second: the requests in flight when the first 429 came
    /// get theirs too, and they are one signal).
    mutating func slowDown(now: ContinuousClock.Instant) {
        recover(now: now)
        guard ratePerSecond == setRate || now - changed >= .seconds(1) else { return }
        ratePerSecond = max(setRate / 8, ratePerSecond / 2)
        interval = Self.interval(ratePerSecond)
        changed = now
    }

    /// A tenth of the set rate back per quiet minute.
    mutating func recover(now: ContinuousClock.Instant) {
        guard ratePerSecond < setRate else { return }
        let minutes = Int((now - changed) / .seconds(60))
        guard minutes > 0 else { return }
        ratePerSecond = min(setRate, ratePerSecond + setRate * 0.1 * Double(minutes))
        interval = Self.interval(ratePerSecond)
        changed = changed + .seconds(60 * minutes)
    }

    /// Takes the next turn (`units` turns at once); returns when its request may start (`now`
    /// or later).
    mutating func reserve(now: ContinuousClock.Instant, units: Int = 1) -> ContinuousClock.Instant {
        recover(now: now)
        // Budget older than `burst` is gone; what is left of it is spent first.
        let due = max(nextStart, now - burst)
        nextStart = due + interval * max(1, units)
        return max(now, due)
    }
}
