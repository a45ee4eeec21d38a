import Foundation

extension Repository {
    /// Every blob id (data and tree) reachable from `tree`, reading trees through the loaded
    /// index. Throws when any tree cannot be read: callers that delete data must not guess.
    func reachableBlobs(from tree: String, into blobs: inout Set<Bytes32>) throws {
        guard let id = Bytes32(hex: tree) else { throw VaultlineError(.corrupt, "malformed tree id", object: tree) }
        guard blobs.insert(id).inserted else { return }
        let (loaded, parts) = try loadTreeAndParts(tree)
        for part in parts {
            guard let b = Bytes32(hex: part) else { throw VaultlineError(.corrupt, "malformed tree part id", object: tree) }
            blobs.insert(b)
        }
        for node in loaded.nodes {
            for hex in node.content ?? [] {
                guard let b = Bytes32(hex: hex) else { throw VaultlineError(.corrupt, "malformed blob id in tree", object: tree) }
                blobs.insert(b)
            }
            if let sub = node.subtree { try reachableBlobs(from: sub, into: &blobs) }
        }
    }

    /// Called after a snapshot is written. A prune that ran while this process held its index
    /// may have taken packs this snapshot uses out of the index (they were unreferenced when the
    /// prune looked; the packs themselves stay until every backup older than the prune's plan has
    /// finished). If the index files this process loaded are all still there, nothing happened and
    /// this costs one directory listing; otherwise every blob of the snapshot is looked up in the
    /// current index, and the packs of those missing are indexed again. Returns those packs.
    @discardableResult
    public func reindexAfterConcurrentPrune(snapshotTree tree: String) throws -> [String] {
        let current = try backend.list(.index)
        guard !Set(indexFiles).isSubset(of: Set(current)) else { return [] }
        let fresh = BlobIndex()
        for name in current {
            for pack in try readIndexFile(name) { fresh.add(pack: pack.id, salt: pack.salt, entries: pack.entries) }
        }
        fresh.compact()
        var blobs = Set<Bytes32>()
        try reachableBlobs(from: tree, into: &blobs)
        var packs = Set<Bytes32>()
        for id in blobs where !fresh.contains(id) {
            guard let loc = index.lookup(id) else {
                throw VaultlineError(.corrupt, "blob \(id.hex) of the new snapshot is in no index", object: "snapshot tree \(tree)")
            }
            packs.insert(loc.pack)
        }
        guard !packs.isEmpty else { return [] }
        var entries: [IndexFile.Pack] = []
        for pack in packs.sorted() {
            let (salt, e) = try PackReader.readHeader(backend: backend, pack: pack.hex, key: key)
            entries.append(IndexFile.Pack(id: pack, salt: salt, entries: e))
        }
        try writeIndexFile(entries)
        return packs.map(\.hex).sorted()
    }
}
