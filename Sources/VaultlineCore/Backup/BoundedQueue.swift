import Foundation

/// A blocking FIFO of bounded capacity between pipeline threads. `push` waits while full;
/// `pop` waits while empty and returns nil once the queue is closed and drained.
// @unchecked Sendable: every mutable field is read and written under `condition`
final class BoundedQueue<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private let capacity: Int
    private var closed = false

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func push(_ item: Element) {
        condition.lock()
        while items.count - head >= capacity && !closed { condition.wait() }
        items.append(item)
        condition.broadcast()
        condition.unlock()
    }

    func pop() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.count == head && !closed { condition.wait() }
        if items.count == head { return nil }
        return take()
    }

    /// Removes the head item; the lock is held and the queue is not empty.
    private func take() -> Element {
        let item = items[head]
        head += 1
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return item
    }

    /// Like ``pop()``, but gives up at `deadline`: `.timedOut` then, `.closed` once the queue is
    /// closed and drained.
    enum Popped { case item(Element), timedOut, closed }

    func pop(until deadline: Date) -> Popped {
        condition.lock()
        defer { condition.unlock() }
        while items.count == head && !closed {
            if !condition.wait(until: deadline) && items.count == head && !closed { return .timedOut }
        }
        if items.count == head { return .closed }
        return .item(take())
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// A value shared between threads under a lock. Unchecked: the value is only reached inside
/// `withLock`, and it must itself be Sendable to cross threads.
// @unchecked Sendable: `value` is touched only under `lock`, and is Sendable itself
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
