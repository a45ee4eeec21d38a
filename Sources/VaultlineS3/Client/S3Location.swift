import VaultlineCore

/// Where a repository lives on S3-compatible storage, from restic's form of `--repo`:
/// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    public enum Addressing: Sendable, Equatable {
        /// `https://host/bucket/key`: what SeaweedFS, Ceph and most non-AWS servers expect.
        case path
        /// `https://bucket.host/key`: AWS's default; needs the bucket name in DNS.
        case virtualHosted
    }

    public var secure: Bool
    public var host: String
    public var port: Int
    public var bucket: String
    /// The key prefix every repository file is under, without a trailing slash ("" for none).
    public var prefix: String
    public var addressing: Addressing

    public init(secure: Bool, host: String, port: Int, bucket: String, prefix: String = "", addressing: Addressing = .path) {
        self.secure = secure
        self.host = host
        self.port = port
        self.bucket = bucket
        self.prefix = prefix
        self.addressing = addressing
    }

    /// Whether `text` names an S3 location (it starts with `s3:`).
    public static func isS3(_ text: String) -> Bool { text.hasPrefix("s3:") }

    /// Parses `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`. Bucket names follow S3's rules (3–63
    /// characters of lower-case letters, digits, `.` and `-`, starting and ending with a letter or
    /// digit); a prefix may not hold empty, `.` or `..` segments.
    public init(parsing text: String, addressing: Addressing = .path) throws {
        func refuse(_ why: String) -> VaultlineError {
            VaultlineError(.invalidArgument, "\(why): expected s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]", object: text)
        }
        guard text.hasPrefix("s3:") else { throw refuse("not an S3 location") }
        var rest = Substring(text.dropFirst(3))
        if rest.hasPrefix("https://") {
            secure = true
            rest = rest.dropFirst(8)
        } else if rest.hasPrefix("http://") {
            secure = false
            rest = rest.dropFirst(7)
        } else {
            throw refuse("no http:// or https:// scheme")
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        guard !authority.isEmpty, !authority.contains("@") else { throw refuse("no host (and no user:password@ in it: credentials come from the environment)") }
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let port = Int(authority[authority.index(after: colon)...]), (1...65_535).contains(port) else { throw refuse("a port that is not 1–65535") }
            host = String(authority[..<colon])
            self.port = port
        } else {
            host = String(authority)
            port = secure ? 443 : 80
        }
        guard !host.isEmpty else { throw refuse("no host") }
        let path = rest[slash...].split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard let first = path.first, !first.isEmpty else { throw refuse("no bucket") }
        bucket = String(first)
        guard Self.isValidBucket(bucket) else { throw refuse("\"\(bucket)\" is not a valid bucket name") }
        var segments = Array(path.dropFirst())
        if segments.last == "" { segments.removeLast() }  // one trailing slash is allowed
        guard segments.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { throw refuse("an empty, . or .. segment in the prefix") }
        prefix = segments.joined(separator: "/")
        self.addressing = addressing
    }

    static func isValidBucket(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { return false }
        func letterOrDigit(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        guard let first = bytes.first, let last = bytes.last, letterOrDigit(first), letterOrDigit(last) else { return false }
        return bytes.allSatisfy { letterOrDigit($0) || $0 == 46 || $0 == 45 } && !name.contains("..")
    }

    /// The key of a repository file (`packs/ab/abcd…`) under the prefix.
    public func key(_ path: String) -> String { prefix.isEmpty ? path : prefix + "/" + path }

    /// The HTTP `Host` header and the request path for `key` ("" for the bucket itself),
    /// both as the addressing style wants them. The path is not percent-encoded.
    public func target(key: String) -> (host: String, path: String) {
        let defaultPort = port == (secure ? 443 : 80)
        let hostOnly = addressing == .virtualHosted ? bucket + "." + host : host
        let hostHeader = defaultPort ? hostOnly : "\(hostOnly):\(port)"
        switch addressing {
        case .path: return (hostHeader, "/" + bucket + (key.isEmpty ? "" : "/" + key))
        case .virtualHosted: return (hostHeader, "/" + key)
        }
    }

    public var description: String {
        "s3:\(secure ? "https" : "http")://\(host)\(port == (secure ? 443 : 80) ? "" : ":\(port)")/\(bucket)\(prefix.isEmpty ? "" : "/" + prefix)"
    }
}
