import Foundation
import NIOCore
import VaultlineCore

/// Object Lock and object versions: what makes a bucket a site B that its writer cannot undo.
///
/// On a bucket with Object Lock (which implies versioning) a DELETE only adds a delete marker and
/// a PUT without `If-None-Match` only adds a version; neither removes what was locked. A reader
/// there therefore never trusts "the latest version": it pins, per name, the version whose
/// content is what the name says (docs/FORMAT.md, "On object storage").
extension S3Backend {
    /// One stored version of a key, from ListObjectVersions.
    struct ObjectVersion: Sendable, Equatable {
        var id: String
        var size: Int64
        /// ISO 8601, as S3 sends it: sorts as text.
        var modified: String
    }

    /// Every version (delete markers left out) of every key under the location, oldest first
    /// (the reverse of the order S3 lists them in).
    func listVersions() throws -> [String: [ObjectVersion]] {
        let prefix = client.location.prefix.isEmpty ? "" : client.location.prefix + "/"
        var out: [String: [ObjectVersion]] = [:]
        var keyMarker: String?
        var versionMarker: String?
        var pages = 0
        repeat {
            var query: [(name: String, value: String)] = [("versions", ""), ("prefix", prefix)]
            if let keyMarker { query.append(("key-marker", keyMarker)) }
            if let versionMarker { query.append(("version-id-marker", versionMarker)) }
            let elements: S3XML.Elements
            do {
                let response = try client.send(S3Request(.GET, key: "", query: query))
                elements = try S3XML.parse(Array(response.body.readableBytesView), object: "versions \(prefix)")
            } catch let failure as S3Error {
                throw VaultlineError(failure.engineCode, "listing versions failed on \(client.location)", object: prefix, cause: failure)
            }
            guard elements.root == "ListVersionsResult" else {
                throw VaultlineError(.corrupt, "the version listing's answer is <\(UntrustedText.escaped(elements.root, maxLength: 40))>", object: prefix)
            }
            for record in elements.records["Version"] ?? [] {
                guard let key = record["Key"], key.hasPrefix(prefix), let id = record["VersionId"], !id.isEmpty,
                      let sizeText = record["Size"], let size = Int64(sizeText), size >= 0 else {
                    throw VaultlineError(.corrupt, "a listed version without its key, id or size", object: prefix)
                }
                out[key, default: []].append(ObjectVersion(id: id, size: size, modified: record["LastModified"] ?? ""))
            }
            let truncated = elements.values["ListVersionsResult/IsTruncated"]?.first == "true"
            keyMarker = elements.values["ListVersionsResult/NextKeyMarker"]?.first
            versionMarker = elements.values["ListVersionsResult/NextVersionIdMarker"]?.first
            if truncated && keyMarker == nil {
                throw VaultlineError(.corrupt, "a truncated version listing without a next marker", object: prefix)
            }
            if !truncated { keyMarker = nil }
            pages += 1
            guard pages < 1_000_000 else { throw VaultlineError(.corrupt, "the version listing did not end", object: prefix) }
        } while keyMarker != nil
        // S3 lists a key's versions newest first (timestamps may tie within a second).
        for key in out.keys { out[key]?.reverse() }
        return out
    }

