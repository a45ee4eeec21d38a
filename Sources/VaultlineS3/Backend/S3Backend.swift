import Crypto
import Foundation
import NIOCore
import Synchronization
import VaultlineCore

/// A repository in an S3 bucket (docs/FORMAT.md, "On object storage"): the local layout's
/// paths as keys under the location's prefix (`config`, `keys/…`, `packs/ab/abcd…`, `index/…`,
/// `snapshots/…`, `locks/…`, `prune/…`).
///
/// Every write is a PUT with `If-None-Match: *` (the object-store form of "link, never
/// replace": a 412 means the name is there) and `x-amz-checksum-sha256` (a server that checks
/// it refuses a body that is not what was signed). A PUT is all-or-nothing, so no temporary
/// names are needed; a pending file is held in memory until its name is known.
public final class S3Backend: Backend {
    public let client: S3Client
    /// Objects larger than this go up in parts (``partSize`` each).
    public let multipartThreshold: Int
    public let partSize: Int
    /// Pending files committed at once by a backup's writer.
    public let concurrentCommits: Int
    /// Set when writing to a site-B bucket: every object is locked this way.
    public let lock: ObjectLock?
    /// Read the version of each immutable name whose bytes hash to it, not the latest (a bucket
    /// with Object Lock, where a compromised writer can only add versions and delete markers).
    public let pinsVersions: Bool
    /// The largest object a whole-file read accepts (packs are at most 1 GiB).
    public static let maximumObjectSize = (1 << 30) + (1 << 20)
    let versions = Mutex<[String: [ObjectVersion]]?>(nil)
    let resolvedVersions = Mutex<[String: ObjectVersion]>([:])
    let packWindows = PackWindows()
    /// Index files, snapshots and key slots kept on the local disk (``ContentCache``); nil: none.
    public let cache: ContentCache?
    /// Where pending files (packs being written) are spooled; nil: in memory.
    public let spoolFolder: String?
    /// Parts of multipart uploads left by a killed process that were kept, not sent again.
    public let partsResumed = Mutex(0)

    public init(client: S3Client, multipartThreshold: Int = 64 << 20, partSize: Int = 16 << 20, concurrentCommits: Int = 4,
                lock: ObjectLock? = nil, pinsVersions: Bool = false, cache: ContentCache? = nil, spoolFolder: String? = nil) {
        self.client = client
        self.multipartThreshold = multipartThreshold
        self.partSize = partSize
        self.concurrentCommits = concurrentCommits
        self.lock = lock
        self.pinsVersions = pinsVersions
        self.cache = cache
        self.spoolFolder = spoolFolder
    }

    /// A backend for `location` with credentials, region and client options from `environment`.
    /// On a bucket with Object Lock it pins versions (``pinsVersions``); with `lock` it writes
    /// locked objects; with `cache`, the local cache ``ContentCache/forLocation(_:environment:home:)`` names.
    public static func open(_ location: S3Location, environment: [String: String], home: String, lock: ObjectLock? = nil,
                            cache: Bool = true) throws -> S3Backend {
        let resolved = try AWSCredentials.resolve(environment: environment, home: home)
        let client = try S3Client(location: location, credentials: resolved.credentials, region: resolved.region,
                                  options: try S3Client.Options.from(environment: environment))
        let probe = S3Backend(client: client)
        let locked = try probe.bucketHasObjectLock()
        var partSize = 16 << 20
        if let text = environment["VAULTLINE_S3_PART_MIB"], !text.isEmpty {
            guard let mib = Int(text), (5...5120).contains(mib) else {
                throw VaultlineError(.invalidArgument, "VAULTLINE_S3_PART_MIB must be 5–5120 (S3's part sizes), not \(text.prefix(20))")
            }
            partSize = mib << 20
        }
        return S3Backend(client: client, multipartThreshold: 4 * partSize, partSize: partSize, lock: lock, pinsVersions: locked,
                         cache: cache ? ContentCache.forLocation(location, environment: environment, home: home) : nil,
                         spoolFolder: SpoolFile.folder(environment: environment))
    }

    public var preferredConcurrentCommits: Int { concurrentCommits }

