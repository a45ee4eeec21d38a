import Foundation
import VaultlineCore

/// A run over several users whose newest states are in different snapshots (a coordinator's
/// batch of tasks, each last run by whichever worker held it): ``M365Backup/Options/userParents``.
/// Each user's delta links and directory come from that user's own parent, so every link is
/// applied to the tree it was issued beside, as with one parent.
extension M365Backup {
    struct ComposedParent {
        var state: M365State
        /// A root holding `users/<upn>` for each user that has a parent directory; the `users`
        /// level is in ``levels`` (it is not stored).
        var root: Tree
        var levels: [String: Tree]
        /// Each user's directory tree id in its parent, by `safeName(upn)` lowercased.
        var userTrees: [String: String]
    }

    static let composedUsersLevel = "composed:users"

    /// The name a user or site has in the tree (`/users/<name>`, `/sites/<name>`).
    public static func treeName(_ name: String) -> String { safeName(name) }

    func composeParent(_ parents: [String: String], graphBase: String) throws -> ComposedParent {
        var state = M365State(graphBase: graphBase)
        var userNodes: [TreeNode] = []
        var userTrees: [String: String] = [:]
        var loaded: [String: (state: M365State?, users: Tree?)] = [:]
        for (upn, snapshotID) in parents.sorted(by: { $0.key < $1.key }) {
            if loaded[snapshotID] == nil {
                let snapshot = try repository.loadSnapshot(snapshotID)
                let decoded = M365State.decode(snapshot.sourceState).flatMap { $0.graphBase == graphBase ? $0 : nil }
                let root = try repository.loadTree(snapshot.tree)
                let users = try root.node(named: "users").flatMap(\.subtree).map { try repository.loadTree($0) }
                loaded[snapshotID] = (decoded, users)
            }
            guard let parent = loaded[snapshotID] else { continue }
            let wanted = upn.lowercased()
            if let (id, user) = parent.state?.users.first(where: { $0.value.upn.lowercased() == wanted }) { state.users[id] = user }
            if let node = parent.users?.nodes.first(where: { $0.kind == .dir && $0.name.lowercased() == safeName(wanted) }), let tree = node.subtree {
                userNodes.append(node)
                userTrees[safeName(wanted)] = tree
            }
        }
        let level = Tree(nodes: userNodes)
        var usersNode = TreeNode(name: "users", kind: .dir)
        usersNode.subtree = Self.composedUsersLevel
        return ComposedParent(state: state, root: Tree(nodes: [usersNode]), levels: [Self.composedUsersLevel: level], userTrees: userTrees)
    }

    /// The users of a run over composed parents whose part of the snapshot is not what their
    /// parent held: another directory, other items to try again or other errors. Their tasks
    /// advanced; the others' newest state is still their parent's.
    static func advancedUsers(_ usersDir: DirBuilder, _ state: M365State, errors: [Snapshot.ItemError], over parent: ComposedParent) -> Set<String> {
        var out = Set<String>()
        let parentRetries = parent.state.retries, retries = state.retries
        for (id, user) in state.users {
            let name = safeName(user.upn.lowercased())
            let tree = usersDir.dirs.first { $0.key.lowercased() == name }?.value.stored?.tree.hex
            if tree == nil || tree != parent.userTrees[name] || retries["user:" + id] != parentRetries["user:" + id]
                || errors.contains(where: { $0.path.lowercased().hasPrefix("users/" + name + "/") }) {
                out.insert(user.upn.lowercased())
            }
        }
        return out
    }
}