    /// Whether the bucket has Object Lock enabled (`GET ?object-lock`); false when the server
    /// says there is no lock configuration.
    public func bucketHasObjectLock() throws -> Bool {
        do {
            let response = try client.send(S3Request(.GET, key: "", query: [("object-lock", "")]), accepting: [404, 400])
            guard response.status == 200 else { return false }
            let elements = try S3XML.parse(Array(response.body.readableBytesView), object: "object-lock")
            return elements.values["ObjectLockConfiguration/ObjectLockEnabled"]?.first == "Enabled"
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "reading the bucket's Object Lock configuration failed", object: "\(client.location)", cause: failure)
        }
    }

    /// Creates the bucket with Object Lock when it is missing; refuses an existing bucket without it.
    public func prepareLockedBucket() throws {
        let bucket = try client.send(S3Request(.HEAD, key: ""), accepting: [404])
        if bucket.status == 404 {
            _ = try client.send(S3Request(.PUT, key: "", headers: [("x-amz-bucket-object-lock-enabled", "true")]), accepting: [409])
        }
        guard try bucketHasObjectLock() else {
            throw VaultlineError(.unsupported, "the bucket \(client.location.bucket) has no Object Lock: create it with Object Lock enabled (docs/OPERATIONS.md)",
                                 object: "\(client.location)")
        }
    }

    /// The headers that lock an object written now: COMPLIANCE until `retainFor` from now.
    func lockHeaders(_ lock: ObjectLock, body: ByteBuffer?) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = [
            ("x-amz-object-lock-mode", lock.mode),
            ("x-amz-object-lock-retain-until-date", Self.iso8601(Date(timeIntervalSinceNow: lock.retainFor))),
        ]
        if let body { headers.append(("Content-MD5", Self.md5Base64(body))) }
        return headers
    }

    /// RFC 3339 to the second, as Object Lock dates are sent.
    static func iso8601(_ date: Date) -> String { UTCTimestamp.rfc3339(date, milliseconds: false) }

    static func parseISO8601(_ text: String) -> Date? { UTCTimestamp.parseRFC3339(text) }

    // MARK: Pinned versions

    /// The version of `kind/name` to read, or nil to read the key without a version (a bucket
    /// without versions, a lock file, a name written after the versions were listed).
    func pinnedVersion(_ kind: FileKind, _ name: String) throws -> ObjectVersion? {
        guard pinsVersions, kind.isContentAddressed || kind == .config else { return nil }
        let objectKey = key(kind, name)
        let candidates = try versionTable()[objectKey] ?? []
        if candidates.count <= 1 || !kind.isContentAddressed { return candidates.first }
        if let chosen = resolvedVersions.withLock({ $0[objectKey] }) { return chosen }
        // Several versions: a later one came from a writer who lost the If-None-Match rule or
        // ignored it (a compromised site A). The one whose bytes hash to the name is the file.
        for candidate in candidates {
            let body = try get(kind, name, offset: 0, length: nil, version: candidate.id)
            if Self.sha256(body).hex == name {
                resolvedVersions.withLock { $0[objectKey] = candidate }
                return candidate
            }
        }
        throw VaultlineError(.corrupt, "none of the \(candidates.count) versions of this object hashes to its name", object: kind.relativePath(name))
    }

    func versionTable() throws -> [String: [ObjectVersion]] {
        if let table = versions.withLock({ $0 }) { return table }
        let table = try listVersions()
        versions.withLock { $0 = table }
        return table
    }

    /// The names of `kind` that have at least one version (a delete marker on top hides none),
    /// with the size of the oldest.
    func listPinned(_ kind: FileKind) throws -> [String: Int64] {
        let table = try versionTable()
        let prefix = client.location.key(kind == .pack ? "packs/" : kind.rawValue + "/")
        var out: [String: Int64] = [:]
        for (objectKey, versions) in table where objectKey.hasPrefix(prefix) {
            guard let oldest = versions.first else { continue }
            let name: String?
            if kind == .pack {
                name = Self.packName(objectKey, under: prefix)
            } else {
                let rest = String(objectKey.dropFirst(prefix.count))
                name = rest.isEmpty || rest.contains("/") || (try? kind.validate(rest)) == nil ? nil : rest
            }
            if let name { out[name] = oldest.size }
        }
        return out
    }
}

/// How objects are locked when written (site B as a bucket): S3 Object Lock's mode and how long
/// from the write.
public struct ObjectLock: Sendable, Equatable {
    /// `COMPLIANCE`: no one, the bucket's owner included, can shorten it or delete the version.
    public var mode = "COMPLIANCE"
    public var retainFor: TimeInterval

    public init(retainFor: TimeInterval) { self.retainFor = retainFor }
}
