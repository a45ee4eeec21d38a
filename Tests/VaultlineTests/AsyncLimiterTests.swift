import Foundation
import Testing
@testable import VaultlineCore
@testable import VaultlineGraph

/// The limiter behind the per-mailbox request budget and the chunker pool's two lanes.
@Suite("Async limiter")
struct AsyncLimiterTests {
    @Test(.timeLimit(.minutes(5)))
    func urgentWaitersAreServedBeforeEarlierOrdinaryOnes() async throws {
        let limiter = AsyncLimiter(1)
        try await limiter.acquire()
        let order = Locked<[String]>([])
        let ordinary = Task {
            try await limiter.acquire()
            order.withLock { $0.append("ordinary") }
            await limiter.release()
        }
        try await Task.sleep(for: .milliseconds(100))  // the ordinary waiter queues first
        let urgent = Task {
            try await limiter.acquire(urgent: true)
            order.withLock { $0.append("urgent") }
            await limiter.release()
        }
        try await Task.sleep(for: .milliseconds(100))
        await limiter.release()
        try await ordinary.value
        try await urgent.value
        #expect(order.withLock { $0 } == ["urgent", "ordinary"])
    }

    /// On a clock of its own: the budget's arithmetic, whatever the machine is doing.
    @Test func theBudgetKeepsItsRateAndMakesUpHalfASecondOfPause() {
        let t0 = ContinuousClock.now
        var budget = RequestBudget(ratePerSecond: 40, now: t0)
        func seconds(_ i: ContinuousClock.Instant) -> Double {
            let d = i - t0
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        // Asked for all at once from the start: one every 25 ms, no burst saved up.
        let first = (0..<40).map { _ in seconds(budget.reserve(now: t0)) }
        #expect(abs(first[0]) < 1e-6 && abs(first[39] - 0.975) < 1e-6)
        // Two seconds later (idle since 1 s): half a second of budget (20) and the turn due now,
        // 21 requests, at once.
        let later = t0 + .seconds(2)
        let burst = (0..<21).map { _ in seconds(budget.reserve(now: later)) }
        #expect(burst.allSatisfy { abs($0 - 2) < 1e-6 })
        // Then the rate again: the next waits 25 ms, the 19th after the burst 475 ms.
        let after = (0..<19).map { _ in seconds(budget.reserve(now: later)) }
        #expect(abs(after[0] - 2.025) < 1e-6 && abs(after[18] - 2.475) < 1e-6)
    }

    /// Throttled, the rate halves (once a second at most, to an eighth at least), and each
    /// quiet minute gives a tenth of the set rate back.
    @Test func aThrottledBudgetHalvesItsRateAndWinsItBackATenthAMinute() {
        let t0 = ContinuousClock.now
        var budget = RequestBudget(ratePerSecond: 16, now: t0)
        budget.slowDown(now: t0)
        #expect(budget.ratePerSecond == 8)
        budget.slowDown(now: t0 + .milliseconds(500))
        #expect(budget.ratePerSecond == 8, "the 429s of one moment are one signal")
        for second in 1...5 { budget.slowDown(now: t0 + .seconds(second)) }
        #expect(budget.ratePerSecond == 2, "never below an eighth")
        // The interval follows: 2 a second is a turn every 500 ms.
        #expect(budget.interval == .milliseconds(500))
        // Quiet minutes: 2 + 1.6 a minute, up to the set rate.
        _ = budget.reserve(now: t0 + .seconds(5 + 60))
        #expect(abs(budget.ratePerSecond - 3.6) < 1e-9)
        _ = budget.reserve(now: t0 + .seconds(5 + 600))
        #expect(budget.ratePerSecond == 16)
    }

    @Test(.timeLimit(.minutes(5)))
    func aRatedLimiterNeverRunsAheadOfItsBudget() async throws {
        let limiter = AsyncLimiter(100, ratePerSecond: 40)
        let start = ContinuousClock.now
        for _ in 0..<40 { try await limiter.acquire(); await limiter.release() }
        let d = ContinuousClock.now - start
        // 40 at 40/s from a standing start: the last starts 0.975 s in (later under load, never sooner).
        #expect(d >= .milliseconds(970), "40 at 40/s took \(d)")
    }

    /// A waiter whose task is cancelled leaves the queue at once, with CancellationError and no
    /// slot; before, it waited for a slot it no longer wanted, and kept one.
    @Test(.timeLimit(.minutes(5)))
    func aCancelledWaiterLeavesTheQueueHoldingNothing() async throws {
        let limiter = AsyncLimiter(1)
        try await limiter.acquire()
        let waiter = Task { try await limiter.acquire() }
        while await limiter.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(await limiter.waiting == 0)
        // The slot is still the first holder's: released, the next acquire gets it at once.
        await limiter.release()
        try await limiter.acquire()
        await limiter.release()
        // A holder asking again waits (the limit is 1); cancelled, it leaves too.
        let early = Task {
            try await limiter.acquire()
            try await limiter.acquire()
        }
        while await limiter.waiting == 0 { try await Task.sleep(for: .milliseconds(5)) }
        early.cancel()
        await #expect(throws: CancellationError.self) { try await early.value }
        await limiter.release()
        #expect(await limiter.waiting == 0)
    }
}
