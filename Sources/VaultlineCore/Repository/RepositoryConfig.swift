import Foundation

/// The repository's `config` file: plain JSON, written once by `init` and never changed
/// (docs/FORMAT.md, "config"). It holds no secret.
public struct RepositoryConfig: Codable, Sendable, Equatable {
    /// Version 2 adds `blobIDs`; version 1 (no such key) means HMAC-SHA256 ids.
    public static let currentVersion = 2
    public static let supportedVersions = 1...2

    public var version: Int
    /// 32 random bytes, hex: binds key slots to this repository.
    public var id: String
    public var created: Date
    public var chunker: FastCDC.Parameters
    public var compression: Codec
    public var compressionLevel: Int
    /// Target size of a pack file in bytes.
    public var packSize: Int
    /// The blob-id function (version 2 on; absent in version 1).
    public var blobIDs: BlobIDFunction?

    /// The blob-id function this repository uses.
    public var blobIDFunction: BlobIDFunction { blobIDs ?? .hmacSHA256 }

    public init(
        id: String, chunker: FastCDC.Parameters, compression: Codec, compressionLevel: Int, packSize: Int,
        blobIDs: BlobIDFunction
    ) {
        // A version-1 repository is still written where HMAC ids are asked for, so that older
        // builds keep reading it.
        version = blobIDs == .hmacSHA256 ? 1 : Self.currentVersion
        self.blobIDs = blobIDs == .hmacSHA256 ? nil : blobIDs
        self.id = id
        // Whole milliseconds: what the stored JSON keeps.
        created = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        self.chunker = chunker
        self.compression = compression
        self.compressionLevel = compressionLevel
        self.packSize = packSize
    }

    public static let defaultPackSize = 16 << 20

    /// The bytes of the config file (stable key order).
    public func encoded() throws -> [UInt8] { try StoredJSON.encode(self) }

    /// Parses a config file's bytes (the replica receiver checks a pushed config this way).
    public static func decode(_ bytes: [UInt8], object: String) throws -> RepositoryConfig {
        try StoredJSON.decode(RepositoryConfig.self, from: bytes, object: object)
    }

    /// Reads the config without any key (keyless scrub, replica prune's checks).
    public static func load(from backend: any Backend, path: String) throws -> RepositoryConfig {
        let bytes: [UInt8]
        do {
            bytes = try backend.read(.config, "config")
        } catch let error as VaultlineError where error.code == .notFound {
            throw VaultlineError(.notFound, "no Vaultline repository here (no config file)", object: path)
        }
        return try StoredJSON.decode(RepositoryConfig.self, from: bytes, object: path + "/config")
    }
}

/// JSON with stable key order and integer-safe dates, used for every JSON structure we store.
enum StoredJSON {
    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, enc in
            var c = enc.singleValueContainer()
            try c.encode(iso8601(date))
        }
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { dec in
            let s = try dec.singleValueContainer().decode(String.self)
            guard let date = parseISO8601(s) else {
                throw DecodingError.dataCorrupted(.init(codingPath: dec.codingPath, debugDescription: "bad date \(s)"))
            }
            return date
        }
        return d
    }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        do { return Array(try encoder().encode(value)) } catch {
            throw VaultlineError(.invalidArgument, "cannot encode \(T.self)", cause: error)
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], object: String) throws -> T {
        do { return try decoder().decode(type, from: Data(bytes)) } catch {
            throw VaultlineError(.corrupt, "cannot decode \(T.self)", object: object, cause: error)
        }
    }

    static func iso8601(_ date: Date) -> String { UTCTimestamp.rfc3339(date) }

    static func parseISO8601(_ s: String) -> Date? { UTCTimestamp.parseRFC3339(s) }
}
