import Foundation

/// Runs blocking repository work (forget, prune, scrub: file and network I/O for minutes) on a
/// thread of its own, so that it never holds one of the few threads of Swift's cooperative pool
/// that the backup passes and the HTTP server run on.
enum BlockingJob {
    static func run<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let thread = Thread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            thread.name = name
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
