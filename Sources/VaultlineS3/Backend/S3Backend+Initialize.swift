import NIOCore
import VaultlineCore

extension S3Backend {
    /// Makes the location ready for `init`: creates the bucket when it is missing, refuses a
    /// prefix that holds anything, and proves that the server refuses to replace a name
    /// (``probeConditionalWrites()``): the rule every content-addressed write relies on.
    public func prepareForInitialize() throws {
        let location = client.location
        try ensureBucket()
        let prefix = location.prefix.isEmpty ? "" : location.prefix + "/"
        let first: S3ListPage
        do {
            first = try client.send(S3Request(.GET, key: "", query: [("list-type", "2"), ("prefix", prefix), ("max-keys", "1")]))
                .body.withUnsafeReadableBytes { try S3XML.listPage(Array($0), object: "list \(prefix)") }
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "listing failed", object: "\(location)", cause: failure)
        }
        if let object = first.objects.first {
            let what = object.key == location.key("config") ? "a repository already exists here" : "the location is not empty (it holds \(UntrustedText.escaped(object.key, maxLength: 80))); refusing to create a repository in it"
            throw VaultlineError(.alreadyExists, what, object: "\(location)")
        }
        try probeConditionalWrites()
    }

    /// Creates the bucket when it is missing (in the client's region).
    public func ensureBucket() throws {
        do {
            let bucket = try client.send(S3Request(.HEAD, key: ""), accepting: [404])
            if bucket.status == 404 {
                var body: ByteBuffer?
                if client.signer.region != "us-east-1" {
                    body = ByteBuffer(string: "<CreateBucketConfiguration><LocationConstraint>\(Self.xmlEscaped(client.signer.region))</LocationConstraint></CreateBucketConfiguration>")
                }
                _ = try client.send(S3Request(.PUT, key: "", body: body), accepting: [409])  // 409: created meanwhile
            }
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "the bucket \(client.location.bucket) cannot be reached or created", object: "\(client.location)", cause: failure)
        }
    }

    /// Writes a scratch lock name twice with `If-None-Match: *`: the second must be refused
    /// (412). A server that replaces it would let two writers overwrite each other's files, so
    /// it is refused with `unsupported`. The scratch object is removed either way.
    public func probeConditionalWrites() throws {
        let name = "probe-" + encodeHex(try SecureRandom.bytes(8))
        defer { try? delete(.lock, name) }
        let first = try writeIfAbsent(.lock, name, Array("first".utf8))
        let second = try writeIfAbsent(.lock, name, Array("second".utf8))
        guard first, !second, try read(.lock, name) == Array("first".utf8) else {
            throw VaultlineError(
                .unsupported,
                "the server replaced an object written with If-None-Match: * (it does not do conditional writes), so two writers could overwrite each other: refusing it",
                object: "\(client.location)",
                cause: S3Error(.unsupportedServer, "If-None-Match ignored", object: client.location.key(FileKind.lock.relativePath(name))))
        }
    }
}
