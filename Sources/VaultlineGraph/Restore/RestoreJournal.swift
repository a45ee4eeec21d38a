import Foundation
import Synchronization
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// The durable record of one restore job into Microsoft 365, so that a job killed at any point
/// (`kill -9`, a lost connection, a reboot) goes on where it stopped without creating anything
/// twice: a record is written and made durable (fsync) before each request that creates
/// something, and after it succeeds.
///
/// A local file, one JSON object per line, at
/// `$XDG_CACHE_HOME/vaultline/<repository id>/restore/<job>.journal`. Only lines ended by a
/// newline count (a kill can tear the last one). Records (`op`):
/// - `job`: the job's destination folder name, written first: the same command run again
///   restores into the same folder.
/// - `folder` path id: a folder that exists in the target.
/// - `upload` path: a file's upload is about to start (its session may exist from here on).
/// - `session` path url: the upload session's URL (pre-authenticated; the file is private).
/// - `done` path id: the file is in the target.
/// - `series` path: a restored series' occurrences were made as backed up (exceptions
///   changed, cancellations deleted).
/// Removed when the job ends with nothing failed.
final class RestoreJournal: Sendable {
    struct State: Sendable {
        var folderName: String?
        var folders: [String: String] = [:]
        var sessions: [String: String] = [:]
        var done: [String: String] = [:]
        /// Uploads started but neither done nor with a session: a session may exist that the
        /// journal does not name (the kill came between its creation and its record).
        var started: Set<String> = []
        /// Series whose occurrences were reconciled.
        var reconciled: Set<String> = []
    }

    let path: String
    let loaded: State
    private let fd: Mutex<Int32>

    /// Opens (creating) the journal of `job` and reads what an earlier run of it left.
    init(directory: String, job: String) throws {
        path = directory + "/" + job + ".journal"
        try FileSystem.makeDirectories(directory, mode: 0o700)
        var state = State()
        if let bytes = try? FileSystem.readFile(path) {
            var lines = bytes.split(separator: 10, omittingEmptySubsequences: false)
            lines.removeLast()
            for line in lines {
                guard let record = try? JSONValue.parse(line), let op = record["op"]?.string else { continue }
                let p = record["path"]?.string ?? ""
                switch op {
                case "job": state.folderName = record["folder"]?.string
                case "folder": state.folders[p] = record["id"]?.string
                case "upload": state.started.insert(p)
                case "session": state.sessions[p] = record["url"]?.string
                case "series": state.reconciled.insert(p)
                case "done":
                    state.done[p] = record["id"]?.string ?? ""
                    state.sessions[p] = nil
                default: continue
                }
            }
        }
        state.started.subtract(state.done.keys)
        loaded = state
        let raw = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard raw >= 0 else { throw VaultlineError(.io, "cannot open the restore journal: \(String(cString: strerror(errno)))", object: path) }
        fd = Mutex(raw)
    }

    /// `$XDG_CACHE_HOME/vaultline/<repository id>/restore` (or `~/.cache/...`).
    static func defaultDirectory(repositoryID: String) -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? env["HOME"].map { $0 + "/.cache" } ?? NSTemporaryDirectory()
        return base + "/vaultline/" + repositoryID + "/restore"
    }

    /// Appends a record and makes it durable before returning.
    func record(_ op: String, _ fields: [String: String]) throws {
        var object = fields.mapValues { JSONValue.string($0) }
        object["op"] = .string(op)
        let line = JSONValue.object(object).encoded() + [10]
        try fd.withLock { fd in
            let written = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard written == line.count, fsync(fd) == 0 else {
                throw VaultlineError(.io, "cannot write the restore journal: \(String(cString: strerror(errno)))", object: path)
            }
        }
    }

    /// The job ended with nothing left to do.
    func remove() {
        fd.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
        unlink(path)
    }

    deinit { fd.withLock { if $0 >= 0 { close($0) } } }
}
