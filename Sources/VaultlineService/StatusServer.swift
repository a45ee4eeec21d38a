import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import NIOCore

/// The service's HTTP endpoints (docs/OPERATIONS.md, "Continuous protection"):
/// - `GET /metrics`: the Prometheus text format, version 0.0.4.
/// - `GET /livez`: 200 while the process answers.
/// - `GET /readyz`: 200 when the last pass succeeded, else 503 with the reason in the body
///   (not ready while signed out, while the repository is unreachable, before the first pass).
/// - `GET /status`: ``ServiceStatus`` as JSON.
/// - With `--notify-url`, `POST /graph/notify` and `POST /graph/lifecycle`: Graph's validation
///   (`?validationToken=…`, answered 200 `text/plain` with the token) and its notifications
///   (202 once the collections are marked due; 400 for a body that is not Graph's shape).
public enum StatusServer {
    /// The Hummingbird application (a service for the group); `onListening` gets the bound port.
    public static func application(host: String, port: Int, metrics: ServiceMetrics, state: ServiceState, logger: Logger,
                                   notifications: ChangeNotifications? = nil,
                                   onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> some Service {
        let router = Router()
        if let notifications {
            for (path, handle) in [("/graph/notify", notifications.notified), ("/graph/lifecycle", notifications.lifecycle)] as [(String, @Sendable ([UInt8]) async throws -> Void)] {
                router.post(RouterPath(path)) { request, _ -> Response in
                    if let token = request.uri.queryParameters["validationToken"] {
                        return text(.ok, String(token))
                    }
                    var request = request
                    guard let body = try? await request.collectBody(upTo: 1 << 20) else { return text(.contentTooLarge, "at most 1 MiB\n") }
                    do { try await handle(Array(body.readableBytesView)) } catch { return text(.badRequest, "not a notification\n") }
                    return Response(status: .accepted)
                }
            }
        }
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
        }
        router.get("/livez") { _, _ -> Response in text(.ok, "ok\n") }
        router.get("/readyz") { _, _ -> Response in
            let (ready, reason) = state.ready
            return text(ready ? .ok : .serviceUnavailable, reason + "\n")
        }
        router.get("/status") { _, _ -> Response in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let body = (try? encoder.encode(state.current)) ?? Data("{}".utf8)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: nil),
                           onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
