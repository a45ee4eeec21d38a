import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// An HTTP proxy in front of the test S3 server that answers some requests itself: a storm of
/// `503 SlowDown`, or a PUT that "succeeds" without reaching the server (a server that ignores
/// `If-None-Match`). Everything else is forwarded unchanged, `Host` included, so signatures
/// still verify upstream.
final class S3FaultProxy: Sendable {
    enum Fault: Sendable {
        /// Answer with this status and S3 error code, and forward nothing.
        case refuse(status: Int, code: String)
        /// Answer 200 to a PUT without forwarding it.
        case pretendStored
        /// Forward it after this many seconds (a slow link).
        case delay(Double)
    }

    struct Seen: Sendable {
        var method: String
        var path: String
        var query: String
        var ifNoneMatch: Bool
    }

    final class Counters: Sendable {
        let state = Mutex<(requests: Int, injected: Int)>((0, 0))
    }

    let port: Int
    private let task: Task<Void, any Error>
    private let counters: Counters

    var requests: Int { counters.state.withLock { $0.requests } }
    var injected: Int { counters.state.withLock { $0.injected } }

    /// Starts the proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:P`);
    /// `decide` sees every request with its number (from 0) and says which fault, if any, to inject.
    static func start(upstream: String, decide: @escaping @Sendable (_ number: Int, _ request: Seen) -> Fault?) async throws -> S3FaultProxy {
        let counters = Counters()
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "s3-fault-proxy")
        logger.logLevel = .critical
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in
                let seen = Seen(method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                                ifNoneMatch: request.headers[HTTPField.Name("If-None-Match")!] != nil)
                let number = counters.state.withLock { state in defer { state.requests += 1 }; return state.requests }
                if let fault = decide(number, seen) {
                    counters.state.withLock { $0.injected += 1 }
                    switch fault {
                    case .refuse(let status, let code):
                        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>\(code)</Code><Message>injected</Message></Error>"
                        return Response(status: .init(code: status), headers: [.contentType: "application/xml"],
                                        body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
                    case .pretendStored:
                        var drained = request
                        _ = try? await drained.collectBody(upTo: 256 << 20)
                        return Response(status: .ok, headers: [HTTPField.Name("ETag")!: "\"0\""], body: ResponseBody())
                    case .delay(let seconds):
                        try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                        return await forward(request, upstream: upstream, http: http)
                    }
                }
                return await forward(request, upstream: upstream, http: http)
            },
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: nil),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            logger: logger)
        let task = Task {
            defer { http.shutdown(queue: .global()) { _ in } }
            do { try await app.run() } catch {
                continuation.finish()
                throw error
            }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            task.cancel()
            throw VaultlineTestError("the fault proxy could not listen")
        }
        return S3FaultProxy(port: port, task: task, counters: counters)
    }

    private init(port: Int, task: Task<Void, any Error>, counters: Counters) {
        self.port = port
        self.task = task
        self.counters = counters
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    private static let hopByHop: Set<String> = ["content-length", "transfer-encoding", "connection", "keep-alive"]

    private static func forward(_ request: Request, upstream: String, http: HTTPClient) async -> Response {
        do {
            var copy = request
            let body = try await copy.collectBody(upTo: 256 << 20)
            var outbound = HTTPClientRequest(url: upstream + (request.uri.string.hasPrefix("/") ? request.uri.string : "/" + request.uri.string))
            outbound.method = HTTPMethod(rawValue: request.method.rawValue)
            // HTTPTypes keeps Host as the :authority pseudo-header, not among the fields.
            if let authority = request.head.authority { outbound.headers.add(name: "Host", value: authority) }
            for field in request.headers where !hopByHop.contains(field.name.canonicalName) {
                outbound.headers.add(name: field.name.rawName, value: field.value)
            }
            if body.readableBytes > 0 || request.method == .put || request.method == .post { outbound.body = .bytes(body) }
            let answer = try await http.execute(outbound, timeout: .seconds(60))
            let bytes = try await answer.body.collect(upTo: 1 << 30)
            var fields = HTTPFields()
            for (name, value) in answer.headers where !hopByHop.contains(name.lowercased()) || (request.method == .head && name.lowercased() == "content-length") {
                if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
            }
            return Response(status: .init(code: Int(answer.status.code)), headers: fields, body: ResponseBody(byteBuffer: bytes))
        } catch {
            return Response(status: .badGateway, body: ResponseBody(byteBuffer: ByteBuffer(string: "proxy: \(error)")))
        }
    }
}

struct VaultlineTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (the synchronous `Backend` calls) on a thread of its own, so that it does
/// not hold one of the few threads Swift's concurrency pool has while in-process servers (the
/// fault proxy) need them.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 4 << 20
        thread.start()
    }
}
