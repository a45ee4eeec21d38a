#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A token bucket over bytes per second with up to one second of burst: `replicate --limit-rate`
/// and `scrub --limit-rate`. Thread-safe; ``reserve(_:)`` says how long the caller must wait,
/// so synchronous (``take(_:)``) and asynchronous callers share one implementation.
public final class ByteRateBudget: Sendable {
    public let bytesPerSecond: Double
    private let state: Mutex<(tokens: Double, last: UInt64)>

    /// `startFull`: the first second's worth may go at once (a link); otherwise the rate holds
    /// from the first byte (a scrub, whose average rate is what is promised).
    public init(bytesPerSecond: Double, startFull: Bool = true) {
        self.bytesPerSecond = bytesPerSecond
        state = Mutex((startFull ? bytesPerSecond : 0, MonotonicClock.nanoseconds()))
    }

    /// Spends `count` bytes of budget (possibly going into debt); returns the seconds the caller
    /// must wait before using them.
    public func reserve(_ count: Int) -> Double {
        state.withLock { s in
            let now = MonotonicClock.nanoseconds()
            s.tokens = min(bytesPerSecond, s.tokens + Double(now - s.last) / 1e9 * bytesPerSecond)
            s.last = now
            s.tokens -= Double(count)
            return s.tokens >= 0 ? 0 : -s.tokens / bytesPerSecond
        }
    }

    /// Blocks the calling thread until `count` bytes may be used.
    public func take(_ count: Int) {
        let wait = reserve(count)
        if wait > 0 { usleep(UInt32(min(wait, 4000) * 1e6)) }
    }
}

public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    public static func seconds(since start: UInt64) -> Double { Double(nanoseconds() - start) / 1e9 }
}
