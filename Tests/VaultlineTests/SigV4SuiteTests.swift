import Foundation
import Testing
import VaultlineS3

/// AWS's own SigV4 test suite (../shared/testdata/sigv4/v4, from awslabs/aws-c-auth), every
/// case in both forms: the canonical request, the string to sign, the signature, and the
/// signed request's `Authorization` header or presigned query must be what AWS wrote down.
@Suite("SigV4 signer: AWS's test suite")
struct SigV4SuiteTests {
    static let suite = TestData.shared.appendingPathComponent("sigv4/v4")

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: suite.path)) ?? []).sorted()
    }

    struct Case {
        var signer: SigV4Signer
        var request: SigningRequest
        var body: [UInt8]
        var date: Date
        var signsBody: Bool
        var expires: Int
        var directory: URL

        func expected(_ name: String) throws -> String {
            try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        }
    }

    static func load(_ name: String) throws -> Case {
        let directory = suite.appendingPathComponent(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("context.json")))
        guard let context = json as? [String: Any], let credentials = context["credentials"] as? [String: Any],
              let accessKey = credentials["access_key_id"] as? String, let secret = credentials["secret_access_key"] as? String,
              let region = context["region"] as? String, let service = context["service"] as? String,
              let timestamp = context["timestamp"] as? String, let date = ISO8601DateFormatter().date(from: timestamp)
        else { throw CocoaError(.fileReadCorruptFile) }
        var signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyID: accessKey, secretAccessKey: secret, sessionToken: credentials["token"] as? String),
            region: region, service: service, normalizesPath: context["normalize"] as? Bool ?? true)
        signer.omitsSessionTokenFromSignature = context["omit_session_token"] as? Bool ?? false

        // request.txt: the request line, headers (a line starting with white space continues
        // the one before), an empty line, the body.
        let raw = Array(try Data(contentsOf: directory.appendingPathComponent("request.txt")))
        let headerEnd = Self.find([10, 10], in: raw) ?? raw.count
        let head = String(decoding: raw[..<headerEnd], as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        let body = headerEnd + 2 <= raw.count ? Array(raw[(headerEnd + 2)...]) : []
        let requestLine = head[0].split(separator: " ")
        let method = String(requestLine[0])
        let target = String(head[0].dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [(name: String, value: String)] = []
        if pathPart.count > 1 {
            for item in pathPart[1].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((String(pair[0]).removingPercentEncoding ?? String(pair[0]),
                              pair.count > 1 ? (String(pair[1]).removingPercentEncoding ?? String(pair[1])) : ""))
            }
        }
        var headers: [(name: String, value: String)] = []
        for line in head.dropFirst() where !line.isEmpty {
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += " " + line
            } else if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        return Case(signer: signer, request: SigningRequest(method: method, path: String(pathPart[0]), query: query, headers: headers),
                    body: body, date: date, signsBody: context["sign_body"] as? Bool ?? false,
                    expires: context["expiration_in_seconds"] as? Int ?? 3600, directory: directory)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    @Test func theSuiteIsThere() {
        #expect(Self.cases.count == 38, "\(Self.suite.path)")
    }

    @Test(arguments: cases)
    func headerForm(_ name: String) throws {
        let c = try Self.load(name)
        let payloadHash = SigV4Signer.hash(c.body)
        let added = c.signer.signingHeaders(for: c.request, date: c.date, payloadHash: payloadHash, addsContentHash: c.signsBody)
        // The canonical request is that of the request with the signing headers on it.
        var signed = c.request
        signed.headers += added.filter { $0.name != "Authorization" && !(c.signer.omitsSessionTokenFromSignature && $0.name == "X-Amz-Security-Token") }
        let canonical = c.signer.canonicalRequest(signed, payloadHash: payloadHash).text
        let stamp = SigV4Signer.timestamp(c.date)
        #expect(canonical == (try c.expected("header-canonical-request.txt")))
        #expect(c.signer.stringToSign(canonical, stamp: stamp) == (try c.expected("header-string-to-sign.txt")))
        let signature = try c.expected("header-signature.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(c.signer.signature(canonical, stamp: stamp) == signature)
        let authorization = try #require(added.first { $0.name == "Authorization" }).value
        let expectedLines = try c.expected("header-signed-request.txt").split(separator: "\n").map(String.init)
        #expect(expectedLines.contains("Authorization:" + authorization), "\(authorization)")
        for (header, value) in added where header != "Authorization" {
            #expect(expectedLines.contains("\(header):\(value)"), "\(header)")
        }
    }

    @Test(arguments: cases)
    func presignedForm(_ name: String) throws {
        let c = try Self.load(name)
        let payloadHash = SigV4Signer.hash(c.body)
        let query = c.signer.presignedQuery(for: c.request, date: c.date, expires: c.expires, payloadHash: payloadHash)
        var signed = c.request
        signed.query += query.filter { $0.name != "X-Amz-Signature" && !(c.signer.omitsSessionTokenFromSignature && $0.name == "X-Amz-Security-Token") }
        let canonical = c.signer.canonicalRequest(signed, payloadHash: payloadHash).text
        let stamp = SigV4Signer.timestamp(c.date)
        #expect(canonical == (try c.expected("query-canonical-request.txt")))
        #expect(c.signer.stringToSign(canonical, stamp: stamp) == (try c.expected("query-string-to-sign.txt")))
        let signature = try c.expected("query-signature.txt").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(query.last?.name == "X-Amz-Signature" && query.last?.value == signature)
        let firstLine = try #require(try c.expected("query-signed-request.txt").split(separator: "\n").first)
        #expect(firstLine.contains("X-Amz-Signature=\(signature)"))
    }
}
