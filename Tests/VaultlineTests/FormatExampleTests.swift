import Foundation
import Testing
@testable import VaultlineCore

/// docs/FORMAT.md's worked example ("15. A worked example"), byte for byte: the test builds
/// the repository's three files from the document's inputs with nothing but the primitives the
/// document names (scrypt, AES-256-GCM, HKDF, BLAKE3, SHA-256), checks that the document
/// prints exactly those bytes, and then has the real reader open them: the password opens the
/// key slot, `repair index` finds the blob in the pack's header, and the blob reads back.
@Suite("Format worked example")
struct FormatExampleTests {
    /// The example's inputs, as the document's table lists them.
    enum Inputs {
        static let encryptionKey = Bytes32(bytes: Array(0x00...0x1F))!
        static let idKey = Bytes32(bytes: Array(0x20...0x3F))!
        static let chunkerSeed: UInt64 = 42
        static let repositoryID = String(repeating: "ab", count: 32)
        static let created = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z
        static let password = Array("correct horse battery staple".utf8)
        static let slotSalt = [UInt8](repeating: 0x11, count: 32)
        static let slotNonce = [UInt8](repeating: 0x22, count: 12)
        static let packSalt = [UInt8](repeating: 0x33, count: 32)
        static let plaintext = Array("Hello, Vaultline!\n".utf8)
    }

    struct Example {
        var config: [UInt8]
        var keySlot: [UInt8]
        var kek: Bytes32
        var slotPayload: [UInt8]
        var header: [UInt8]
        var blobID: Bytes32
        var packSubkey: Bytes32
        var pack: [UInt8]
    }

    static func build() throws -> Example {
        var config = RepositoryConfig(
            id: Inputs.repositoryID, chunker: .init(minSize: 256 << 10, avgSize: 1 << 20, maxSize: 4 << 20),
            compression: .zstd, compressionLevel: 3, packSize: RepositoryConfig.defaultPackSize, blobIDs: .blake3)
        config.created = Inputs.created

        // Key slot (section 3).
        let kek = try Scrypt.derive(password: Inputs.password, salt: Inputs.slotSalt, n: 1 << 15, r: 8, p: 1)
        let payload = KeySlot.Payload(repository: Inputs.repositoryID, encryptionKey: Inputs.encryptionKey.hex,
                                      idKey: Inputs.idKey.hex, chunkerSeed: String(Inputs.chunkerSeed))
        let payloadBytes = try StoredJSON.encode(payload)
        let sealedPayload = try AESGCM(key: kek).seal(payloadBytes, nonce: Inputs.slotNonce, aad: KeySlot.aad)
        let slot = KeySlot(
            version: 1, created: Inputs.created, host: "example", username: "admin",
            kdf: .init(name: "scrypt", n: 1 << 15, r: 8, p: 1, salt: Data(Inputs.slotSalt).base64EncodedString()),
            nonce: Data(Inputs.slotNonce).base64EncodedString(), data: Data(sealedPayload).base64EncodedString())

        // One data blob, stored uncompressed (zstd would not save 3% of 18 bytes), in one pack (section 5).
        let blobID = Inputs.plaintext.withUnsafeBytes { BLAKE3.keyedHash(key: Inputs.idKey, $0) }
        let subkey = HMACSHA256.hkdf(ikm: Inputs.encryptionKey.bytes, salt: Inputs.packSalt, info: Array("vaultline pack v1".utf8))
        let cipher = try AESGCM(key: subkey)
        let blobNonce = [0, 0, 0, 0] + [UInt8](repeating: 0, count: 8)  // 00000000 || u64 BE(offset 0)
        let sealedBlob = try cipher.seal(Inputs.plaintext, nonce: blobNonce, aad: blobID.bytes)
        var header: [UInt8] = [1] + le(UInt32(1))
        header += [0, 0] + blobID.bytes + le(UInt32(0)) + le(UInt32(sealedBlob.count)) + le(UInt32(Inputs.plaintext.count))
        let sealedHeader = try cipher.seal(header, nonce: [0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 8), aad: Array("VLPH".utf8))
        let pack = sealedBlob + sealedHeader + Inputs.packSalt + le(UInt32(sealedHeader.count)) + Array("VLP1".utf8)
        return Example(config: try config.encoded(), keySlot: try StoredJSON.encode(slot), kek: kek, slotPayload: payloadBytes, header: header,
                       blobID: blobID, packSubkey: subkey, pack: pack)
    }

    static func le(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

    @Test func theDocumentPrintsTheseBytesAndTheReaderOpensThem() throws {
        let doc = try String(contentsOf: TestData.repositoryRoot.appendingPathComponent("docs/FORMAT.md"), encoding: .utf8)
        let example = try Self.build()
        let configText = String(decoding: example.config, as: UTF8.self)
        let slotText = String(decoding: example.keySlot, as: UTF8.self)
        let slotName = SHA256.hash(example.keySlot).hex, packName = SHA256.hash(example.pack).hex
        let dump = ProtocolExampleTests.dump(example.pack)
        let texts = [("config", configText), ("key slot", slotText), ("key slot payload", String(decoding: example.slotPayload, as: UTF8.self)),
                     ("pack header", ProtocolExampleTests.dump(example.header)), ("pack", dump)]
        for (what, text) in texts {
            #expect(doc.contains("```\n" + text + "\n```"), "\(what):\n\(text)")
        }
        for (what, hex) in [("KEK", example.kek.hex), ("blob id", example.blobID.hex), ("pack subkey", example.packSubkey.hex),
                            ("key slot name", slotName), ("pack name", packName)] {
            #expect(doc.contains(hex), "\(what): \(hex)")
        }
        #expect(example.pack.count == 18 + 16 + 51 + 16 + 40)

        // The real reader takes the document's files as a repository.
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.path + "/keys", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.path + "/packs/" + packName.prefix(2), withIntermediateDirectories: true)
        try Data(example.config).write(to: URL(fileURLWithPath: dir.path + "/config"))
        try Data(example.keySlot).write(to: URL(fileURLWithPath: dir.path + "/keys/" + slotName))
        try Data(example.pack).write(to: URL(fileURLWithPath: dir.path + "/packs/\(packName.prefix(2))/" + packName))
        expectError(VaultlineError.self, .wrongPassword) { try Repository.open(path: dir.path, password: Array("wrong".utf8)) }
        let repo = try Repository.open(path: dir.path, password: Inputs.password)
        #expect(repo.key.encryptionKey == Inputs.encryptionKey && repo.key.idKey == Inputs.idKey && repo.key.chunkerSeed == 42)
        let repaired = try IndexRepair.run(repo)
        #expect(repaired.packs == 1 && repaired.blobs == 1 && repaired.unreadablePacks.isEmpty)
        try repo.loadIndex()
        #expect(try repo.readBlob(example.blobID) == Inputs.plaintext)
    }
}
