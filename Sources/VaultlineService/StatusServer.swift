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
public enum StatusServer {
    /// The Hummingbird application (a service for the group); `onListening` gets the bound port.
    public static func application(host: String, port: Int, metrics: ServiceMetrics, state: ServiceState, logger: Logger,
                                   onListening: @escaping @Sendable (Int) -> Void = { _ in }) -> some Service {
        let router = Router()
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
