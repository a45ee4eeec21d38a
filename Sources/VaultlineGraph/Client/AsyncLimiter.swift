/// A counting semaphore for tasks: at most `limit` holders at once, the rest wait in order.
/// With a rate, acquisitions are also spaced at least `1/rate` seconds apart (a request budget
/// kept below the service's limit, so a healthy run is rarely throttled).
actor AsyncLimiter {
    let limit: Int
    let interval: Double
    private var used = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var nextStart = ContinuousClock.now

    init(_ limit: Int, ratePerSecond: Double = 0) {
        self.limit = max(1, limit)
        interval = ratePerSecond > 0 ? 1 / ratePerSecond : 0
    }

    func acquire() async {
        if used < limit {
            used += 1
        } else {
            await withCheckedContinuation { waiters.append($0) }
        }
        guard interval > 0 else { return }
        let now = ContinuousClock.now
        let start = max(now, nextStart)
        nextStart = start + .nanoseconds(Int64(interval * 1e9))
        if start > now { try? await Task.sleep(until: start, clock: .continuous) }
    }

    func release() {
        if waiters.isEmpty {
            used -= 1
        } else {
            // The slot passes straight to the next waiter.
            waiters.removeFirst().resume()
        }
    }
}
