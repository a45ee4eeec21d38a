import Foundation

/// A parsed MIME entity (RFC 2045–2046): a message or one of its parts. Built to read what
/// Exchange exports and what real mail holds, broken mail included: LF or CRLF lines, 8-bit
/// headers, a missing closing boundary, base64 with stray characters, unknown charsets. Nothing
/// in the input can make it trap, recurse without bound or allocate beyond the input's size
/// (``Limits``); what it cannot make sense of stays as bytes.
public struct MIMEEntity: Sendable {
    public struct Limits: Sendable {
        /// Nesting of multiparts and attached messages.
        public var depth = 24
        /// Parts in all.
        public var parts = 2000
        public init() {}
    }

    /// Header fields in order: name as written, value unfolded (CRLF + WSP removed), decoded as
    /// UTF-8 where valid, else as Latin-1 (8-bit headers of broken mail).
    public var headers: [(name: String, value: String)]
    /// `type/subtype`, lower-cased (`text/plain` when absent, as RFC 2045 says).
    public var contentType: String
    /// Content-Type parameters, names lower-cased, RFC 2231 continuations and charsets decoded.
    public var parameters: [String: String]
    /// The body after Content-Transfer-Encoding (a leaf's content; a multipart's raw body).
    public var body: [UInt8]
    /// A multipart's parts.
    public var parts: [MIMEEntity]
    /// A `message/rfc822` part's message.
    public var message: [MIMEEntity]

    /// The first header field of a name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public func headers(_ name: String) -> [String] {
        headers.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    /// Content-Disposition's type (`attachment`, `inline`) and parameters.
    public var disposition: (type: String, parameters: [String: String])? {
        header("Content-Disposition").map { MIMEHeader.parameterized($0) }
    }

    /// The file name: Content-Disposition's `filename`, else Content-Type's `name`, decoded.
    public var filename: String? {
        let raw = disposition?.parameters["filename"] ?? parameters["name"]
        return raw.map { MIMEHeader.decodeWords($0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Content-ID without its angle brackets.
    public var contentID: String? {
        header("Content-ID").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t<>")) }
    }

    /// A text part's content as a string, by its charset.
    public var text: String { MIMECharset.decode(body, charset: parameters["charset"]) }

    /// Parses a whole message.
    public static func parse(_ bytes: [UInt8], limits: Limits = Limits()) -> MIMEEntity {
        var budget = limits.parts
        return parse(bytes[...], depth: 0, limits: limits, budget: &budget, defaultType: "text/plain")
    }

    static func parse(_ bytes: ArraySlice<UInt8>, depth: Int, limits: Limits, budget: inout Int, defaultType: String) -> MIMEEntity {
        budget -= 1
        let (headerBytes, bodyBytes) = splitHead(bytes)
        let headers = MIMEHeader.fields(headerBytes)
        var entity = MIMEEntity(headers: headers, contentType: defaultType, parameters: [:], body: [], parts: [], message: [])
        if let value = entity.header("Content-Type") {
            let (type, parameters) = MIMEHeader.parameterized(value)
            if type.contains("/") { entity.contentType = type }
            entity.parameters = parameters
        }
        let encoding = entity.header("Content-Transfer-Encoding")?.trimmingCharacters(in: .whitespaces).lowercased() ?? "7bit"
        let nested = depth < limits.depth && budget > 0
        if entity.contentType.hasPrefix("multipart/"), nested, let boundary = entity.parameters["boundary"], !boundary.isEmpty {
            entity.body = Array(bodyBytes)
            let childType = entity.contentType == "multipart/digest" ? "message/rfc822" : "text/plain"
            for piece in splitMultipart(bodyBytes, boundary: Array(boundary.utf8)) where budget > 0 {
                entity.parts.append(parse(piece, depth: depth + 1, limits: limits, budget: &budget, defaultType: childType))
            }
            return entity
        }
        entity.body = MIMETransfer.decode(bodyBytes, encoding: encoding)
        if entity.contentType == "message/rfc822", nested {
            entity.message = [parse(entity.body[...], depth: depth + 1, limits: limits, budget: &budget, defaultType: "text/plain")]
        }
        return entity
    }

    /// Header block and body, split at the first empty line (CRLF CRLF or LF LF). A message
    /// with no empty line is all header; one starting with an empty line has none.
    static func splitHead(_ bytes: ArraySlice<UInt8>) -> (ArraySlice<UInt8>, ArraySlice<UInt8>) {
        var i = bytes.startIndex
        var lineStart = i
        while i < bytes.endIndex {
            if bytes[i] == 10 {
                let line = bytes[lineStart..<i]
                if line.isEmpty || (line.count == 1 && line.first == 13) {
                    return (bytes[bytes.startIndex..<lineStart], bytes[(i + 1)...])
                }
                lineStart = i + 1
            }
            i += 1
        }
        return (bytes, bytes[bytes.endIndex...])
    }

    /// The parts of a multipart body: between `--boundary` lines, until `--boundary--` (or
    /// the end, when the closing line is missing). The CRLF before a delimiter belongs to it.
    static func splitMultipart(_ body: ArraySlice<UInt8>, boundary: [UInt8]) -> [ArraySlice<UInt8>] {
        var pieces: [ArraySlice<UInt8>] = []
        var partStart: Int?
        var i = body.startIndex
        while i < body.endIndex {
            // At a line start: is it a delimiter?
            var lineEnd = i
            while lineEnd < body.endIndex, body[lineEnd] != 10 { lineEnd += 1 }
            let line = body[i..<lineEnd]
            if line.count >= boundary.count + 2, line[i] == 45, line[i + 1] == 45,
               line[(i + 2)..<(i + 2 + boundary.count)].elementsEqual(boundary) {
                let rest = line[(i + 2 + boundary.count)...]
                let closing = rest.count >= 2 && rest[rest.startIndex] == 45 && rest[rest.startIndex + 1] == 45
                let trailer = closing ? rest.dropFirst(2) : rest
                if trailer.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) {
                    if let start = partStart {
                        var end = i
                        if end > start, body[end - 1] == 10 { end -= 1 }
                        if end > start, body[end - 1] == 13 { end -= 1 }
                        pieces.append(body[start..<max(start, end)])
                    }
                    if closing { return pieces }
                    partStart = lineEnd < body.endIndex ? lineEnd + 1 : body.endIndex
                }
            }
            i = lineEnd < body.endIndex ? lineEnd + 1 : body.endIndex
        }
        if let start = partStart, start < body.endIndex { pieces.append(body[start...]) }
        return pieces
    }

    /// Every leaf part, depth first (multiparts opened; attached messages are leaves).
    public var leaves: [MIMEEntity] {
        parts.isEmpty ? [self] : parts.flatMap(\.leaves)
    }
}