    func key(_ kind: FileKind, _ name: String) -> String { client.location.key(kind.relativePath(name)) }

    /// Wraps an S3 failure in the engine's error, with the same codes a disk gives.
    func engineError(_ error: any Error, _ kind: FileKind, _ name: String, _ what: String) -> any Error {
        guard let failure = error as? S3Error else { return error }
        return VaultlineError(failure.engineCode, "\(what) failed on \(client.location)", object: kind.relativePath(name), cause: failure)
    }

    // MARK: Listing

    public func list(_ kind: FileKind) throws -> [String] {
        Array(try sizes(kind).keys)
    }

    public func sizes(_ kind: FileKind) throws -> [String: Int64] {
        let listed = try listedSizes(kind)
        cache?.retain(kind, Set(listed.keys))
        return listed
    }

    func listedSizes(_ kind: FileKind) throws -> [String: Int64] {
        if pinsVersions, kind.isContentAddressed { return try listPinned(kind) }
        switch kind {
        case .config:
            return try stat(.config, "config").map { ["config": $0] } ?? [:]
        case .pack:
            // One listing of packs/ when it fits in a page (a small repository); else the 256
            // shards at once, which S3 also partitions its request rate by.
            let prefix = client.location.key("packs/")
            let first = try listPage(prefix: prefix, token: nil)
            var objects = first.objects
            if first.isTruncated {
                let shards = (0..<256).map { encodeHex([UInt8($0)]) }
                let results = ConcurrentMap.run(shards, width: client.options.maximumRequests) { shard in
                    try self.listAll(prefix: self.client.location.key("packs/\(shard)/"))
                }
                objects = try results.flatMap { try $0.get() }
            }
            return Self.named(objects) { Self.packName($0, under: prefix) }
        default:
            let prefix = client.location.key(kind.rawValue + "/")
            return Self.named(try listAll(prefix: prefix)) { key in
                let name = String(key.dropFirst(prefix.count))
                return name.isEmpty || name.contains("/") || name.hasPrefix(".") ? nil : name
            }
        }
    }

