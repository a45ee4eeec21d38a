import Foundation

/// `vaultline check`: the repository's structure, and with `readData` every byte of it.
///
/// Structure: every index file opens; every pack the index names exists and is long enough;
/// every snapshot opens, every tree it reaches decodes, and every blob it references is indexed.
/// Data: every pack's SHA-256 equals its name, its header authenticates, and every blob
/// authenticates, decompresses and hashes (HMAC) to its id.
public final class Checker {
    public struct Report: Codable, Sendable {
        public var errors: [String] = []
        public var warnings: [String] = []
        public var indexFiles = 0
        public var packs = 0
        public var snapshots = 0
        public var trees = 0
        public var blobs = 0
        public var readData = false
        public var bytesRead: UInt64 = 0
        public var damagedPacks: [String] = []
        public var ok: Bool { errors.isEmpty }
    }

    let repository: Repository
    public private(set) var report = Report()

    public init(repository: Repository) { self.repository = repository }

    public func run(readData: Bool) throws -> Report {
        report = Report()
        report.readData = readData
        let backend = repository.backend
        // Index files, one by one so that one damaged file is named and the rest still count.
        let index = BlobIndex()
        let indexNames = try backend.list(.index).sorted()
        for name in indexNames {
            do {
                for pack in try repository.readIndexFile(name) {
                    index.add(pack: pack.id, salt: pack.salt, entries: pack.entries)
                }
                report.indexFiles += 1
            } catch let e as VaultlineError {
                report.errors.append("index/\(name): \(e.message)")
            }
        }
        index.compact()

        // Packs named by the index exist and are long enough.
        let onDisk = Set(try backend.list(.pack))
        var indexed = Set<String>()
        for (id, _, _) in index.packIDs {
            let name = id.hex
            indexed.insert(name)
            if !onDisk.contains(name) {
                report.errors.append("packs/\(name): missing, but the index references it")
                report.damagedPacks.append(name)
            }
        }
        for name in onDisk.subtracting(indexed).sorted() {
            report.warnings.append("packs/\(name): not referenced by any index file (run `vaultline repair index`)")
        }
        report.packs = onDisk.count

        // Snapshots and the trees they reach, through the index of the readable index files.
        repository.index = index
        var seenTrees = Set<String>()
        for name in try backend.list(.snapshot).sorted() {
            do {
                let snap = try repository.loadSnapshot(name)
                report.snapshots += 1
                try walk(tree: snap.tree, path: "", snapshot: name, seen: &seenTrees)
            } catch let e as VaultlineError {
                report.errors.append("snapshots/\(name): \(e.message)")
            }
        }
        report.trees = seenTrees.count

        if readData {
            for name in onDisk.sorted() { checkPackData(name) }
        }
        return report
    }

    private func walk(tree id: String, path: String, snapshot: String, seen: inout Set<String>) throws {
        guard seen.insert(id).inserted else { return }
        let tree: Tree
        do {
            tree = try repository.loadTree(id)
        } catch let e as VaultlineError {
            report.errors.append("snapshot \(snapshot.prefix(8)) \(path.isEmpty ? "/" : path): tree \(id.prefix(12)): \(e.message)")
            return
        }
        for node in tree.nodes {
            let p = path + "/" + node.name
            for blob in node.content ?? [] {
                report.blobs += 1
                guard let bid = Bytes32(hex: blob), repository.index.contains(bid) else {
                    report.errors.append("snapshot \(snapshot.prefix(8)) \(p): data blob \(blob.prefix(12)) is not in the index")
                    continue
                }
            }
            if let sub = node.subtree { try walk(tree: sub, path: p, snapshot: snapshot, seen: &seen) }
        }
    }

    private func checkPackData(_ name: String) {
        let object = "packs/\(name)"
        do {
            let bytes = try repository.backend.read(.pack, name)
            report.bytesRead += UInt64(bytes.count)
            guard SHA256.hash(bytes).hex == name else {
                report.errors.append("\(object): content does not match its name (SHA-256 differs)")
                report.damagedPacks.append(name)
                return
            }
            let size = Int64(bytes.count)
            let (salt, entries) = try PackReader.parse(
                trailer: Array(bytes[(bytes.count - PackFormat.trailerSize)...]), size: size, object: object,
                key: repository.key) { off, len in Array(bytes[Int(off)..<(Int(off) + len)]) }
            let opener = BlobOpener(key: repository.key)
            try bytes.withUnsafeBytes { raw in
                for e in entries {
                    let sealed = UnsafeRawBufferPointer(rebasing: raw[Int(e.offset)..<Int(e.offset + e.storedLength)])
                    let plain = try opener.open(
                        sealed: sealed, id: e.id, salt: salt, offset: e.offset, codec: e.codec,
                        rawLength: Int(e.rawLength), object: object)
                    let actual = plain.withUnsafeBytes { repository.key.blobID($0) }
                    guard actual == e.id else {
                        throw VaultlineError(.corrupt, "blob \(e.id.hex) content hashes to another id", object: object)
                    }
                }
            }
        } catch let e as VaultlineError {
            report.errors.append("\(object): \(e.message)")
            report.damagedPacks.append(name)
        } catch {
            report.errors.append("\(object): \(error)")
            report.damagedPacks.append(name)
        }
    }
}
