import Crypto
import Foundation
import NIOCore
import Synchronization
import VaultlineCore

/// A file whose name is known only once it is complete (a pack): spooled to an unlinked file
/// on the local disk (``SpoolFile``; in memory when the backend has no spool folder), hashed as
/// it is appended, then PUT under its name at ``commit(name:)``, which is durable when the
/// server's 200 arrives.
final class S3PendingFile: BackendPendingFile {
    let backend: S3Backend
    let kind: FileKind
    private let state: Mutex<(spool: SpoolFile?, memory: ByteBuffer, length: Int, hasher: VaultlineCore.SHA256.Hasher?)>

    init(backend: S3Backend, kind: FileKind) throws {
        self.backend = backend
        self.kind = kind
        // A folder that takes no spool file (missing, read-only) leaves the bytes in memory.
        let spool = backend.spoolFolder.flatMap { try? SpoolFile(folder: $0) }
        state = Mutex((spool, ByteBuffer(), 0, try VaultlineCore.SHA256.Hasher()))
    }

    func append(_ chunk: UnsafeRawBufferPointer) throws {
        try state.withLock { state in
            if let spool = state.spool {
                try spool.append(chunk, at: state.length)
            } else {
                if state.memory.capacity == 0 { state.memory.reserveCapacity(backend.partSize) }
                state.memory.writeBytes(chunk)
            }
            state.hasher?.update(chunk)
            state.length += chunk.count
        }
    }

    func commit(name: String) throws -> Bool {
        try kind.validate(name)
        let (spool, memory, length, digest) = state.withLock { state in
            defer { state = (nil, ByteBuffer(), 0, nil) }
            return (state.spool, state.memory, state.length, state.hasher?.finalize())
        }
        guard let digest else {
            throw VaultlineError(.invalidArgument, "this pending file was committed or abandoned already", object: kind.relativePath(name))
        }
        guard let spool else { return try backend.put(kind, name, memory) }
        if digest.hex != name {
            throw VaultlineError(.corrupt, "the bytes to write do not hash to their name", object: kind.relativePath(name))
        }
        // Large objects go up in parts from memory (one object at a time per writer thread).
        if length > backend.multipartThreshold { return try backend.put(kind, name, try spool.read(offset: 0, length: length)) }
        return try backend.putSpooled(kind, name, spool, length: length, digest: digest)
    }

    func abandon() {
        state.withLock { $0 = (nil, ByteBuffer(), 0, nil) }
    }
}

