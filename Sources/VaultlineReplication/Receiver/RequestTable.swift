import Synchronization

/// The request ids in progress on one connection, and the GET slots: a GET beyond
/// ``ProtocolLimits/maxGetsInFlight`` waits (and with it the reading of the peer's frames)
/// until one of the streams in flight has ended.
final class RequestTable: Sendable {
    private struct State {
        var ids: Set<UInt32> = []
        var gets = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())
    let maxGets: Int

    init(maxGets: Int) { self.maxGets = maxGets }

    /// Takes `id`; false when it is in progress already.
    func claim(_ id: UInt32) -> Bool {
        state.withLock { $0.ids.insert(id).inserted }
    }

    func release(_ id: UInt32) {
        _ = state.withLock { $0.ids.remove(id) }
    }

    /// Returns once a GET may start, and counts it.
    func waitForGetSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.gets < maxGets {
                    s.gets += 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// A GET stream has ended: its id is free, and a waiting GET takes its slot.
    func endGet(_ id: UInt32) {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.ids.remove(id)
            if s.waiters.isEmpty {
                s.gets -= 1
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
