/// Stores one directory's tree from its nodes given in name order, holding at most one part in
/// memory: a directory of more than ``maxPartNodes`` nodes (a mail folder of a million
/// messages) is stored as parts, each a tree of its own, and a head tree listing them
/// (docs/FORMAT.md, "Large directories").
///
/// Parts end after a node whose name hashes to a boundary (one in ``averagePartNodes``), or at
/// ``maxPartNodes``: boundaries follow the names, not their positions, so an item added or
/// removed changes one part and the rest deduplicate with the previous snapshot's.
public struct TreeWriter {
    public static let maxPartNodes = 4096
    public static let averagePartNodes = 1024

    private let store: (Tree) throws -> Bytes32
    private var pending: [TreeNode] = []
    private var parts: [String] = []
    /// Nodes added so far.
    public private(set) var count = 0

    /// `store` stores one tree blob and returns its id.
    public init(store: @escaping (Tree) throws -> Bytes32) {
        self.store = store
    }

    /// Adds the next node (names in byte order; a node out of order lands in the part that
    /// holds its neighbours, and readers still see every node).
    public mutating func add(_ node: TreeNode) throws {
        pending.append(node)
        count += 1
        if parts.isEmpty {
            guard pending.count > Self.maxPartNodes else { return }
            // The directory is large: cut what is held by the same rule as what follows.
            var start = 0
            for i in pending.indices where Self.endsPart(pending[i].name, length: i + 1 - start) {
                parts.append(try store(Tree(nodes: Array(pending[start...i]))).hex)
                start = i + 1
            }
            pending.removeFirst(start)
        } else if Self.endsPart(node.name, length: pending.count) {
            parts.append(try store(Tree(nodes: pending)).hex)
            pending.removeAll(keepingCapacity: true)
        }
    }

    /// Stores what is left and the head; returns the directory's tree id.
    public mutating func finish() throws -> Bytes32 {
        if parts.isEmpty { return try store(Tree(nodes: pending)) }
        if !pending.isEmpty { parts.append(try store(Tree(nodes: pending)).hex) }
        pending = []
        return try store(Tree(parts: parts))
    }

    /// Stores `nodes` (any order) as one directory.
    public static func write(_ nodes: [TreeNode], store: @escaping (Tree) throws -> Bytes32) throws -> Bytes32 {
        var writer = TreeWriter(store: store)
        for node in Tree(nodes: nodes).nodes { try writer.add(node) }
        return try writer.finish()
    }

    /// True when a part ends after the node named `name`, its `length`th.
    static func endsPart(_ name: String, length: Int) -> Bool {
        if length >= maxPartNodes { return true }
        // FNV-1a 64 of the name, then the SplitMix64 finalizer (FNV's low bits alone are weak).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return h % UInt64(averagePartNodes) == 0
    }
}
