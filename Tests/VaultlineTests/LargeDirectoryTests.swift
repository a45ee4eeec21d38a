import Testing
@testable import VaultlineCore
@testable import VaultlineGraph
#if canImport(Glibc)
import Glibc
#endif

/// Directories too large to hold as one tree blob (stored as parts) and collections too large
/// to hold in memory (spilled to disk).
@Suite struct LargeDirectoryTests {
    static func fileNames(_ n: Int, seed: UInt64) -> [String] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in "m-" + String(rng.next(), radix: 36) + ".eml" }
    }

    @Test func aLargeDirectoryIsStoredInPartsRestoredCheckedAndKeptByPrune() throws {
        let dir = TemporaryDirectory()
        let repo = try Fixtures.repository(in: dir)
        let names = Self.fileNames(TreeWriter.maxPartNodes * 2 + 100, seed: 11)
        #expect(mkdir(dir.path + "/src", 0o755) == 0 && mkdir(dir.path + "/src/big", 0o755) == 0)
        for (i, name) in names.enumerated() { try Fixtures.writeFile(dir.path + "/src/big/" + name, Array("\(i) \(name)\n".utf8)) }
        let first = try Fixtures.backup(repo, [dir.path + "/src"])

        // The directory's stored tree is a head listing parts; read, it is the whole directory.
        func bigTree(_ snapshot: String) throws -> (head: Tree, whole: Tree) {
            try repo.loadIndex()
            let root = try repo.loadTree(try repo.loadSnapshot(snapshot).tree)
            let src = try repo.loadTree(try #require(root.node(named: "src")?.subtree))
            let id = try #require(src.node(named: "big")?.subtree)
            return (try repo.loadStoredTree(id), try repo.loadTree(id))
        }
        let (head, whole) = try bigTree(first.snapshotID)
        let parts = try #require(head.parts)
        #expect(head.nodes.isEmpty && parts.count >= 3, "\(parts.count) parts")
        #expect(whole.nodes.map(\.name) == names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        for part in parts { #expect(try repo.loadTreePart(part, of: "big").nodes.count <= TreeWriter.maxPartNodes) }

        // One file added changes one part; the others are the previous snapshot's.
        try Fixtures.writeFile(dir.path + "/src/big/m-added.eml", Array("new\n".utf8))
        let second = try Fixtures.backup(repo, [dir.path + "/src"])
        let parts2 = try #require(try bigTree(second.snapshotID).head.parts)
        #expect(Set(parts2).subtracting(parts).count <= 2, "\(Set(parts2).subtracting(parts).count) parts of \(parts2.count) changed")

        try Restorer(repository: repo).restore(snapshotID: second.snapshotID, path: "/", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src", dir.path + "/out/src")
        let check = try Checker(repository: repo).run(readData: true)
        #expect(check.ok && check.warnings.isEmpty, "\(check.errors) \(check.warnings)")

        // Forget the first snapshot and prune twice (mark, then delete): the second's parts stay.
        var policy = ForgetPolicy()
        policy.last = 1
        _ = try repo.forget(policy: policy, grouping: .source, dryRun: false)
        var options = Pruner.Options()
        options.grace = 0
        _ = try Pruner(repository: repo, options: options).run()
        _ = try Pruner(repository: repo, options: options).run()
        let after = try Checker(repository: repo).run(readData: true)
        #expect(after.ok && after.warnings.isEmpty, "\(after.errors) \(after.warnings)")
        try TemporaryDirectory.remove(dir.path + "/out")
        try Restorer(repository: repo).restore(snapshotID: second.snapshotID, path: "/src/big", target: dir.path + "/out")
        try DirectoryComparison.compare(dir.path + "/src/big", dir.path + "/out")
    }

    @Test func partsEndWhereTheNamesSayWhateverCameBefore() throws {
        // The same nodes give the same parts whether the writer switched to parts early or late.
        var stored: [Tree] = []
        func write(_ names: [String]) throws -> [Tree] {
            stored = []
            var writer = TreeWriter { tree in stored.append(tree); return SHA256.hash(try tree.encoded()) }
            for name in names.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) { try writer.add(TreeNode(name: name, kind: .file)) }
            _ = try writer.finish()
            return stored
        }
        let names = Self.fileNames(20_000, seed: 3)
        let all = try write(names)
        let head = try #require(all.last)
        #expect(head.parts?.count == all.count - 1)
        #expect(all.dropLast().allSatisfy { $0.parts == nil && !$0.nodes.isEmpty && $0.nodes.count <= TreeWriter.maxPartNodes })
        let sizes = all.dropLast().map(\.nodes.count)
        #expect(sizes.reduce(0, +) == names.count)
        // Removing the first nodes leaves every part after the first boundary as it was.
        let fewer = try write(Array(names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.dropFirst(50)))
        let shared = Set(fewer.dropLast().map { $0.nodes.map(\.name) }).intersection(all.dropLast().map { $0.nodes.map(\.name) })
        #expect(shared.count >= sizes.count - 2, "\(shared.count) of \(sizes.count) parts shared")
        // A small directory stays one tree.
        let small = try write(Array(names.prefix(TreeWriter.maxPartNodes)))
        #expect(small.count == 1 && small[0].parts == nil)
    }

    @Test func aSpillTableKeepsRowsOnDiskAndReadsThemBackByParentInNameOrder() throws {
        let table = try SpillTable(what: "test", cacheBytes: 64 << 10)
        var rng = SplitMix64(seed: 5)
        let count = 30_000
        var expected: [String: SpillTable.Row] = [:]
        for i in 0..<count {
            let id = "id-\(rng.next())"
            let body = (0..<(Int(rng.next() % 600))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let row = SpillTable.Row(id: id, parent: "p\(i % 3)", name: "n\(rng.next() % 100_000)", tag: "t\(i)",
                                     isFolder: i % 7 == 0, flags: i % 2, body: i % 11 == 0 ? nil : body)
            try table.put(row)
            expected[id] = row
        }
        #expect(try table.count == count)
        for (id, row) in expected.prefix(200) { #expect(try table.get(id) == row) }
        #expect(try table.get("absent") == nil)
        // Children in name order, each parent's own.
        var seen = 0
        for p in ["p0", "p1", "p2"] {
            var last: String?
            try table.children(of: p) { row in
                #expect(row.parent == p && row == expected[row.id])
                if let last { #expect(!row.name.utf8.lexicographicallyPrecedes(last.utf8)) }
                last = row.name
                seen += 1
            }
        }
        #expect(seen == count)
        // Flags: marked rows survive, the others go.
        let flagged = try table.ids(with: 1)
        #expect(flagged.count == count / 2)
        let some = Array(expected.keys.prefix(10))
        for id in some { try table.addFlags(2, to: id) }
        for id in flagged { try table.addFlags(2, to: id) }
        try table.remove(flagged[0])
        try table.removeAll(without: 2)
        #expect(try table.count == Set(flagged.dropFirst() + some).subtracting([flagged[0]]).count)
    }
}

/// The spill table's encoding of tree nodes (VaultlineGraph's ItemSpill).
@Suite struct SpilledNodeTests {
    @Test func everyFieldOfANodeComesBackAndDamagedBytesAreRefused() throws {
        var full = TreeNode(name: "Résumé 📎.eml", kind: .file)
        full.mode = 0o644
        full.mtimeNs = -1_234_567_890_123
        full.uid = 1000
        full.gid = 100
        full.inode = UInt64.max
        full.device = 42
        full.size = 1 << 40
        full.content = [String(repeating: "ab", count: 32), String(repeating: "cd", count: 32)]
        full.subtree = String(repeating: "ef", count: 32)
        full.linkTarget = "../x"
        full.metadata = ["graph.id": "AAMk/1+=", "graph.item": String(repeating: "{\"k\": \"v\"}", count: 300), "": ""]
        full.damaged = "1 of 2 content blobs lost"
        var empty = TreeNode(name: "", kind: .symlink)
        empty.content = []
        empty.metadata = [:]
        for node in [full, empty, TreeNode(name: "d", kind: .dir)] {
            #expect(try VaultlineGraph.NodeCoding.decode(VaultlineGraph.NodeCoding.encode(node)) == node)
        }
        let bytes = VaultlineGraph.NodeCoding.encode(full)
        for cut in [0, 1, 5, bytes.count / 2, bytes.count - 1] {
            #expect(throws: (any Error).self) { try VaultlineGraph.NodeCoding.decode(Array(bytes.prefix(cut))) }
        }
    }
}
