/// The envelope of index and snapshot files (docs/FORMAT.md, "Sealed files"):
///
///     magic "VLF1" | kind u8 | salt[32] | AES-256-GCM(subkey, nonce 0, aad = first 37 bytes)(codec u8 | payload)
///
/// Each file has a fresh random salt, hence its own subkey, so the all-zero nonce is used once
/// per key. The payload is zstd-compressed when that saves space.
public enum SealedFile {
    public enum Kind: UInt8, Sendable { case index = 1, snapshot = 2 }
    static let magic: [UInt8] = Array("VLF1".utf8)
    static let headerSize = 37
    static let info = "vaultline sealed file v1"

    public static func seal(_ payload: [UInt8], kind: Kind, key: MasterKey) throws -> [UInt8] {
        let salt = try SecureRandom.bytes(32)
        let header = magic + [kind.rawValue] + salt
        let compressor = try Compressor(codec: .zstd, level: 3)
        var body = [UInt8](repeating: 0, count: 1 + compressor.bound(payload.count))
        let n = try payload.withUnsafeBytes { src in
            try body.withUnsafeMutableBytes { try compressor.compress(src, into: UnsafeMutableRawBufferPointer(rebasing: $0[1...])) }
        }
        if n < payload.count {
            body[0] = Codec.zstd.rawValue
            body.removeSubrange((1 + n)...)
        } else {
            body = [Codec.none.rawValue] + payload
        }
        let cipher = try AESGCM(key: key.subkey(salt: salt, info: info))
        return header + (try cipher.seal(body, nonce: [UInt8](repeating: 0, count: 12), aad: header))
    }

    /// Verifies the name (SHA-256 of the bytes), authenticates and decompresses.
    public static func open(_ bytes: [UInt8], kind: Kind, key: MasterKey, name: String, folder: String) throws -> [UInt8] {
        let object = "\(folder)/\(name)"
        guard SHA256.hash(bytes).hex == name else {
            throw VaultlineError(.corrupt, "content does not match its name (SHA-256 differs): file damaged", object: object)
        }
        guard bytes.count >= headerSize + AESGCM.tagSize + 1, Array(bytes[0..<4]) == magic else {
            throw VaultlineError(.corrupt, "not a Vaultline sealed file (bad magic or too short)", object: object)
        }
        guard bytes[4] == kind.rawValue else {
            throw VaultlineError(.corrupt, "sealed file of kind \(bytes[4]) where \(kind) was expected", object: object)
        }
        let header = Array(bytes[0..<headerSize])
        let salt = Array(bytes[5..<headerSize])
        let cipher = try AESGCM(key: key.subkey(salt: salt, info: info))
        guard let body = bytes.withUnsafeBytes({
            cipher.open(UnsafeRawBufferPointer(rebasing: $0[headerSize...]), nonce: [UInt8](repeating: 0, count: 12), aad: header)
        }) else {
            throw VaultlineError(.corrupt, "authentication failed: file altered or sealed under another key", object: object)
        }
        guard let codec = body.first.flatMap(Codec.init(rawValue:)) else {
            throw VaultlineError(.corrupt, "unknown payload codec", object: object)
        }
        if codec == .none { return Array(body[1...]) }
        return try body.withUnsafeBytes { raw in
            let src = UnsafeRawBufferPointer(rebasing: raw[1...])
            let size = ZstdFrame.contentSize(src)
            guard let size, size <= 1 << 31 else {
                throw VaultlineError(.corrupt, "compressed payload has no valid size", object: object)
            }
            var out = [UInt8](repeating: 0, count: size)
            try out.withUnsafeMutableBytes { try Decompressor().decompress(src, codec: .zstd, into: $0) }
            return out
        }
    }
}
