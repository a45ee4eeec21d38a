import Foundation

/// How many requests one backend has in flight at once: TCP's congestion control applied to
/// requests. The limit starts low and grows by one for every `limit` requests that succeed
/// (slow start doubles it until the first throttling answer), and halves on a `503 SlowDown`
/// or 429 — AWS partitions a busy prefix only over 30–60 minutes and throttles while it does
/// (../shared/research/scale-out.md §2.2), so a client must back off, not give up.
///
/// Callers are threads (the `Backend` protocol is synchronous); ``acquire(timeout:)`` blocks.
// @unchecked Sendable: `state` is only read or written with `condition` locked
public final class RequestLimiter: @unchecked Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var limit: Int
        public var inFlight: Int
        public var throttled: Int
    }

    private struct State {
        var limit: Int
        var inFlight = 0
        var slowStart = true
        var successesAtLimit = 0
        var throttled = 0
    }

    public let minimum: Int
    public let maximum: Int
    private let condition = NSCondition()
    private var state: State

    public init(initial: Int = 4, minimum: Int = 1, maximum: Int = 16) {
        precondition(minimum >= 1 && minimum <= maximum)
        self.minimum = minimum
        self.maximum = maximum
        state = State(limit: min(max(initial, minimum), maximum))
    }

    /// Waits for a slot; false when none came free within `timeout` seconds.
    public func acquire(timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while state.inFlight >= state.limit {
            if !condition.wait(until: deadline) { return false }
        }
        state.inFlight += 1
        return true
    }

    /// Gives a slot back, saying whether the server throttled the request.
    public func release(throttled: Bool) {
        condition.lock()
        defer { condition.unlock() }
        state.inFlight -= 1
        if throttled {
            state.throttled += 1
            state.slowStart = false
            state.limit = max(minimum, state.limit / 2)
            state.successesAtLimit = 0
        } else {
            state.successesAtLimit += 1
            let step = state.slowStart ? 1 : state.limit
            if state.successesAtLimit >= step, state.limit < maximum {
                state.limit += 1
                state.successesAtLimit = 0
            }
        }
        condition.broadcast()
    }

    public var snapshot: Snapshot {
        condition.lock()
        defer { condition.unlock() }
        return Snapshot(limit: state.limit, inFlight: state.inFlight, throttled: state.throttled)
    }
}
