import Foundation

/// The repository's secrets, created once by `init` and stored only inside key slots.
public struct MasterKey: Sendable {
    /// Input key material for every encryption subkey (HKDF-SHA256, per pack and per file).
    public var encryptionKey: Bytes32
    /// The key that turns plaintext into blob ids (with ``blobIDs``).
    public var idKey: Bytes32
    /// Seeds the FastCDC Gear table so chunk boundaries do not reveal known content.
    public var chunkerSeed: UInt64
    /// The repository's blob-id function, from its config (not stored in key slots).
    public var blobIDs = BlobIDFunction.hmacSHA256

    public init(encryptionKey: Bytes32, idKey: Bytes32, chunkerSeed: UInt64) {
        self.encryptionKey = encryptionKey
        self.idKey = idKey
        self.chunkerSeed = chunkerSeed
    }

    public static func generate() throws -> MasterKey {
        let seed = try SecureRandom.bytes(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return MasterKey(encryptionKey: try SecureRandom.key(), idKey: try SecureRandom.key(), chunkerSeed: seed)
    }

    /// The blob id of `plaintext`.
    @inlinable public func blobID(_ plaintext: UnsafeRawBufferPointer) -> Bytes32 {
        switch blobIDs {
        case .blake3: BLAKE3.keyedHash(key: idKey, plaintext)
        case .hmacSHA256: HMACSHA256.mac(key: idKey, plaintext)
        }
    }

    /// A subkey for one pack or sealed file: HKDF-SHA256(encryptionKey, salt, info).
    public func subkey(salt: [UInt8], info: String) -> Bytes32 {
        HMACSHA256.hkdf(ikm: encryptionKey.bytes, salt: salt, info: Array(info.utf8))
    }
}

/// How plaintext becomes a blob id (docs/FORMAT.md, "Blob ids"): fixed when the repository is
/// created and named in its config.
public enum BlobIDFunction: String, Codable, Sendable, CaseIterable {
    /// Format version 1: HMAC-SHA256(idKey, plaintext).
    case hmacSHA256 = "hmac-sha256"
    /// Format version 2: BLAKE3 keyed hash (key idKey, 32 bytes out).
    case blake3 = "blake3-keyed"

    /// What `init` picks unless told: BLAKE3 where this CPU runs it several chunks at a time
    /// (one core: 3.3 GB/s with AVX-512, 1.9 GB/s with AVX2, against HMAC-SHA256's 1.4 GB/s
    /// with SHA extensions), HMAC-SHA256 where it would run one chunk at a time (0.6 GB/s).
    public static var fastestHere: BlobIDFunction { BLAKE3.path == .scalar ? .hmacSHA256 : .blake3 }
}

/// A key slot file under `keys/`: the master key sealed with a key derived from one password by
/// scrypt (docs/FORMAT.md, "Key slots").
public struct KeySlot: Codable, Sendable {
    public struct KDF: Codable, Sendable {
        public var name: String
        public var n: UInt64
        public var r: UInt64
        public var p: UInt64
        public var salt: String
    }

    struct Payload: Codable {
        var repository: String
        var encryptionKey: String
        var idKey: String
        var chunkerSeed: String
    }

    public var version: Int
    public var created: Date
    public var host: String
    public var username: String
    public var kdf: KDF
    /// Base64 of the 12-byte GCM nonce.
    public var nonce: String
    /// Base64 of the sealed payload (ciphertext then 16-byte tag).
    public var data: String

    static let aad = Array("vaultline key slot v1".utf8)

    /// scrypt cost of new slots (N = 2^15, r = 8, p = 1: 32 MiB, about 0.1 s on this machine's
    /// cores), and the least a new slot may have. Nothing in the environment lowers it.
    public static let defaultN: UInt64 = 1 << 15
    public static let minimumNewN: UInt64 = 1 << 15

    public static func seal(_ key: MasterKey, repositoryID: String, password: [UInt8], n: UInt64 = defaultN) throws -> KeySlot {
        guard n >= minimumNewN else {
            throw VaultlineError(.invalidArgument, "a new key slot needs scrypt N of at least 2^15 (asked: \(n))")
        }
        return try sealUnchecked(key, repositoryID: repositoryID, password: password, n: n)
    }

    /// `seal` without the floor: tests make cheap slots.
    static func sealUnchecked(_ key: MasterKey, repositoryID: String, password: [UInt8], n: UInt64) throws -> KeySlot {
        let salt = try SecureRandom.bytes(32)
        let kek = try Scrypt.derive(password: password, salt: salt, n: n, r: 8, p: 1)
        let payload = Payload(
            repository: repositoryID, encryptionKey: key.encryptionKey.hex, idKey: key.idKey.hex,
            chunkerSeed: String(key.chunkerSeed))
        let nonce = try SecureRandom.bytes(12)
        let sealed = try AESGCM(key: kek).seal(try StoredJSON.encode(payload), nonce: nonce, aad: aad)
        return KeySlot(
            version: 1, created: Date(), host: FileSystem.hostName(), username: FileSystem.userName(),
            kdf: KDF(name: "scrypt", n: n, r: 8, p: 1, salt: Data(salt).base64EncodedString()),
            nonce: Data(nonce).base64EncodedString(), data: Data(sealed).base64EncodedString())
    }

    /// The master key, or nil when `password` does not open this slot.
    public func open(password: [UInt8], repositoryID: String, name: String) throws -> MasterKey? {
        guard kdf.name == "scrypt", let salt = Data(base64Encoded: kdf.salt),
              let nonce = Data(base64Encoded: nonce), let sealed = Data(base64Encoded: data)
        else { throw VaultlineError(.corrupt, "key slot is malformed", object: "keys/\(name)") }
        guard Scrypt.acceptable(n: kdf.n, r: kdf.r, p: kdf.p) else {
            throw VaultlineError(.corrupt, "key slot asks for scrypt N=\(kdf.n) r=\(kdf.r) p=\(kdf.p), beyond what a password slot needs (docs/FORMAT.md, key slots)",
                                 object: "keys/\(name)")
        }
        let kek = try Scrypt.derive(password: password, salt: Array(salt), n: kdf.n, r: kdf.r, p: kdf.p)
        guard let plain = Array(sealed).withUnsafeBytes({ AESGCM.openOnce(key: kek, $0, nonce: Array(nonce), aad: Self.aad) })
        else { return nil }
        let p = try StoredJSON.decode(Payload.self, from: plain, object: "keys/\(name)")
        guard p.repository == repositoryID else {
            throw VaultlineError(.corrupt, "key slot belongs to repository \(p.repository)", object: "keys/\(name)")
        }
        guard let ek = Bytes32(hex: p.encryptionKey), let ik = Bytes32(hex: p.idKey), let seed = UInt64(p.chunkerSeed) else {
            throw VaultlineError(.corrupt, "key slot payload is malformed", object: "keys/\(name)")
        }
        return MasterKey(encryptionKey: ek, idKey: ik, chunkerSeed: seed)
    }
}

extension AESGCM {
    /// Opens with a one-off context; nil when the tag does not authenticate.
    static func openOnce(key: Bytes32, _ sealed: UnsafeRawBufferPointer, nonce: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard let c = try? AESGCM(key: key) else { return nil }
        return c.open(sealed, nonce: nonce, aad: aad)
    }
}
