import Crypto
import Foundation
import VaultlineCore

/// AWS credentials: an access key, its secret, and the session token of temporary ones.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// A request to sign: the method, the path as the server will see it (not percent-encoded),
/// the query's parameters decoded, and the headers to sign (`Host` among them).
public struct SigningRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]

    public init(method: String, path: String, query: [(name: String, value: String)] = [], headers: [(name: String, value: String)]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }
}

/// AWS Signature Version 4 (docs.aws.amazon.com, "Create a signed AWS API request"), in the
/// two forms S3 takes: an `Authorization` header, and a presigned URL's query parameters.
/// Checked case by case against AWS's own test suite (Tests/…/SigV4SuiteTests.swift).
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String
    /// Removes `.` and `..` segments and repeated slashes from the path before it is signed.
    /// AWS services other than S3 do; S3 signs the path as sent (`false`).
    public var normalizesPath: Bool
    /// Adds the session token after signing instead of signing it (a quirk of some services).
    public var omitsSessionTokenFromSignature = false

    public static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash of a request whose body is not signed (presigned URLs of S3).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The SHA-256 of no bytes: the payload hash of a request without a body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public init(credentials: AWSCredentials, region: String, service: String = "s3", normalizesPath: Bool = false) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.normalizesPath = normalizesPath
    }

    /// The headers to add to `request` so that it is signed: `X-Amz-Date`, the session token,
    /// `X-Amz-Content-SHA256` when `addsContentHash`, and `Authorization`. `payloadHash` is the
    /// hex SHA-256 of the body (``SigV4Signer/hash(_:)``) or ``unsignedPayload``.
    public func signingHeaders(
        for request: SigningRequest, date: Date, payloadHash: String, addsContentHash: Bool
    ) -> [(name: String, value: String)] {
        let stamp = Self.timestamp(date)
        var added: [(name: String, value: String)] = []
        if let token = credentials.sessionToken, !omitsSessionTokenFromSignature { added.append(("X-Amz-Security-Token", token)) }
        if addsContentHash { added.append(("x-amz-content-sha256", payloadHash)) }
        added.append(("X-Amz-Date", stamp))
        var signed = request
        signed.headers += added
        let canonical = canonicalRequest(signed, payloadHash: payloadHash)
        let signature = self.signature(canonical.text, stamp: stamp)
        var out = added
        if let token = credentials.sessionToken, omitsSessionTokenFromSignature { out.insert(("X-Amz-Security-Token", token), at: 0) }
        out.append(("Authorization",
                    "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(stamp)), SignedHeaders=\(canonical.signedHeaders), Signature=\(signature)"))
        return out
    }

    /// The query parameters that make `request` a presigned URL valid for `expires` seconds
    /// (S3 allows up to 7 days), `X-Amz-Signature` last.
    public func presignedQuery(
        for request: SigningRequest, date: Date, expires: Int, payloadHash: String = unsignedPayload
    ) -> [(name: String, value: String)] {
        let stamp = Self.timestamp(date)
        let signedHeaders = Self.canonicalHeaders(request.headers).names
        var added: [(name: String, value: String)] = [
            ("X-Amz-Algorithm", Self.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope(stamp))"),
            ("X-Amz-Date", stamp),
            ("X-Amz-SignedHeaders", signedHeaders),
            ("X-Amz-Expires", String(expires)),
        ]
        if let token = credentials.sessionToken, !omitsSessionTokenFromSignature { added.append(("X-Amz-Security-Token", token)) }
        var signed = request
        signed.query += added
        let canonical = canonicalRequest(signed, payloadHash: payloadHash)
        if let token = credentials.sessionToken, omitsSessionTokenFromSignature { added.append(("X-Amz-Security-Token", token)) }
        added.append(("X-Amz-Signature", signature(canonical.text, stamp: stamp)))
        return added
    }

    /// The canonical request of the specification and the `SignedHeaders` list it names.
    public func canonicalRequest(_ request: SigningRequest, payloadHash: String) -> (text: String, signedHeaders: String) {
        let headers = Self.canonicalHeaders(request.headers)
        let path = normalizesPath ? Self.removingDotSegments(request.path) : request.path
        var pairs: [(name: String, value: String)] = request.query.map { item in
            (Self.encode(item.name, keepSlash: false), Self.encode(item.value, keepSlash: false))
        }
        pairs.sort { left, right in left.name == right.name ? left.value < right.value : left.name < right.name }
        let query = pairs.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        let text = [request.method, Self.encode(path.isEmpty ? "/" : path, keepSlash: true), query,
                    headers.block, headers.names, payloadHash].joined(separator: "\n")
        return (text, headers.names)
    }

    /// The string to sign for a canonical request.
    public func stringToSign(_ canonicalRequest: String, stamp: String) -> String {
        [Self.algorithm, stamp, scope(stamp), Self.hash(Array(canonicalRequest.utf8))].joined(separator: "\n")
    }

    /// The hex signature of a canonical request.
    public func signature(_ canonicalRequest: String, stamp: String) -> String {
        let day = String(stamp.prefix(8))
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<Crypto.SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let mac = HMAC<Crypto.SHA256>.authenticationCode(for: Array(stringToSign(canonicalRequest, stamp: stamp).utf8), using: key)
        return Self.hex(mac)
    }

    func scope(_ stamp: String) -> String { "\(stamp.prefix(8))/\(region)/\(service)/aws4_request" }

    /// Hex SHA-256: the payload hash of a body.
    public static func hash(_ bytes: some DataProtocol) -> String { hex(Crypto.SHA256.hash(data: bytes)) }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes { out += [digits[Int(byte >> 4)], digits[Int(byte & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// `YYYYMMDDTHHMMSSZ` in UTC.
    public static func timestamp(_ date: Date) -> String { UTCTimestamp.basic(date) }

    /// Lowercased names, values trimmed and inner runs of white space made one space, repeated
    /// names joined with commas in the order given, sorted by name.
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (block: String, names: String) {
        var byName: [String: [String]] = [:]
        for (name, value) in headers {
            let collapsed = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
            byName[name.lowercased(), default: []].append(collapsed)
        }
        let names = byName.keys.sorted()
        let block = names.map { "\($0):\(byName[$0, default: []].joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    /// RFC 3986 URI encoding as SigV4 wants it: every byte but `A–Z a–z 0–9 - . _ ~` as `%XX`
    /// (upper case), and `/` kept in paths.
    static func encode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out += "/"
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// The path without `.` and `..` segments or empty ones, keeping a trailing slash.
    static func removingDotSegments(_ path: String) -> String {
        var segments: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        let trailing = path.hasSuffix("/") && !segments.isEmpty
        return "/" + segments.joined(separator: "/") + (trailing ? "/" : "")
    }
}