extension S3Backend {
    /// A large object in parts: CreateMultipartUpload, `partSize` parts (each with its SHA-256
    /// signed and its `x-amz-checksum-sha256`), then CompleteMultipartUpload with
    /// `If-None-Match: *`; an upload that fails is aborted so that its parts are not kept.
    /// An upload of the same name that a killed process left behind is resumed: its parts
    /// whose size and SHA-256 match are kept (``unfinishedUpload(of:)``).
    func putInParts(_ kind: FileKind, _ name: String, _ body: ByteBuffer, digest: Data) throws -> Bool {
        let objectKey = key(kind, name)
        if try stat(kind, name) != nil { return try acceptExisting(kind, name, size: body.readableBytes) }
        let uploadID: String
        var uploaded: [Int: (etag: String, size: Int, checksum: String?)] = [:]
        if let (id, parts) = try unfinishedUpload(of: objectKey) {
            uploadID = id
            uploaded = parts
        } else { do {
            let created = try client.send(S3Request(.POST, key: objectKey, query: [("uploads", "")],
                                                    headers: [("x-amz-checksum-algorithm", "SHA256")] + (lock.map { lockHeaders($0, body: nil) } ?? [])))
            let elements = try S3XML.parse(Array(created.body.readableBytesView), object: objectKey)
            guard elements.root == "InitiateMultipartUploadResult", let id = elements.values["InitiateMultipartUploadResult/UploadId"]?.first, !id.isEmpty else {
                throw S3Error(.malformed, "CreateMultipartUpload answered without an UploadId", object: objectKey)
            }
            uploadID = id
        } catch {
            throw engineError(error, kind, name, "CreateMultipartUpload")
        } }
        do {
            var parts: [(number: Int, etag: String, checksum: String)] = []
            var offset = body.readerIndex
            var number = 1
            while offset < body.writerIndex {
                let length = min(partSize, body.writerIndex - offset)
                guard let slice = body.getSlice(at: offset, length: length) else { break }
                let partHash = Self.sha256(slice)
                let checksum = Data(partHash.bytes).base64EncodedString()
                // A part is kept when its SHA-256 (or, from a server that does not keep part
                // checksums, its ETag: the MD5 of its bytes) is this part's.
                if let done = uploaded[number], done.size == length,
                   done.checksum.map({ $0 == checksum }) ?? (done.etag.trimmingCharacters(in: ["\""]) == Self.md5Hex(slice)) {
                    parts.append((number, done.etag, checksum))
                    partsResumed.withLock { $0 += 1 }
                    offset += length
                    number += 1
                    continue
                }
                let response = try client.send(S3Request(
                    .PUT, key: objectKey, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                    headers: [("x-amz-checksum-sha256", checksum)] + (lock == nil ? [] : [("Content-MD5", Self.md5Base64(slice))]), body: slice,
                    payloadHash: partHash.hex))
                guard let etag = response.headers.first(name: "etag") else {
                    throw S3Error(.malformed, "UploadPart \(number) answered without an ETag", object: objectKey)
                }
                parts.append((number, etag, checksum))
                offset += length
                number += 1
            }
            let xml = "<CompleteMultipartUpload>" + parts.map {
                "<Part><PartNumber>\($0.number)</PartNumber><ETag>\(Self.xmlEscaped($0.etag))</ETag><ChecksumSHA256>\($0.checksum)</ChecksumSHA256></Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let response = try client.send(S3Request(
                .POST, key: objectKey, query: [("uploadId", uploadID)], headers: [("If-None-Match", "*")],
                body: ByteBuffer(string: xml)), accepting: [412])
            if response.status == 412 {
                abort(objectKey, uploadID)
                return try acceptExisting(kind, name, size: body.readableBytes)
            }
            // A 200 may still carry an <Error> (S3 sends it once the body has started).
            let elements = try S3XML.parse(Array(response.body.readableBytesView), object: objectKey)
            guard elements.root == "CompleteMultipartUploadResult" else {
                throw S3Error(.server, s3Code: elements.values["Error/Code"]?.first,
                              "CompleteMultipartUpload answered <\(UntrustedText.escaped(elements.root, maxLength: 40))>", object: objectKey)
            }
            if let stored = try stat(kind, name), stored != Int64(body.readableBytes) {
                throw VaultlineError(.corrupt, "the completed upload holds \(stored) bytes, not \(body.readableBytes)", object: kind.relativePath(name))
            }
            return true
        } catch {
            abort(objectKey, uploadID)
            throw engineError(error, kind, name, "multipart upload")
        }
    }

    /// The newest unfinished multipart upload of `objectKey` and its parts by number (size,
    /// ETag, SHA-256), or nil when there is none (or its parts cannot be listed in one page).
    func unfinishedUpload(of objectKey: String) throws -> (id: String, parts: [Int: (etag: String, size: Int, checksum: String?)])? {
        do {
            let listing = try client.send(S3Request(.GET, key: "", query: [("uploads", ""), ("prefix", objectKey)]))
            let uploads = try S3XML.parse(Array(listing.body.readableBytesView), object: "uploads \(objectKey)")
            guard uploads.root == "ListMultipartUploadsResult" else { return nil }
            let mine = (uploads.records["Upload"] ?? []).filter { $0["Key"] == objectKey && !($0["UploadId"] ?? "").isEmpty }
            guard let newest = mine.max(by: { ($0["Initiated"] ?? "") < ($1["Initiated"] ?? "") }), let id = newest["UploadId"] else { return nil }
            let answer = try client.send(S3Request(.GET, key: objectKey, query: [("uploadId", id)]), accepting: [404])
            guard answer.status == 200 else { return nil }
            let listed = try S3XML.parse(Array(answer.body.readableBytesView), object: "parts \(objectKey)")
            guard listed.root == "ListPartsResult", listed.values["ListPartsResult/IsTruncated"]?.first != "true" else { return nil }
            var parts: [Int: (etag: String, size: Int, checksum: String?)] = [:]
            for part in listed.records["Part"] ?? [] {
                guard let number = part["PartNumber"].flatMap(Int.init), (1...10_000).contains(number), let etag = part["ETag"],
                      let size = part["Size"].flatMap(Int.init), size >= 0 else { continue }
                parts[number] = (etag, size, part["ChecksumSHA256"].flatMap { $0.isEmpty ? nil : $0 })
            }
            return (id, parts)
        } catch let failure as S3Error {
            throw VaultlineError(failure.engineCode, "listing unfinished uploads failed", object: objectKey, cause: failure)
        }
    }

    private func abort(_ objectKey: String, _ uploadID: String) {
        _ = try? client.send(S3Request(.DELETE, key: objectKey, query: [("uploadId", uploadID)]), accepting: [404])
    }

    static func md5Hex(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { Insecure.MD5.hash(data: $0).map { String(format: "%02x", $0) }.joined() }
    }

    static func xmlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
