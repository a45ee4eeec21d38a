/// A pack that has been written durably: what the index needs to know of it.
public struct FinishedPack: Sendable {
    public var id: Bytes32
    public var salt: Bytes32
    public var type: BlobType
    public var size: Int
    public var entries: [PackEntry]
}

/// Collects sealed blobs of one type in memory until the pack reaches its target size, then
/// writes it (named by its SHA-256) through the backend. Not thread-safe: one writer per thread.
public final class PackWriter {
    public let type: BlobType
    private let key: MasterKey
    private let targetSize: Int
    private var storage: UnsafeMutableRawBufferPointer
    private var used = 0
    private var entries: [PackEntry] = []
    private var salt: [UInt8] = []
    private var cipher: AESGCM?

    public init(type: BlobType, key: MasterKey, targetSize: Int) {
        self.type = type
        self.key = key
        self.targetSize = targetSize
        storage = .allocate(byteCount: max(targetSize, 1 << 20) + (1 << 20), alignment: 64)
    }

    deinit { storage.deallocate() }

    public var isEmpty: Bool { entries.isEmpty }
    public var isFull: Bool { used >= targetSize }
    public var blobCount: Int { entries.count }
    public var byteCount: Int { used }

    /// Seals `payload` (already compressed with `codec`) and appends it.
    public func add(id: Bytes32, codec: Codec, rawLength: Int, payload: UnsafeRawBufferPointer) throws {
        if cipher == nil {
            salt = try SecureRandom.bytes(32)
            cipher = try AESGCM(key: key.subkey(salt: salt, info: PackFormat.subkeyInfo))
        }
        let sealedLength = payload.count + AESGCM.tagSize
        guard used + sealedLength <= Int(UInt32.max) else {
            throw VaultlineError(.invalidArgument, "pack would exceed 4 GiB")
        }
        try reserve(used + sealedLength)
        let offset = UInt32(used)
        try withUnsafeTemporaryAllocation(byteCount: 44, alignment: 8) { scratch in
            PackFormat.blobNonce(offset: offset, into: scratch.baseAddress!)
            id.write(to: scratch.baseAddress! + 12)
            try cipher!.seal(
                payload, nonce: UnsafeRawBufferPointer(rebasing: scratch[0..<12]),
                aad: UnsafeRawBufferPointer(rebasing: scratch[12..<44]),
                into: UnsafeMutableRawBufferPointer(rebasing: storage[used..<(used + sealedLength)]))
        }
        entries.append(PackEntry(
            type: type, codec: codec, id: id, offset: offset,
            storedLength: UInt32(sealedLength), rawLength: UInt32(rawLength)))
        used += sealedLength
    }

    /// Appends the sealed header and trailer, writes the pack durably and starts a new one.
    public func finish(to backend: any Backend) throws -> FinishedPack {
        precondition(!entries.isEmpty && cipher != nil)
        let header = try cipher!.seal(PackFormat.encodeHeader(entries), nonce: PackFormat.headerNonce, aad: PackFormat.headerAAD)
        var trailer = header + salt
        trailer.appendLE(UInt32(header.count))
        trailer += PackFormat.magic
        try reserve(used + trailer.count)
        trailer.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: storage[used...]).copyMemory(from: $0) }
        used += trailer.count
        let bytes = UnsafeRawBufferPointer(rebasing: storage[0..<used])
        let id = SHA256.hash(bytes)
        try backend.writeIfAbsent(.pack, id.hex, bytes)
        let result = FinishedPack(
            id: id, salt: Bytes32(bytes: salt)!, type: type, size: used, entries: entries)
        used = 0
        entries.removeAll(keepingCapacity: true)
        cipher = nil
        return result
    }

    private func reserve(_ size: Int) throws {
        guard size > storage.count else { return }
        let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, storage.count * 3 / 2), alignment: 64)
        bigger.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[0..<used]))
        storage.deallocate()
        storage = bigger
    }
}
