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
    func putInParts(_ kind: FileKind, _ name: String, _ body: ByteBuffer, digest: Data) throws -> Bool {
        let objectKey = key(kind, name)
        if try stat(kind, name) != nil { return try acceptExisting(kind, name, size: body.readableBytes) }
        let uploadID: String
        do {
            let created = try client.send(S3Request(.POST, key: objectKey, query: [("uploads", "")],
                                                    headers: [("x-amz-checksum-algorithm", "SHA256")] + (lock.map { lockHeaders($0, body: nil) } ?? [])))
            let elements = try S3XML.parse(Array(created.body.readableBytesView), object: objectKey)
            guard elements.root == "InitiateMultipartUploadResult", let id = elements.values["InitiateMultipartUploadResult/UploadId"]?.first, !id.isEmpty else {
                throw S3Error(.malformed, "CreateMultipartUpload answered without an UploadId", object: objectKey)
            }
            uploadID = id
        } catch {
            throw engineError(error, kind, name, "CreateMultipartUpload")
        }
        do {
            var parts: [(number: Int, etag: String, checksum: String)] = []
            var offset = body.readerIndex
            var number = 1
            while offset < body.writerIndex {
                let length = min(partSize, body.writerIndex - offset)
                guard let slice = body.getSlice(at: offset, length: length) else { break }
                let partHash = Self.sha256(slice)
                let checksum = Data(partHash.bytes).base64EncodedString()
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

    private func abort(_ objectKey: String, _ uploadID: String) {
        _ = try? client.send(S3Request(.DELETE, key: objectKey, query: [("uploadId", uploadID)]), accepting: [404])
    }

    static func xmlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
