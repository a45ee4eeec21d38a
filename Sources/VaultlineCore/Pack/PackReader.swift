/// Reads pack trailers and headers, and opens sealed blobs.
public enum PackReader {
    /// Reads and authenticates a pack's header: its salt and entries (used by `repair index`
    /// and `check --read-data`; a pack is self-describing).
    public static func readHeader(backend: any Backend, pack: String, key: MasterKey) throws -> (salt: Bytes32, entries: [PackEntry]) {
        let object = "packs/\(pack)"
        guard let size = try backend.stat(.pack, pack) else {
            throw VaultlineError(.notFound, "pack is missing", object: object)
        }
        guard size >= PackFormat.minimumPackSize else {
            throw VaultlineError(.corrupt, "pack is too short (\(size) bytes) to hold a header", object: object)
        }
        let trailer = try backend.read(.pack, pack, offset: size - Int64(PackFormat.trailerSize), length: PackFormat.trailerSize)
        return try parse(trailer: trailer, size: size, object: object, key: key) { offset, length in
            try backend.read(.pack, pack, offset: offset, length: length)
        }
    }

    /// Parses a trailer and fetches the header with `read(offset, length)`.
    static func parse(
        trailer: [UInt8], size: Int64, object: String, key: MasterKey,
        read: (Int64, Int) throws -> [UInt8]
    ) throws -> (salt: Bytes32, entries: [PackEntry]) {
        guard Array(trailer[36..<40]) == PackFormat.magic else {
            throw VaultlineError(.corrupt, "pack trailer magic is wrong (truncated or not a pack)", object: object)
        }
        let saltBytes = Array(trailer[0..<32])
        let headerLength = Int(trailer.withUnsafeBytes { $0.loadLE(32) as UInt32 })
        guard headerLength <= PackFormat.maxHeaderSize,
              Int64(headerLength + PackFormat.trailerSize) <= size
        else {
            throw VaultlineError(.corrupt, "pack header length \(headerLength) is impossible for a \(size)-byte pack", object: object)
        }
        let sealed = try read(size - Int64(PackFormat.trailerSize + headerLength), headerLength)
        let cipher = try AESGCM(key: key.subkey(salt: saltBytes, info: PackFormat.subkeyInfo))
        guard let plain = sealed.withUnsafeBytes({ cipher.open($0, nonce: PackFormat.headerNonce, aad: PackFormat.headerAAD) }) else {
            throw VaultlineError(.corrupt, "pack header does not authenticate (damaged or another repository's)", object: object)
        }
        let entries = try PackFormat.decodeHeader(plain, object: object)
        let dataEnd = UInt64(size) - UInt64(PackFormat.trailerSize + headerLength)
        for e in entries where UInt64(e.offset) + UInt64(e.storedLength) > dataEnd {
            throw VaultlineError(.corrupt, "pack header points past the blob area", object: object)
        }
        return (Bytes32(bytes: saltBytes)!, entries)
    }
}

/// Opens sealed blobs of many packs, keeping the subkey cipher of the most recent packs.
/// Not thread-safe: one per thread.
public final class BlobOpener {
    private let key: MasterKey
    private var ciphers: [Bytes32: AESGCM] = [:]
    private let decompressor = Decompressor()
    private var plainScratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var rawScratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var sealedScratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(key: MasterKey) { self.key = key }

    deinit {
        plainScratch.deallocate()
        rawScratch.deallocate()
        sealedScratch.deallocate()
    }

    /// Memory for one sealed blob of `count` bytes, reused by the next call (``withOpened``
    /// reads a blob into it).
    func sealedBuffer(count: Int) -> UnsafeMutableRawBufferPointer {
        Self.grow(&sealedScratch, to: count)
        return UnsafeMutableRawBufferPointer(rebasing: sealedScratch[0..<count])
    }

    /// Authenticates, decrypts and decompresses one sealed blob into memory this opener reuses,
    /// and hands its plaintext to `body` (valid only there): restore writes every blob this way,
    /// with no allocation, zero-fill or fresh page per blob. Checks what ``open`` checks.
    public func withOpened<R>(
        sealed: UnsafeRawBufferPointer, id: Bytes32, salt: Bytes32, offset: UInt32,
        codec: Codec, rawLength: Int, object: @autoclosure () -> String,
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        guard sealed.count >= AESGCM.tagSize else {
            throw VaultlineError(.corrupt, "sealed blob is shorter than its tag", object: object())
        }
        let plainLength = sealed.count - AESGCM.tagSize
        Self.grow(&plainScratch, to: plainLength)
        let plain = UnsafeMutableRawBufferPointer(rebasing: plainScratch[0..<plainLength])
        try decrypt(sealed: sealed, id: id, salt: salt, offset: offset, into: plain, object: object())
        if codec == .none {
            guard plainLength == rawLength else {
                throw VaultlineError(.corrupt, "blob \(id.hex) has length \(plainLength), index says \(rawLength)", object: object())
            }
            return try body(UnsafeRawBufferPointer(plain))
        }
        Self.grow(&rawScratch, to: rawLength)
        let out = UnsafeMutableRawBufferPointer(rebasing: rawScratch[0..<rawLength])
        do {
            try decompressor.decompress(UnsafeRawBufferPointer(plain), codec: codec, into: out)
        } catch let e as VaultlineError {
            throw VaultlineError(.corrupt, "blob \(id.hex): \(e.message)", object: object())
        }
        return try body(UnsafeRawBufferPointer(out))
    }

