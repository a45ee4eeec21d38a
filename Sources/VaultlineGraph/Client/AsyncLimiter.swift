/// A counting semaphore for tasks: at most `limit` holders at once, the rest wait in order, and
/// urgent waiters before the others.
/// With a rate, acquisitions also keep to a request budget (a token bucket holding half a second
/// of budget): at most `rate` per second on average, and budget left unused in the last half
/// second may be spent at once, so that a short pause (a page turn, a busy moment) is made up
/// rather than lost. The bucket is kept small so that requests delayed on their way (up to
/// about half a second) still arrive inside a service limit a little above the rate.
actor AsyncLimiter {
    let limit: Int
    let interval: Double
    private let burst: Duration
    private var used = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var urgentWaiters: [CheckedContinuation<Void, Never>] = []
    private var nextStart = ContinuousClock.now

    init(_ limit: Int, ratePerSecond: Double = 0) {
        self.limit = max(1, limit)
        interval = ratePerSecond > 0 ? 1 / ratePerSecond : 0
        burst = .milliseconds(ratePerSecond > 0 ? 500 : 0)
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
        guard interval > 0 else { return }
        let now = ContinuousClock.now
        // Budget older than `burst` is gone; what is left of it is spent first.
        let due = max(nextStart, now - burst)
        let start = max(now, due)
        nextStart = due + .nanoseconds(Int64(interval * 1e9))
        if start > now { try? await Task.sleep(until: start, clock: .continuous) }
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