    static func named(_ objects: [S3ListPage.Object], _ name: (String) -> String?) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for object in objects {
            if let name = name(object.key) { out[name] = object.size }
        }
        return out
    }

    /// `packs/ab/abcd…` → `abcd…`, or nil for a key that is not a pack's (another shard's name,
    /// something an operator put there).
    static func packName(_ key: String, under prefix: String) -> String? {
        let rest = key.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard rest.count == 2, rest[0].utf8.count == 2, rest[1].hasPrefix(rest[0]), (try? FileKind.pack.validate(String(rest[1]))) != nil else { return nil }
        return String(rest[1])
    }

    func listAll(prefix: String) throws -> [S3ListPage.Object] {
        var out: [S3ListPage.Object] = []
        var token: String?
        var pages = 0
        repeat {
            let page = try listPage(prefix: prefix, token: token)
            out += page.objects
            token = page.isTruncated ? page.nextContinuationToken : nil
            pages += 1
            guard pages < 1_000_000 else {
                throw VaultlineError(.corrupt, "the listing did not end after a million pages", object: prefix)
            }
        } while token != nil
        return out
    }

    func listPage(prefix: String, token: String?) throws -> S3ListPage {
        var query: [(name: String, value: String)] = [("list-type", "2"), ("prefix", prefix)]
        if let token { query.append(("continuation-token", token)) }
        let request = S3Request(.GET, key: "", query: query)
        do {
            let response = try client.send(request)
            let page = try S3XML.listPage(Array(response.body.readableBytesView), object: "list \(prefix)")
            guard page.objects.allSatisfy({ $0.key.hasPrefix(prefix) }) else {
                throw VaultlineError(.corrupt, "the listing names a key outside the prefix asked for", object: "list \(prefix)")
            }
            return page
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "listing failed on \(client.location)", object: prefix, cause: failure)
        }
    }

    // MARK: Reading

    public func stat(_ kind: FileKind, _ name: String) throws -> Int64? {
        try head(kind, name)?.size
    }

    public func modified(_ kind: FileKind, _ name: String) throws -> Date? {
        try head(kind, name)?.modified
    }

    func head(_ kind: FileKind, _ name: String) throws -> (size: Int64, modified: Date?)? {
        try kind.validate(name)
        if let pinned = try pinnedVersion(kind, name) { return (pinned.size, Self.parseISO8601(pinned.modified)) }
        do {
            let response = try client.send(S3Request(.HEAD, key: key(kind, name)), accepting: [404])
            if response.status == 404 { return nil }
            guard let text = response.headers.first(name: "content-length"), let size = Int64(text), size >= 0 else {
                throw S3Error(.malformed, "HEAD without a Content-Length", object: key(kind, name))
            }
            let modified = response.headers.first(name: "last-modified").flatMap(Self.httpDate)
            return (size, modified)
        } catch {
            throw engineError(error, kind, name, "HEAD")
        }
    }

    static func httpDate(_ text: String) -> Date? { UTCTimestamp.parseHTTPDate(text) }

    /// GETs `length` bytes at `offset` (the rest of the object when nil) into a buffer.
    func get(_ kind: FileKind, _ name: String, offset: Int64, length: Int?, version explicit: String? = nil) throws -> ByteBuffer {
        try kind.validate(name)
        let whole = offset == 0 && length == nil && explicit == nil
        if whole, let cached = cache?.read(kind, name) { return ByteBuffer(bytes: cached) }
        let version = try explicit ?? pinnedVersion(kind, name)?.id
        guard offset >= 0, (length ?? 0) >= 0 else {
            throw VaultlineError(.invalidArgument, "a negative offset or length", object: kind.relativePath(name))
        }
        if length == 0 { return ByteBuffer() }
        var headers: [(name: String, value: String)] = []
        if let length {
            let (last, overflow) = offset.addingReportingOverflow(Int64(length) - 1)
            guard !overflow else { throw VaultlineError(.invalidArgument, "a range past 2^63", object: kind.relativePath(name)) }
            headers.append(("Range", "bytes=\(offset)-\(last)"))
        } else if offset > 0 {
            headers.append(("Range", "bytes=\(offset)-"))
        }
        let limit = length ?? Self.maximumObjectSize
        let query: [(name: String, value: String)] = version.map { [("versionId", $0)] } ?? []
        do {
            let response = try client.send(
                S3Request(.GET, key: key(kind, name), query: query, headers: headers, maximumResponseBody: limit), accepting: [416])
            if response.status == 416 { return ByteBuffer() }  // the object is shorter than offset
            var body = response.body
            if response.status == 200, offset > 0 {
                // The server sent the whole object and ignored the range: take the part asked for.
                guard let start = Int(exactly: offset), start <= body.readableBytes else { return ByteBuffer() }
                body.moveReaderIndex(forwardBy: start)
            }
            if let length, body.readableBytes > length {
                // More than the range asked for: a 206 never does that; a 200 to a range from 0 is the whole object.
                guard response.status == 200 else {
                    throw S3Error(.malformed, "a \(length)-byte range answered with \(body.readableBytes) bytes", object: key(kind, name))
                }
                body = body.getSlice(at: body.readerIndex, length: length) ?? body
            }
            if pinsVersions, explicit == nil, kind.isContentAddressed, offset == 0, length == nil, Self.sha256(body).hex != name {
                throw VaultlineError(.corrupt, "the object's bytes do not hash to its name", object: kind.relativePath(name))
            }
            if whole, let cache, cache.holds(kind) { body.withUnsafeReadableBytes { cache.store(kind, name, $0) } }
            return body
        } catch {
            throw engineError(error, kind, name, "GET")
        }
    }

    public func read(_ kind: FileKind, _ name: String, offset: Int64, length: Int?) throws -> [UInt8] {
        // A tree blob read alone goes through the pack windows as a data blob does.
        if kind == .pack, let length, length > 0, length < packWindows.size / 4 {
            var bytes = [UInt8](repeating: 0, count: length)
            try bytes.withUnsafeMutableBytes { try read(kind, name, offset: offset, into: $0) }
            return bytes
        }
        return Array(try get(kind, name, offset: offset, length: length).readableBytesView)
    }

    public func read(_ kind: FileKind, _ name: String, into buffer: inout [UInt8]) throws -> Int {
        let body = try get(kind, name, offset: 0, length: nil)
        let count = body.readableBytes
        if buffer.count < count { buffer = [UInt8](repeating: 0, count: count) }
        buffer.withUnsafeMutableBytes { target in
            body.withUnsafeReadableBytes { target.copyMemory(from: $0) }
        }
        return count
    }

    // MARK: Writing

    public func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
        try kind.validate(name)
        return try put(kind, name, ByteBuffer(bytes: bytes))
    }

    /// PUTs a new object unless the name is taken; false when it is (checked by size for a
    /// content-addressed name: the same name with another size is damage, not a duplicate).
    func put(_ kind: FileKind, _ name: String, _ body: ByteBuffer) throws -> Bool {
        let hash = Self.sha256(body)
        let hex = hash.hex
        let digest = Data(hash.bytes)
        if kind.isContentAddressed, hex != name {
            throw VaultlineError(.corrupt, "the bytes to write do not hash to their name", object: kind.relativePath(name))
        }
        if body.readableBytes > multipartThreshold {
            return try putInParts(kind, name, body, digest: digest)
        }
        var headers: [(name: String, value: String)] = [("If-None-Match", "*"), ("x-amz-checksum-sha256", digest.base64EncodedString())]
        if let lock { headers += lockHeaders(lock, body: body) }
        let request = S3Request(.PUT, key: key(kind, name), headers: headers, body: body, payloadHash: hex)
        do {
            let response = try client.send(request, accepting: [412])
            if response.status == 412 { return try acceptExisting(kind, name, size: body.readableBytes) }
            if let cache, cache.holds(kind) { body.withUnsafeReadableBytes { cache.store(kind, name, $0) } }
            return true
        } catch {
            throw engineError(error, kind, name, "PUT")
        }
    }

    /// ``put(_:_:_:)`` of a spooled file whose SHA-256 is `digest` (its name, checked by the caller).
    func putSpooled(_ kind: FileKind, _ name: String, _ spool: SpoolFile, length: Int, digest: Bytes32) throws -> Bool {
        var headers: [(name: String, value: String)] = [("If-None-Match", "*"), ("x-amz-checksum-sha256", Data(digest.bytes).base64EncodedString())]
        if let lock { headers += lockHeaders(lock, body: try spool.read(offset: 0, length: length)) }
        var request = S3Request(.PUT, key: key(kind, name), headers: headers, payloadHash: digest.hex)
        request.spooled = (spool, 0, length)
        do {
            let response = try client.send(request, accepting: [412])
            if response.status == 412 { return try acceptExisting(kind, name, size: length) }
            return true
        } catch {
            throw engineError(error, kind, name, "PUT")
        }
    }

    /// After a 412: the name is there. A content-addressed object of another size is damage.
    func acceptExisting(_ kind: FileKind, _ name: String, size: Int) throws -> Bool {
        if kind.isContentAddressed, let existing = try stat(kind, name), existing != Int64(size) {
            throw VaultlineError(.corrupt, "an object of this name exists with \(existing) bytes, not \(size): it is damaged",
                                 object: kind.relativePath(name))
        }
        return false
    }

    static func sha256(_ buffer: ByteBuffer) -> Bytes32 {
        buffer.withUnsafeReadableBytes { VaultlineCore.SHA256.hash($0) }
    }

    /// `Content-MD5`, which S3 wants on every PUT to an Object-Lock bucket.
    static func md5Base64(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { Data(Insecure.MD5.hash(data: $0)).base64EncodedString() }
    }

    public func delete(_ kind: FileKind, _ name: String) throws {
        try kind.validate(name)
        if kind == .pack { packWindows.forget(name) }
        cache?.remove(kind, name)
        do {
            _ = try client.send(S3Request(.DELETE, key: key(kind, name)), accepting: [404])
        } catch {
            throw engineError(error, kind, name, "DELETE")
        }
    }

    public func beginWrite(_ kind: FileKind) throws -> any BackendPendingFile {
        try S3PendingFile(backend: self, kind: kind)
    }
}
