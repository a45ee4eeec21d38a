/// Where a blob is stored, as the in-memory index answers it.
public struct BlobLocation: Sendable, Equatable {
    public var pack: Bytes32
    public var salt: Bytes32
    public var type: BlobType
    public var codec: Codec
    public var offset: UInt32
    public var storedLength: UInt32
    public var rawLength: UInt32
}

/// The in-memory index: blob id → location, at 40 bytes per blob.
///
/// Entries live in one array sorted by id, each exactly 40 bytes: the first 24 bytes of the id
/// (192 bits; ids are keyed hashes under a secret key, so nobody can craft a collision, and a chance one
/// needs ~2^96 blobs), a pack number, offset, sealed length, and raw length with the codec in its
/// top 4 bits. Packs (id, salt, type) are kept once per pack. New entries are appended to a
/// flat side array that ``compact()`` sorts in place and merges: call it after adding and
/// before looking up (``Repository/loadIndex()`` does).
///
/// Reads may run on many threads at once while nobody adds; adding is single-threaded.
// @unchecked Sendable: reads run on many threads only while nobody adds; adding is single-threaded (above)
public final class BlobIndex: @unchecked Sendable {
    struct Key: Hashable, Comparable {
        var a: UInt64, b: UInt64, c: UInt64
        init(_ id: Bytes32) { a = id.a; b = id.b; c = id.c }
        static func < (l: Key, r: Key) -> Bool { (l.a, l.b, l.c) < (r.a, r.b, r.c) }
    }

    struct Entry {
        var key: Key
        var pack: UInt32
        var offset: UInt32
        var storedLength: UInt32
        var rawAndCodec: UInt32
    }

    struct PackRecord {
        var id: Bytes32
        var salt: Bytes32
        var type: BlobType
        var blobCount: UInt32
    }

    var sorted: [Entry] = []
    private var pending: [Entry] = []
    var packs: [PackRecord] = []
    private var packNumbers: [Bytes32: UInt32] = [:]

    public init() {}

    public var count: Int { sorted.count + pending.count }
    public var packCount: Int { packs.count }

    /// Adds every entry of one pack. A blob already indexed (in another pack) keeps its first
    /// location; the duplicate is harmless and `prune` removes it.
    public func add(pack: Bytes32, salt: Bytes32, entries: [PackEntry]) {
        guard !entries.isEmpty else { return }
        let number: UInt32
        if let n = packNumbers[pack] {
            number = n
        } else {
            number = UInt32(packs.count)
            packs.append(PackRecord(id: pack, salt: salt, type: entries[0].type, blobCount: 0))
            packNumbers[pack] = number
        }
        packs[Int(number)].blobCount += UInt32(entries.count)
        for e in entries {
            pending.append(Entry(
                key: Key(e.id), pack: number, offset: e.offset, storedLength: e.storedLength,
                rawAndCodec: e.rawLength | UInt32(e.codec.rawValue) << 28))
        }
    }

    /// Sorts the side array in place, drops duplicates (the earliest pack wins, also over the
    /// sorted array) and merges it into the sorted array, allocating exactly what is needed.
    public func compact() {
        guard !pending.isEmpty else { return }
        pending.sort { ($0.key, $0.pack) < ($1.key, $1.pack) }
        var kept = 0
        for i in 0..<pending.count where (kept == 0 || pending[kept - 1].key != pending[i].key) && findSorted(pending[i].key) == nil {
            pending[kept] = pending[i]
            kept += 1
        }
        pending.removeSubrange(kept...)
        if sorted.isEmpty {
            sorted = [Entry](unsafeUninitializedCapacity: pending.count) { buf, n in
                _ = buf.initialize(from: pending)
                n = pending.count
            }
            pending = []
            return
        }
        let fresh = pending
        pending = []
        let old = sorted
        sorted = []
        let total = old.count + fresh.count
        sorted = [Entry](unsafeUninitializedCapacity: total) { buf, n in
            var i = 0, j = 0, k = 0
            while i < old.count && j < fresh.count {
                if old[i].key < fresh[j].key { buf[k] = old[i]; i += 1 } else { buf[k] = fresh[j]; j += 1 }
                k += 1
            }
            while i < old.count { buf[k] = old[i]; i += 1; k += 1 }
            while j < fresh.count { buf[k] = fresh[j]; j += 1; k += 1 }
            n = total
        }
    }

    public func contains(_ id: Bytes32) -> Bool { entry(for: id) != nil }

    public func lookup(_ id: Bytes32) -> BlobLocation? {
        guard let e = entry(for: id) else { return nil }
        let p = packs[Int(e.pack)]
        return BlobLocation(
            pack: p.id, salt: p.salt, type: p.type, codec: Codec(rawValue: UInt8(e.rawAndCodec >> 28)) ?? .none,
            offset: e.offset, storedLength: e.storedLength, rawLength: e.rawAndCodec & 0x0fff_ffff)
    }

    /// Every pack the index names, with its type and number of blobs.
    public var packIDs: [(id: Bytes32, type: BlobType, blobs: Int)] {
        packs.map { ($0.id, $0.type, Int($0.blobCount)) }
    }

    /// Bytes held: the entry array, the side table, and the per-pack records.
    public var memoryFootprint: (entries: Int, packs: Int) {
        let entryBytes = (sorted.capacity + pending.capacity) * MemoryLayout<Entry>.stride
        let packBytes = packs.capacity * MemoryLayout<PackRecord>.stride + packNumbers.capacity * (MemoryLayout<Bytes32>.stride + 4 + 8)
        return (entryBytes, packBytes)
    }

    private func entry(for id: Bytes32) -> Entry? {
        assert(pending.isEmpty, "BlobIndex: compact() after adding, before looking up")
        return findSorted(Key(id)).map { sorted[$0] }
    }

    private func findSorted(_ key: Key) -> Int? {
        sorted.withUnsafeBufferPointer { s in
            var lo = 0, hi = s.count
            while lo < hi {
                let mid = (lo + hi) >> 1
                let k = s[mid].key
                if k == key { return mid }
                if k < key { lo = mid + 1 } else { hi = mid }
            }
            return nil
        }
    }
}

extension BlobIndex {
    /// Totals over the index, by blob type.
    public struct Totals: Codable, Sendable {
        public var blobs = 0
        public var rawBytes: UInt64 = 0
        public var storedBytes: UInt64 = 0
        public init() {}
    }

    public func totals() -> [BlobType: Totals] {
        compact()
        var out: [BlobType: Totals] = [.data: Totals(), .tree: Totals()]
        for e in sorted {
            let type = packs[Int(e.pack)].type
            out[type, default: Totals()].blobs += 1
            out[type, default: Totals()].rawBytes += UInt64(e.rawAndCodec & 0x0fff_ffff)
            out[type, default: Totals()].storedBytes += UInt64(e.storedLength)
        }
        return out
    }
}
