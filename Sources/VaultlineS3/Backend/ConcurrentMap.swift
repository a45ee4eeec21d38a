import Foundation
import Synchronization

/// Runs a throwing function over items on up to `width` threads at once and returns each
/// item's result in order. For fan-outs of blocking requests (a listing of 256 shards).
enum ConcurrentMap {
    static func run<Item: Sendable, Value: Sendable>(
        _ items: [Item], width: Int, _ body: @escaping @Sendable (Item) throws -> Value
    ) -> [Result<Value, any Error>] {
        let results = Mutex<[Result<Value, any Error>?]>(Array(repeating: nil, count: items.count))
        let next = Atomic<Int>(0)
        let threads = max(1, min(width, items.count))
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < items.count else { return }
                let outcome = Result { try body(items[index]) }
                results.withLock { $0[index] = outcome }
            }
        }
        return results.withLock { $0.map { $0 ?? .failure(CancellationError()) } }
    }
}
