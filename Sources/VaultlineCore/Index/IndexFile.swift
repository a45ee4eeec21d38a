/// An index file's payload (inside a ``SealedFile`` of kind index), docs/FORMAT.md "Index files":
///
///     version u8 = 1 | pack count u32 LE | per pack: id[32] | salt[32] | entry count u32 LE | entries (46 bytes each)
public enum IndexFile {
    public struct Pack: Sendable {
        public var id: Bytes32
        public var salt: Bytes32
        public var entries: [PackEntry]
        public init(id: Bytes32, salt: Bytes32, entries: [PackEntry]) {
            self.id = id; self.salt = salt; self.entries = entries
        }
    }

    public static func encode(_ packs: [Pack]) -> [UInt8] {
        var out: [UInt8] = [1]
        out.appendLE(UInt32(packs.count))
        for p in packs {
            out += p.id.bytes
            out += p.salt.bytes
            out.appendLE(UInt32(p.entries.count))
            for e in p.entries { e.encode(into: &out) }
        }
        return out
    }

    public static func decode(_ bytes: [UInt8], object: String) throws -> [Pack] {
        try bytes.withUnsafeBytes { b in
            func need(_ n: Int, at o: Int) throws {
                guard o + n <= b.count else { throw VaultlineError(.corrupt, "index file is truncated", object: object) }
            }
            try need(5, at: 0)
            guard b[0] == 1 else { throw VaultlineError(.unsupported, "index file version \(b[0])", object: object) }
            let packCount = Int(b.loadLE(1) as UInt32)
            var o = 5
            var out: [Pack] = []
            for _ in 0..<packCount {
                try need(68, at: o)
                let id = Bytes32(UnsafeRawBufferPointer(rebasing: b[o..<(o + 32)]))
                let salt = Bytes32(UnsafeRawBufferPointer(rebasing: b[(o + 32)..<(o + 64)]))
                let n = Int(b.loadLE(o + 64) as UInt32)
                o += 68
                try need(n * PackEntry.encodedSize, at: o)
                var entries: [PackEntry] = []
                entries.reserveCapacity(n)
                for _ in 0..<n {
                    guard let e = PackEntry.decode(b, at: o) else {
                        throw VaultlineError(.corrupt, "index entry has an unknown type or codec", object: object)
                    }
                    entries.append(e)
                    o += PackEntry.encodedSize
                }
                out.append(Pack(id: id, salt: salt, entries: entries))
            }
            guard o == b.count else { throw VaultlineError(.corrupt, "index file has trailing bytes", object: object) }
            return out
        }
    }
}
