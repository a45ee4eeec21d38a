import AsyncHTTPClient
import Foundation
import NIOCore

extension GraphClient {
    /// Streams a file from its pre-authenticated download URL into `sink`, piece by piece (no
    /// whole file in memory). A download that breaks resumes with `Range` from the last byte
    /// handed to `sink`, so `sink` sees every byte exactly once. A URL that has lapsed (401 or
    /// 403: they last about an hour, and a broken download may resume later than that) is
    /// exchanged for a fresh one from `renew`, and the download goes on from where it was.
    /// Returns the length.
    public func download(_ url: String, expectedSize: Int64?, renew: (() async throws -> String)? = nil,
                         sink: (ByteBuffer) async throws -> Void) async throws -> Int64 {
        var url = url
        var received: Int64 = 0
        var failures = 0
        var renewals = 0, renewedAt: Int64 = -1
        while true {
            let from = received
            let headers = from > 0 ? [("Range", "bytes=\(from)-")] : []
            do {
                let complete: Bool = try await send(url, mailbox: nil, authorized: false, headers: headers) { response in
                    var skip: Int64 = 0
                    if from > 0 && response.status == .ok { skip = from }  // the server ignored Range
                    var length: Int64?
                    if let cl = response.headers.first(name: "Content-Length").flatMap(Int64.init) { length = cl - skip + from }
                    for try await var piece in response.body {
                        if skip > 0 {
                            let drop = Int(min(skip, Int64(piece.readableBytes)))
                            piece.moveReaderIndex(forwardBy: drop)
                            skip -= Int64(drop)
                            if piece.readableBytes == 0 { continue }
                        }
                        let n = piece.readableBytes
                        try await sink(piece)
                        received += Int64(n)
                        counters.withLock { $0.bytesDownloaded += Int64(n) }
                    }
                    let total = length ?? expectedSize
                    return total.map { received >= $0 } ?? true
                }
                if complete { return received }
                throw GraphError(.transport, "download ended at byte \(received) of \(expectedSize.map(String.init) ?? "?")", url: url)
            } catch let error as GraphError where error.status == 401 || error.status == 403 {
                // Progress since the last renewal resets the count, as for breaks.
                renewals = received > renewedAt ? 1 : renewals + 1
                renewedAt = received
                guard let renew, renewals <= Self.signInsPerRequest else { throw error }
                counters.withLock { $0.renewedDownloadURLs += 1 }
                url = try await renew()
            } catch let error as GraphError where error.code == .transport || error.code == .exhausted {
                // Progress resets the count: only a download that makes no progress gives up.
                failures = received > from ? 1 : failures + 1
                guard failures < options.maxAttempts else { throw error }
                counters.withLock { $0.resumedDownloads += 1 }
                try await Task.sleep(nanoseconds: UInt64(backoff(failures) * 1e9 / 4))
            } catch {
                // A body cut short surfaces from the response stream as an HTTP client error.
                guard !(error is CancellationError), !(error is GraphError) else { throw error }
                failures = received > from ? 1 : failures + 1
                guard failures < options.maxAttempts else { throw GraphError(.transport, "\(error)", url: url) }
                counters.withLock { $0.resumedDownloads += 1 }
                try await Task.sleep(nanoseconds: UInt64(backoff(failures) * 1e9 / 4))
            }
        }
    }
}
