/// Entry points for the format fuzzer (`Fuzz/`, `tools/fuzz formats`) and for the tests that
/// replay its corpus: arbitrary bytes to the readers of pack headers and index files. Every
/// input must end in a value or a ``VaultlineError``; a trap or a memory error is a finding.
@_spi(Fuzzing)
public enum FormatFuzzing {
    /// A fixed key: the fuzzer's packs are sealed with it so that its inputs reach the header
    /// decoder behind the authentication.
    static let key = MasterKey(encryptionKey: Bytes32(a: 1, b: 2, c: 3, d: 4), idKey: Bytes32(a: 5, b: 6, c: 7, d: 8), chunkerSeed: 9)
    static let salt = [UInt8](repeating: 0x5A, count: 32)

    /// The first byte picks the reader; the rest is its input:
    /// - 0: an index file's payload (``IndexFile/decode(_:object:)``);
    /// - 1: a pack header's plaintext (``PackFormat/decodeHeader(_:object:)``);
    /// - 2: u16 blob-area length, then a header's plaintext, sealed here into a whole pack and
    ///   read with ``PackReader/parse(trailer:size:object:key:read:)`` (entries checked
    ///   against the blob area);
    /// - 3: a whole pack file as it might be on disk, trailer included, read the same way;
    /// - 4: a tree's JSON (``Tree/decode(_:id:)``), checked against `JSONDecoder`: a tree both
    ///   read must come out the same (a difference traps, so the fuzzer reports it).
    public static func run(_ input: [UInt8]) {
        guard let mode = input.first else { return }
        let body = Array(input.dropFirst())
        switch mode % 5 {
        case 4:
            guard let ours = try? Tree.decode(body, id: "fuzz"),
                  let reference = try? StoredJSON.decode(Tree.self, from: body, object: "fuzz") else { return }
            precondition(ours == reference, "the tree decoder and JSONDecoder disagree")
        case 0: _ = try? IndexFile.decode(body, object: "fuzz")
        case 1: _ = try? PackFormat.decodeHeader(body, object: "fuzz")
        case 2:
            guard body.count >= 2 else { return }
            let blobArea = Int(body[0]) << 8 | Int(body[1])
            guard let pack = try? sealedPack(header: Array(body.dropFirst(2)), blobArea: blobArea) else { return }
            _ = try? readPack(pack)
        default: _ = try? readPack(body)
        }
    }

    /// A pack of `blobArea` zero bytes and `header` sealed as its header.
    public static func sealedPack(header: [UInt8], blobArea: Int) throws -> [UInt8] {
        let cipher = try AESGCM(key: key.subkey(salt: salt, info: PackFormat.subkeyInfo))
        let sealed = try cipher.seal(header, nonce: PackFormat.headerNonce, aad: PackFormat.headerAAD)
        var pack = [UInt8](repeating: 0, count: blobArea)
        pack += sealed
        pack += salt
        pack.appendLE(UInt32(sealed.count))
        pack += PackFormat.magic
        return pack
    }

    /// Reads a pack held in memory as ``PackReader/readHeader(backend:pack:key:)`` reads one
    /// from a backend (the same size checks first).
    public static func readPack(_ pack: [UInt8]) throws -> [PackEntry] {
        let size = Int64(pack.count)
        guard size >= PackFormat.minimumPackSize else {
            throw VaultlineError(.corrupt, "pack is too short", object: "fuzz")
        }
        let trailer = Array(pack[(pack.count - PackFormat.trailerSize)...])
        return try PackReader.parse(trailer: trailer, size: size, object: "fuzz", key: key) { offset, length in
            guard let start = Int(exactly: offset), start >= 0, length >= 0, start <= pack.count - length else {
                throw VaultlineError(.corrupt, "read past the end", object: "fuzz")
            }
            return Array(pack[start..<(start + length)])
        }.entries
    }
}

@_spi(Fuzzing)
extension FormatFuzzing {
    /// Seed inputs made by the format's own writers: a three-blob pack header, as plaintext
    /// and sealed into a pack, and an index file naming two packs.
    public static func seeds() -> [[UInt8]] {
        let entries: [PackEntry] = [
            PackEntry(type: .data, codec: .zstd, id: Bytes32(a: 0, b: 7, c: 8, d: 9), offset: 0, storedLength: 100, rawLength: 180),
            PackEntry(type: .data, codec: .lz4, id: Bytes32(a: 1, b: 7, c: 8, d: 9), offset: 100, storedLength: 100, rawLength: 180),
            PackEntry(type: .tree, codec: .none, id: Bytes32(a: 2, b: 7, c: 8, d: 9), offset: 200, storedLength: 100, rawLength: 84),
        ]
        let header = PackFormat.encodeHeader(entries)
        let index = IndexFile.encode([
            IndexFile.Pack(id: Bytes32(a: 1, b: 1, c: 1, d: 1), salt: Bytes32(a: 2, b: 2, c: 2, d: 2), entries: entries),
            IndexFile.Pack(id: Bytes32(a: 3, b: 3, c: 3, d: 3), salt: Bytes32(a: 4, b: 4, c: 4, d: 4), entries: Array(entries.prefix(1))),
        ])
        let sealed = (try? sealedPack(header: header, blobArea: 300)) ?? []
        var file = TreeNode(name: "a \"b\"\u{1}é", kind: .file)
        file.size = 5
        file.mtimeNs = -1
        file.content = [Bytes32(a: 1, b: 2, c: 3, d: 4).hex]
        file.metadata = ["graph.item": #"{"subject":"x\"y"}"#]
        var dir = TreeNode(name: "d", kind: .dir)
        dir.subtree = Bytes32(a: 4, b: 3, c: 2, d: 1).hex
        let tree = (try? Tree(nodes: [file, dir]).encoded()) ?? []
        return [[0] + index, [1] + header, [2, 0x01, 0x2C] + header, [3] + sealed, [4] + tree]
    }
}
