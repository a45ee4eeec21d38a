import Crypto
import Foundation
import NIOCore
import Synchronization
import VaultlineCore

/// A file whose name is known only once it is complete (a pack): held in memory, then PUT
/// under its name at ``commit(name:)``, which is durable when the server's 200 arrives.
final class S3PendingFile: BackendPendingFile {
    let backend: S3Backend
    let kind: FileKind
    private let bytes = Mutex(ByteBuffer())

    init(backend: S3Backend, kind: FileKind) {
        self.backend = backend
        self.kind = kind
    }

    func append(_ chunk: UnsafeRawBufferPointer) throws {
        bytes.withLock { buffer in
            if buffer.capacity == 0 { buffer.reserveCapacity(backend.partSize) }
            buffer.writeBytes(chunk)
        }
    }

    func commit(name: String) throws -> Bool {
        try kind.validate(name)
        let body = bytes.withLock { buffer in
            defer { buffer = ByteBuffer() }
            return buffer
        }
        return try backend.put(kind, name, body)
    }

    func abandon() {
        bytes.withLock { $0 = ByteBuffer() }
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
