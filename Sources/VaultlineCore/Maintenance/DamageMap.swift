import Foundation

/// Damaged blobs, and which snapshot items they hurt.
///
/// Blob ids are kept by their first 24 bytes, as the index keeps them, so that blobs known
/// only through the index (a missing pack's) and blobs found damaged in a pack mix freely.
public struct DamageMap: Sendable {
    var blobs = Set<BlobIndex.Key>()

    public init() {}

    public var isEmpty: Bool { blobs.isEmpty }

    /// The damaged blobs as 48 hex digits each: the first 24 bytes of the id, as the index
    /// keeps them (`cat blob` and `ls` take such a prefix).
    public var idPrefixes: [String] {
        blobs.map { key in
            var bytes: [UInt8] = []
            for word in [key.a, key.b, key.c] { withUnsafeBytes(of: word.bigEndian) { bytes += $0 } }
            return encodeHex(bytes)
        }.sorted()
    }
    public var count: Int { blobs.count }

    public mutating func insert(_ id: Bytes32) { blobs.insert(BlobIndex.Key(id)) }

    /// Every blob the index places in one of `packs`.
    mutating func insert(packs: Set<Bytes32>, from index: BlobIndex) {
        guard !packs.isEmpty else { return }
        blobs.formUnion(index.keys(inPacks: packs))
    }

    public func contains(_ id: Bytes32) -> Bool { blobs.contains(BlobIndex.Key(id)) }

    func contains(hex: String) -> Bool {
        guard let id = Bytes32(hex: hex) else { return true }
        return contains(id)
    }

    /// The items of one snapshot that lose data: files with a damaged content blob, and
    /// directories whose tree blob is damaged (everything below them is lost), as paths.
    /// `memo` carries per-tree answers between snapshots, which share most trees.
    public func affectedPaths(
        snapshot: Snapshot, repository: Repository, memo: inout [String: [String]]
    ) -> [String] {
        affected(tree: snapshot.tree, repository: repository, memo: &memo)
    }

    private func affected(tree id: String, repository: Repository, memo: inout [String: [String]]) -> [String] {
        if let known = memo[id] { return known }
        var out: [String] = []
        if contains(hex: id) {
            out = ["/ (directory lost: its tree blob is damaged)"]
        } else if let (_, parts) = try? repository.loadTreeAndParts(id), parts.contains(where: { contains(hex: $0) }) {
            out = ["/ (directory lost: a part of its tree blob is damaged)"]
        } else if let tree = try? repository.loadTree(id) {
            for node in tree.nodes {
                let path = "/" + node.name
                if let content = node.content, content.contains(where: { contains(hex: $0) }) {
                    out.append(path)
                }
                if let sub = node.subtree {
                    out += affected(tree: sub, repository: repository, memo: &memo).map { path + ($0.hasPrefix("/ (") ? $0.dropFirst(1) : Substring($0)) }
                }
            }
        } else {
            out = ["/ (directory lost: its tree cannot be read)"]
        }
        memo[id] = out
        return out
    }
}

extension BlobIndex {
    /// The keys of every blob stored in one of `packs`.
    func keys(inPacks packs: Set<Bytes32>) -> Set<Key> {
        compact()
        let numbers = Set(self.packs.indices.filter { packs.contains(self.packs[$0].id) }.map(UInt32.init))
        var out = Set<Key>()
        for e in sorted where numbers.contains(e.pack) { out.insert(e.key) }
        return out
    }
}