    /// Authenticates, decrypts and decompresses one sealed blob into a new array.
    public func open(
        sealed: UnsafeRawBufferPointer, id: Bytes32, salt: Bytes32, offset: UInt32,
        codec: Codec, rawLength: Int, object: @autoclosure () -> String
    ) throws -> [UInt8] {
        let plain = try decrypt(sealed: sealed, id: id, salt: salt, offset: offset, object: object())
        if codec == .none {
            guard plain.count == rawLength else {
                throw VaultlineError(.corrupt, "blob \(id.hex) has length \(plain.count), index says \(rawLength)", object: object())
            }
            return plain
        }
        var out = [UInt8](repeating: 0, count: rawLength)
        do {
            try plain.withUnsafeBytes { src in
                try out.withUnsafeMutableBytes { try decompressor.decompress(src, codec: codec, into: $0) }
            }
        } catch let e as VaultlineError {
            throw VaultlineError(.corrupt, "blob \(id.hex): \(e.message)", object: object())
        }
        return out
    }

    /// Authenticates and decrypts one sealed blob, leaving it compressed (prune copies blobs
    /// into new packs this way, without recompressing them).
    public func decrypt(
        sealed: UnsafeRawBufferPointer, id: Bytes32, salt: Bytes32, offset: UInt32, object: @autoclosure () -> String
    ) throws -> [UInt8] {
        guard sealed.count >= AESGCM.tagSize else {
            throw VaultlineError(.corrupt, "sealed blob is shorter than its tag", object: object())
        }
        var plain = [UInt8](repeating: 0, count: sealed.count - AESGCM.tagSize)
        try plain.withUnsafeMutableBytes { try decrypt(sealed: sealed, id: id, salt: salt, offset: offset, into: $0, object: object()) }
        return plain
    }

    /// Authenticates, decrypts, decompresses and re-identifies one blob into buffers this opener
    /// reuses (no allocation or zero-filling per blob): `check --read-data` and deep scrub.
    /// Throws when the blob is damaged.
    public func verify(
        sealed: UnsafeRawBufferPointer, id: Bytes32, salt: Bytes32, offset: UInt32,
        codec: Codec, rawLength: Int, object: @autoclosure () -> String
    ) throws {
        let matches = try withOpened(sealed: sealed, id: id, salt: salt, offset: offset, codec: codec, rawLength: rawLength,
                                     object: object()) { key.blobID($0) == id }
        guard matches else {
            throw VaultlineError(.corrupt, "blob \(id.hex) content hashes to another id", object: object())
        }
    }

    private static func grow(_ buffer: inout UnsafeMutableRawBufferPointer, to count: Int) {
        guard buffer.count < count else { return }
        buffer.deallocate()
        buffer = .allocate(byteCount: max(count, buffer.count * 2, 1 << 16), alignment: 64)
    }

    private func decrypt(
        sealed: UnsafeRawBufferPointer, id: Bytes32, salt: Bytes32, offset: UInt32,
        into plain: UnsafeMutableRawBufferPointer, object: @autoclosure () -> String
    ) throws {
        let cipher = try cipher(salt: salt)
        let ok = withUnsafeTemporaryAllocation(byteCount: 44, alignment: 8) { scratch in
            PackFormat.blobNonce(offset: offset, into: scratch.baseAddress!)
            id.write(to: scratch.baseAddress! + 12)
            return cipher.open(
                sealed, nonce: UnsafeRawBufferPointer(rebasing: scratch[0..<12]),
                aad: UnsafeRawBufferPointer(rebasing: scratch[12..<44]), into: plain)
        }
        guard ok else {
            throw VaultlineError(.corrupt, "blob \(id.hex) does not authenticate (damaged pack)", object: object())
        }
    }

    private func cipher(salt: Bytes32) throws -> AESGCM {
        if let c = ciphers[salt] { return c }
        if ciphers.count >= 64 { ciphers.removeAll(keepingCapacity: true) }
        let c = try AESGCM(key: key.subkey(salt: salt.bytes, info: PackFormat.subkeyInfo))
        ciphers[salt] = c
        return c
    }
}
