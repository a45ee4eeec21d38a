import Foundation

extension Repository {
    /// Every file the repository's snapshots need, by kind: the snapshots themselves, the packs
    /// holding any blob they reach, every index file, key slot and the config. What a
    /// retention-extending job keeps locked (docs/OPERATIONS.md, "Site B as a bucket").
    /// Loads the index; throws when a tree cannot be read (no guessing for locks either).
    public func liveFiles() throws -> [FileKind: Set<String>] {
        try loadIndex()
        var blobs = Set<Bytes32>()
        var snapshots = Set<String>()
        for (name, snapshot) in try listSnapshots() {
            snapshots.insert(name)
            try reachableBlobs(from: snapshot.tree, into: &blobs)
        }
        var packs = Set<String>()
        for blob in blobs {
            guard let location = index.lookup(blob) else {
                throw VaultlineError(.corrupt, "a snapshot needs a blob that no index file names", object: blob.hex)
            }
            packs.insert(location.pack.hex)
        }
        return [
            .config: ["config"], .key: Set(try backend.list(.key)), .index: Set(indexFiles),
            .snapshot: snapshots, .pack: packs,
        ]
    }
}
