import Foundation

/// A fixed-capacity byte buffer handed between pipeline threads; owned by one thread at a time.
// @unchecked Sendable: owned by one pipeline stage at a time, handed on through a BoundedQueue
final class PooledBuffer: @unchecked Sendable {
    let storage: UnsafeMutableRawBufferPointer
    var count = 0
    /// False for a one-off buffer made for a blob larger than the pool's buffers.
    let pooled: Bool

    init(capacity: Int, pooled: Bool = true) {
        storage = .allocate(byteCount: capacity, alignment: 64)
        self.pooled = pooled
    }

    deinit { storage.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }
}

/// A fixed set of buffers, reused for the whole backup. `acquire` blocks while all are in use,
/// which is what bounds the pipeline's memory: no chunk is ever allocated per blob, so there is
/// no allocator churn (page faults, arena growth) on the hot path.
// @unchecked Sendable: `free` is read and written under `condition`
final class BufferPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var free: [PooledBuffer]
    let capacity: Int

    init(count: Int, capacity: Int) {
        self.capacity = capacity
        free = (0..<count).map { _ in PooledBuffer(capacity: capacity) }
    }

    /// A buffer of at least `size` bytes: from the pool when it fits, else a one-off.
    func acquire(size: Int) -> PooledBuffer {
        size <= capacity ? acquire() : PooledBuffer(capacity: size, pooled: false)
    }

    func acquire() -> PooledBuffer {
        condition.lock()
        while free.isEmpty { condition.wait() }
        let b = free.removeLast()
        condition.unlock()
        b.count = 0
        return b
    }

    func release(_ buffer: PooledBuffer) {
        guard buffer.pooled else { return }
        condition.lock()
        free.append(buffer)
        condition.signal()
        condition.unlock()
    }
}
