/// A pack that has been written: what the index needs to know of it.
public struct FinishedPack: Sendable {
    public var id: Bytes32
    public var salt: Bytes32
    public var type: BlobType
    public var size: Int
    public var entries: [PackEntry]
}

/// A sealed pack whose bytes are all written but which is not yet durable: ``commit()`` makes it
/// so (fsync, link under its name, fsync of the directory). The backup pipeline does that on a
/// thread of its own, so the next pack is filled while this one is flushed.
public struct SealedPack: Sendable {
    public var pack: FinishedPack
    let file: any BackendPendingFile

    public func commit() throws {
        _ = try file.commit(name: pack.id.hex)
    }

    public func abandon() { file.abandon() }
}

/// Seals blobs of one type and streams them into a pack file as they come, hashing as it goes;
/// no pack is held in memory. Not thread-safe: one writer per thread.
public final class PackWriter {
    public let type: BlobType
    private let key: MasterKey
    private let backend: any Backend
    private let targetSize: Int
    private var scratch: UnsafeMutableRawBufferPointer
    private var used = 0
    private var entries: [PackEntry] = []
    private var salt: [UInt8] = []
    private var cipher: AESGCM?
    private var file: (any BackendPendingFile)?
    private var hasher: SHA256.Hasher?

    public init(type: BlobType, key: MasterKey, backend: any Backend, targetSize: Int) {
        self.type = type
        self.key = key
        self.backend = backend
        self.targetSize = targetSize
        scratch = .allocate(byteCount: 1 << 16, alignment: 64)
    }

    deinit {
        scratch.deallocate()
        file?.abandon()
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var isFull: Bool { used >= targetSize }
    public var blobCount: Int { entries.count }
    public var byteCount: Int { used }

    /// Seals `payload` (already compressed with `codec`) and appends it to the pack file.
    public func add(id: Bytes32, codec: Codec, rawLength: Int, payload: UnsafeRawBufferPointer) throws {
        if cipher == nil {
            salt = try SecureRandom.bytes(32)
            cipher = try AESGCM(key: key.subkey(salt: salt, info: PackFormat.subkeyInfo))
            file = try backend.beginWrite(.pack)
            hasher = try SHA256.Hasher()
        }
        let sealedLength = payload.count + AESGCM.tagSize
        guard used + sealedLength <= Int(UInt32.max) else {
            throw VaultlineError(.invalidArgument, "pack would exceed 4 GiB")
        }
        if scratch.count < sealedLength {
            scratch.deallocate()
            scratch = .allocate(byteCount: sealedLength, alignment: 64)
        }
        let offset = UInt32(used)
        let out = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<sealedLength])
        try withUnsafeTemporaryAllocation(byteCount: 44, alignment: 8) { nonceAndAAD in
            PackFormat.blobNonce(offset: offset, into: nonceAndAAD.baseAddress!)
            id.write(to: nonceAndAAD.baseAddress! + 12)
            try cipher!.seal(
                payload, nonce: UnsafeRawBufferPointer(rebasing: nonceAndAAD[0..<12]),
                aad: UnsafeRawBufferPointer(rebasing: nonceAndAAD[12..<44]), into: out)
        }
        try append(UnsafeRawBufferPointer(out))
        entries.append(PackEntry(
            type: type, codec: codec, id: id, offset: offset,
            storedLength: UInt32(sealedLength), rawLength: UInt32(rawLength)))
    }

    private func append(_ bytes: UnsafeRawBufferPointer) throws {
        try file!.append(bytes)
        hasher!.update(bytes)
        used += bytes.count
    }

    /// Appends the sealed header and trailer and hands the pack over for committing; the writer
    /// then starts a new pack with the next blob.
    public func seal() throws -> SealedPack {
        precondition(!entries.isEmpty && cipher != nil)
        let header = try cipher!.seal(PackFormat.encodeHeader(entries), nonce: PackFormat.headerNonce, aad: PackFormat.headerAAD)
        var trailer = header + salt
        trailer.appendLE(UInt32(header.count))
        trailer += PackFormat.magic
        try trailer.withUnsafeBytes { try append($0) }
        let id = hasher!.finalize()
        let sealed = SealedPack(
            pack: FinishedPack(id: id, salt: Bytes32(bytes: salt)!, type: type, size: used, entries: entries),
            file: file!)
        used = 0
        entries.removeAll(keepingCapacity: true)
        cipher = nil
        file = nil
        hasher = nil
        return sealed
    }

    /// Seals and commits in one step (tools and tests that write a pack at a time).
    public func finish() throws -> FinishedPack {
        let sealed = try seal()
        try sealed.commit()
        return sealed.pack
    }
}
