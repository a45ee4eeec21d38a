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
/// A local cache, not part of the repository: one line per item, `key TAB size TAB mtimeNs TAB
/// blob ids joined by commas`, appended as items are stored, removed once the snapshot is
/// committed. Losing it costs downloads, never data.
final class DownloadJournal: Sendable {
    struct Stored: Sendable {
        var size: UInt64
        var mtimeNs: Int64?
        var content: [String]
    }

    let path: String
    /// What the earlier run stored, by key: on disk past a small cache (a killed first backup of
    /// a large tenant leaves a line per item).
    private let entries: SpillTable?
    private let fd: Mutex<Int32>

    /// Opens (creating) the journal at `path` and reads what an earlier, unfinished run left.
    init(path: String) {
        self.path = path
        var loaded: SpillTable?
        if let bytes = try? FileSystem.readFile(path), let table = try? SpillTable(what: path) {
            var lines = bytes.split(separator: 10, omittingEmptySubsequences: false)
            // Only lines ended by a newline count: a kill mid-write can tear the last one, and a
            // torn line could still parse (a blob list cut at a comma).
            lines.removeLast()
            for line in lines {
                let f = line.split(separator: 9, maxSplits: 1, omittingEmptySubsequences: false)
                guard f.count == 2, Self.parse(f[1]) != nil else { continue }
                try? table.put(.init(id: String(decoding: f[0], as: UTF8.self), name: "", body: Array(f[1])))
            }
            loaded = table
        }
        entries = loaded
        let dir = (path as NSString).deletingLastPathComponent
        try? FileSystem.makeDirectories(dir, mode: 0o700)
        fd = Mutex(open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600))
    }

    /// The default place: `$XDG_CACHE_HOME/vaultline/<repository id>/m365-journal` (or
    /// `~/.cache/...`, or the temporary directory); a run for some users only has its own,
    /// `m365-journal-<16 hex of their sorted UPNs' SHA-256>`, so that runs splitting a tenant on
    /// one machine do not share (and remove) each other's.
    /// One journal per repository and scope (the run's tree paths; `/` for the whole tenant):
    /// runs of other users or services, on one machine at once, each have their own.
    static func defaultPath(repositoryID: String, scope: [String] = ["/"]) -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? env["HOME"].map { $0 + "/.cache" } ?? NSTemporaryDirectory()
        var name = "m365-journal"
        if scope != ["/"] {
            name += "-" + SHA256.hash(Array(scope.sorted().joined(separator: "\n").utf8)).hex.prefix(16)
        }
        return base + "/vaultline/" + repositoryID + "/" + name
    }

    var count: Int { (try? entries?.count) ?? 0 }

    /// `size TAB mtimeNs TAB blob ids joined by commas`.
    private static func parse(_ line: ArraySlice<UInt8>) -> Stored? {
        let f = line.split(separator: 9, omittingEmptySubsequences: false)
        guard f.count == 3, let size = UInt64(String(decoding: f[0], as: UTF8.self)) else { return nil }
        let ids = f[2].split(separator: UInt8(ascii: ",")).map { String(decoding: $0, as: UTF8.self) }
        guard ids.allSatisfy({ $0.utf8.count == 64 }) else { return nil }
        return Stored(size: size, mtimeNs: Int64(String(decoding: f[1], as: UTF8.self)), content: ids)
    }

    /// What an earlier unfinished run stored for `key`, if all its blobs are durable.
    func reusable(_ key: String, index: BlobIndex) -> Stored? {
        guard let body = (try? entries?.get(key))??.body, let stored = Self.parse(body[...]) else { return nil }
        for id in stored.content {
            guard let b = Bytes32(hex: id), index.contains(b) else { return nil }
        }
        return stored
    }

    func record(_ key: String, _ node: TreeNode) {
        // Keys are Graph ids and versions: no tabs or newlines; blob ids are hex.
        let line = "\(key)\t\(node.size ?? 0)\t\(node.mtimeNs.map(String.init) ?? "")\t\((node.content ?? []).joined(separator: ","))\n"
        fd.withLock { fd in
            guard fd >= 0 else { return }
            var bytes = Array(line.utf8)
            _ = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
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
