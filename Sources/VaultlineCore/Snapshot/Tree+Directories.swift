import Foundation

extension Tree {
    /// The directory nodes of an encoded tree, decoded without its files: for walks that need
    /// only the hierarchy (a Graph backup finding the parent snapshot's mail folders, whose trees
    /// also hold every message). The JSON is still parsed whole; the file nodes are not built.
    public static func directories(_ bytes: [UInt8], id: String) throws -> [TreeNode] {
        do {
            return try JSONDecoder().decode(DirectoriesOnly.self, from: Data(bytes)).nodes
        } catch {
            throw VaultlineError(.corrupt, "cannot decode the tree's directories", object: "tree \(id)", cause: error)
        }
    }
}

extension Repository {
    /// ``Tree/directories(_:id:)`` of a stored tree.
    public func loadTreeDirectories(_ id: String) throws -> [TreeNode] {
        guard let bid = Bytes32(hex: id) else { throw VaultlineError(.corrupt, "malformed tree id", object: id) }
        return try Tree.directories(try readBlob(bid), id: id)
    }
}

private struct DirectoriesOnly: Decodable {
    var nodes: [TreeNode] = []

    private enum Keys: String, CodingKey { case nodes }

    init(from decoder: any Decoder) throws {
        var list = try decoder.container(keyedBy: Keys.self).nestedUnkeyedContainer(forKey: .nodes)
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
