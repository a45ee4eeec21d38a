import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// An answer to a write: its status, its JSON body (none for 204 or an empty body) and its
/// `Location` header (an attachment upload's last fragment names the attachment there).
public struct GraphResponse: Sendable {
    public var status: Int
    public var json: JSONValue?
    public var location: String?
}

extension GraphClient {
    /// A POST, PUT, PATCH or DELETE. `idempotent`: whether a 5xx or a broken connection may be
    /// tried again here (a fragment, a PATCH, a DELETE); a create is not, because Graph may have
    /// committed it, and the caller looks for it first. Answers other than 2xx throw
    /// ``GraphError`` with Graph's status and code.
    public func write(_ method: HTTPMethod, _ url: String, json: JSONValue? = nil, bytes: [UInt8]? = nil,
                      contentType: String? = nil, headers: [(String, String)] = [], mailbox: String? = nil,
                      authorized: Bool = true, idempotent: Bool) async throws -> GraphResponse {
        var extra = headers
        let body = json.map { $0.encoded() } ?? bytes
        if let body {
            extra.append(("Content-Type", contentType ?? (json != nil ? "application/json" : "application/octet-stream")))
            extra.append(("Content-Length", "\(body.count)"))
        }
        return try await send(url, mailbox: mailbox, method: method, authorized: authorized, headers: extra, body: body,
                              retryAmbiguous: idempotent) { response in
            var buffer = try await response.body.collect(upTo: 4 << 20)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            let status = Int(response.status.code)
            var parsed: JSONValue?
            if !bytes.isEmpty {
                do { parsed = try JSONValue.parse(bytes) } catch {
                    throw GraphError(.malformed, "the answer is not JSON: \(error)", url: url)
                }
            }
            return GraphResponse(status: status, json: parsed, location: response.headers.first(name: "Location"))
        }
    }
}
