/// A counting semaphore for tasks: at most `limit` holders at once, the rest wait in order, and
/// urgent waiters before the others. With a rate, each acquisition also waits for its turn in a
/// ``RequestBudget``.
actor AsyncLimiter {
    let limit: Int
    private var used = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var urgentWaiters: [CheckedContinuation<Void, Never>] = []
    private var budget: RequestBudget?

    init(_ limit: Int, ratePerSecond: Double = 0) {
        self.limit = max(1, limit)
        budget = ratePerSecond > 0 ? RequestBudget(ratePerSecond: ratePerSecond, now: .now) : nil
    }

    /// Waits for a slot. An urgent caller is served before every non-urgent one still waiting.
    func acquire(urgent: Bool = false) async {
        if used < limit {
            used += 1
        } else if urgent {
            await withCheckedContinuation { urgentWaiters.append($0) }
        } else {
            await withCheckedContinuation { waiters.append($0) }
        }
        let now = ContinuousClock.now
        if let start = budget?.reserve(now: now), start > now { try? await Task.sleep(until: start, clock: .continuous) }
    }

    func release() {
        // The slot passes straight to the next waiter, urgent ones first.
        if !urgentWaiters.isEmpty {
            urgentWaiters.removeFirst().resume()
        } else if !waiters.isEmpty {
            waiters.removeFirst().resume()
        } else {
            used -= 1
        }
    }
}

/// A request budget: a token bucket holding half a second of budget. Requests start at most
/// `rate` per second on average, and budget left unused in the last half second may be spent
/// at once, so that a short pause (a page turn, a busy moment) is made up rather than lost. The
/// bucket is kept small so that requests delayed on their way (up to about half a second) still
/// arrive inside a service limit a little above the rate.
struct RequestBudget {
    let interval: Duration
    let burst: Duration
    /// When the next request may start if the bucket is empty.
    private var nextStart: ContinuousClock.Instant

    init(ratePerSecond: Double, now: ContinuousClock.Instant, burst: Duration = .milliseconds(500)) {
        interval = .nanoseconds(Int64(1e9 / ratePerSecond))
        self.burst = burst
        nextStart = now
    }

    /// Takes the next turn; returns when its request may start (`now` or later).
    mutating func reserve(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        // Budget older than `burst` is gone; what is left of it is spent first.
        let due = max(nextStart, now - burst)
        nextStart = due + interval
        return max(now, due)
    }
}
