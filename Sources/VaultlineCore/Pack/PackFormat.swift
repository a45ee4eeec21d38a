/// What a blob holds: file content, or a serialized tree. Each pack holds one type only.
public enum BlobType: UInt8, Sendable, Codable, CustomStringConvertible {
    case data = 0
    case tree = 1
    public var description: String { self == .data ? "data" : "tree" }
}

/// One blob's record in a pack header and in index files (46 bytes, docs/FORMAT.md "Pack entry").
public struct PackEntry: Sendable, Equatable {
    public var type: BlobType
    public var codec: Codec
    public var id: Bytes32
    /// Offset of the sealed blob from the start of the pack.
    public var offset: UInt32
    /// Sealed length: ciphertext plus the 16-byte tag.
    public var storedLength: UInt32
    /// Length of the plaintext before compression.
    public var rawLength: UInt32

    public static let encodedSize = 46

    public init(type: BlobType, codec: Codec, id: Bytes32, offset: UInt32, storedLength: UInt32, rawLength: UInt32) {
        self.type = type
        self.codec = codec
        self.id = id
        self.offset = offset
        self.storedLength = storedLength
        self.rawLength = rawLength
    }

    func encode(into out: inout [UInt8]) {
        out.append(type.rawValue)
        out.append(codec.rawValue)
        out.append(contentsOf: id.bytes)
        out.appendLE(offset)
        out.appendLE(storedLength)
        out.appendLE(rawLength)
    }

    static func decode(_ b: UnsafeRawBufferPointer, at o: Int) -> PackEntry? {
        guard let type = BlobType(rawValue: b[o]), let codec = Codec(rawValue: b[o + 1]) else { return nil }
        return PackEntry(
            type: type, codec: codec, id: Bytes32(UnsafeRawBufferPointer(rebasing: b[(o + 2)..<(o + 34)])),
            offset: b.loadLE(o + 34), storedLength: b.loadLE(o + 38), rawLength: b.loadLE(o + 42))
    }
}

/// Constants and helpers of the pack layout:
///
///     sealed blob 0 | sealed blob 1 | … | sealed header | salt[32] | header length u32 LE | "VLP1"
public enum PackFormat {
    public static let magic: [UInt8] = Array("VLP1".utf8)
    public static let trailerSize = 32 + 4 + 4
    /// The shortest file that can be a pack: a trailer and a sealed header of no entries.
    public static let minimumPackSize = Int64(trailerSize + AESGCM.tagSize + 5)
    public static let subkeyInfo = "vaultline pack v1"
    public static let headerVersion: UInt8 = 1
    /// Largest sealed header a reader accepts before allocating (1M entries).
    public static let maxHeaderSize = 46 << 20

    /// Blob nonce: 4 zero bytes then the blob's offset in the pack (u64 big-endian). Offsets are
    /// distinct within a pack, and each pack has its own subkey.
    @inlinable public static func blobNonce(offset: UInt32, into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: UInt64(offset).bigEndian, toByteOffset: 4, as: UInt64.self)
    }

    /// Header nonce: 0xFFFFFFFF then 8 zero bytes, which no blob offset can produce.
    public static let headerNonce: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]
    public static let headerAAD: [UInt8] = Array("VLPH".utf8)

    static func encodeHeader(_ entries: [PackEntry]) -> [UInt8] {
        var out: [UInt8] = [headerVersion]
        out.reserveCapacity(5 + entries.count * PackEntry.encodedSize)
        out.appendLE(UInt32(entries.count))
        for e in entries { e.encode(into: &out) }
        return out
    }

    static func decodeHeader(_ plain: [UInt8], object: String) throws -> [PackEntry] {
        try plain.withUnsafeBytes { b in
            guard b.count >= 5, b[0] == headerVersion else {
                throw VaultlineError(.corrupt, "pack header has an unknown version", object: object)
            }
            let count = Int(b.loadLE(1) as UInt32)
            guard b.count == 5 + count * PackEntry.encodedSize else {
                throw VaultlineError(.corrupt, "pack header length does not match its entry count", object: object)
            }
            var out: [PackEntry] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                guard let e = PackEntry.decode(b, at: 5 + i * PackEntry.encodedSize) else {
                    throw VaultlineError(.corrupt, "pack header entry \(i) has an unknown type or codec", object: object)
                }
                out.append(e)
            }
            return out
        }
    }
}

extension [UInt8] {
    @inlinable mutating func appendLE(_ v: UInt32) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
    @inlinable mutating func appendLE(_ v: UInt64) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    @inlinable func loadLE(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable func loadLE(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
