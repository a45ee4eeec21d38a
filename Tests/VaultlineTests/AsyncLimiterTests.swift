import Foundation
@testable import VaultlineCore
import Testing
@testable import VaultlineGraph

/// The limiter behind the per-mailbox request budget and the chunker pool's two lanes.
@Suite("Async limiter")
struct AsyncLimiterTests {
    @Test(.timeLimit(.minutes(1)))
    func urgentWaitersAreServedBeforeEarlierOrdinaryOnes() async throws {
        let limiter = AsyncLimiter(1)
        await limiter.acquire()
        let order = Locked<[String]>([])
        let ordinary = Task {
            await limiter.acquire()
            order.withLock { $0.append("ordinary") }
            await limiter.release()
        }
        try await Task.sleep(for: .milliseconds(100))  // the ordinary waiter queues first
        let urgent = Task {
            await limiter.acquire(urgent: true)
            order.withLock { $0.append("urgent") }
            await limiter.release()
        }
        try await Task.sleep(for: .milliseconds(100))
        await limiter.release()
        await ordinary.value
        await urgent.value
        #expect(order.withLock { $0 } == ["urgent", "ordinary"])
    }

    @Test(.timeLimit(.minutes(1)))
    func theBudgetHoldsItsRateAndMakesUpHalfASecondOfPause() async throws {
        let rate = 40.0
        let limiter = AsyncLimiter(100, ratePerSecond: rate)
        func take(_ n: Int) async -> Double {
            let start = ContinuousClock.now
            for _ in 0..<n { await limiter.acquire(); await limiter.release() }
            let d = ContinuousClock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        // From the start: no burst saved up, so 40 acquisitions take about a second.
        let steady = await take(40)
        #expect(steady > 0.9 && steady < 3, "40 at 40/s took \(steady) s")
        // After a pause, half a second of budget (20) is spent at once, then the rate again.
        try await Task.sleep(for: .seconds(1))
        let burst = await take(20)
        #expect(burst < 0.25, "20 after a pause took \(burst) s")
        let after = await take(20)
        #expect(after > 0.4, "the next 20 wait for the budget: \(after) s")
    }
}
