import Foundation
import Synchronization
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Items a run has stored but not yet committed in a snapshot, so that a run killed part way does
/// not download them again: the next run takes an item's node from here when its Graph version
/// (changeKey or cTag) is the same and every one of its blobs is in the repository's index,
/// which holds only blobs whose packs are durable.
///
/// A local cache, not part of the repository: one JSON object per line (`{"key", "node"}`),
/// appended as items are stored, removed once the snapshot is committed. Losing it costs
/// downloads, never data.
final class DownloadJournal: Sendable {
    private struct Line: Codable {
        var key: String
        var node: TreeNode
    }

    let path: String
    private let entries: [String: TreeNode]
    private let fd: Mutex<Int32>

    /// Opens (creating) the journal at `path` and reads what an earlier, unfinished run left.
    init(path: String) {
        self.path = path
        var loaded: [String: TreeNode] = [:]
        if let bytes = try? FileSystem.readFile(path) {
            let decoder = JSONDecoder()
            for line in bytes.split(separator: 10) {
                // A torn last line (the run was killed mid-write) is skipped.
                if let l = try? decoder.decode(Line.self, from: Data(line)) { loaded[l.key] = l.node }
            }
        }
        entries = loaded
        let dir = (path as NSString).deletingLastPathComponent
        try? FileSystem.makeDirectories(dir, mode: 0o700)
        fd = Mutex(open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600))
    }

    /// The default place: `$XDG_CACHE_HOME/vaultline/<repository id>/m365-journal` (or
    /// `~/.cache/...`, or the temporary directory).
    static func defaultPath(repositoryID: String) -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? env["HOME"].map { $0 + "/.cache" } ?? NSTemporaryDirectory()
        return base + "/vaultline/" + repositoryID + "/m365-journal"
    }

    var count: Int { entries.count }

    /// A node stored by an earlier unfinished run for `key`, if all its blobs are durable.
    func reusable(_ key: String, index: BlobIndex) -> TreeNode? {
        guard let node = entries[key] else { return nil }
        for id in node.content ?? [] {
            guard let b = Bytes32(hex: id), index.contains(b) else { return nil }
        }
        return node
    }

    func record(_ key: String, _ node: TreeNode) {
        guard var bytes = try? JSONEncoder().encode(Line(key: key, node: node)) else { return }
        bytes.append(10)
        fd.withLock { fd in
            guard fd >= 0 else { return }
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// The run committed its snapshot: nothing here is needed any more.
    func remove() {
        fd.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
        unlink(path)
    }

    deinit { fd.withLock { if $0 >= 0 { close($0) } } }
}
