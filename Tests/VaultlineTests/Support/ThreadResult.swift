import Foundation

/// A closure run on a thread of its own (not the cooperative pool, which a loaded test run can
/// keep busy); `value` waits for its result.
final class ThreadResult<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?

    init(_ body: @escaping @Sendable () -> T) {
        Thread { [self] in
            result = body()
            done.signal()
        }.start()
    }

    var value: T {
        done.wait()
        done.signal()
        return result!
    }
}
