import Foundation

extension Tree {
    /// The directory nodes of an encoded tree, decoded without its files: for walks that need
    /// only the hierarchy (a Graph backup finding the parent snapshot's mail folders, whose trees
    /// also hold every message). The JSON is still parsed whole; the file nodes are not built.
    public static func directories(_ bytes: [UInt8], id: String) throws -> [TreeNode] {
        try directoriesAndParts(bytes, id: id).nodes
    }

    /// ``directories(_:id:)`` and the tree's parts, if it is the head of a large directory.
    static func directoriesAndParts(_ bytes: [UInt8], id: String) throws -> (nodes: [TreeNode], parts: [String]) {
        do {
            let d = try JSONDecoder().decode(DirectoriesOnly.self, from: Data(bytes))
            return (d.nodes, d.parts ?? [])
        } catch {
            throw VaultlineError(.corrupt, "cannot decode the tree's directories", object: "tree \(id)", cause: error)
        }
    }
}

extension Repository {
    /// ``Tree/directories(_:id:)`` of a stored tree.
    /// A directory stored as parts is read part by part. `opener`: as for ``loadTree(_:using:)``.
    public func loadTreeDirectories(_ id: String, using opener: BlobOpener? = nil) throws -> [TreeNode] {
        guard let opener else { return try withSharedOpener { try loadTreeDirectories(id, using: $0) } }
        let (nodes, parts) = try Tree.directoriesAndParts(try readBlob(treeID(id), using: opener), id: id)
        var out = nodes
        for part in parts {
            let (more, nested) = try Tree.directoriesAndParts(try readBlob(treeID(part), using: opener), id: part)
            guard nested.isEmpty else { throw VaultlineError(.corrupt, "a part of tree \(id) has parts of its own", object: "tree \(part)") }
            out += more
        }
        return out
    }

}

private struct DirectoriesOnly: Decodable {
    var nodes: [TreeNode] = []
    var parts: [String]?

    private enum Keys: String, CodingKey { case nodes, parts }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        parts = try c.decodeIfPresent([String].self, forKey: .parts)
        var list = try c.nestedUnkeyedContainer(forKey: .nodes)
        while !list.isAtEnd {
            if let node = try list.decode(DirectoryNode.self).node { nodes.append(node) }
        }
    }
}

/// One node of a tree: built only when it is a directory.
private struct DirectoryNode: Decodable {
    var node: TreeNode?

    private enum Keys: String, CodingKey { case name, kind, mode, mtimeNs, subtree, metadata, damaged }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        guard try c.decode(TreeNode.Kind.self, forKey: .kind) == .dir else { return }
        var n = TreeNode(name: try c.decode(String.self, forKey: .name), kind: .dir)
        n.mode = try c.decodeIfPresent(UInt32.self, forKey: .mode)
        n.mtimeNs = try c.decodeIfPresent(Int64.self, forKey: .mtimeNs)
        n.subtree = try c.decodeIfPresent(String.self, forKey: .subtree)
        n.metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata)
        n.damaged = try c.decodeIfPresent(String.self, forKey: .damaged)
        node = n
    }
}
