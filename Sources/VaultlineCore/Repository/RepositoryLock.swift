import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A lock file under `locks/` (docs/FORMAT.md, "Locks"). Backups, check and forget take shared
/// locks; prune takes a maintenance lock (one prune at a time, backups may run alongside: its
/// two phases protect them); `repair index` and `repair snapshots` take an exclusive one. A lock
/// whose process is gone (same host, no such pid) or that has not been refreshed for 30 minutes
/// is stale and ignored.
// @unchecked Sendable: `state` is a lock; `timer` is set before the lock is handed out, then only cancelled
public final class RepositoryLock: @unchecked Sendable {
    public enum Mode: Sendable { case shared, maintenance, exclusive }

    public struct Record: Codable, Sendable, Equatable {
        public var exclusive: Bool
        /// A maintenance lock (absent in older locks: false).
        public var maintenance: Bool?
        public var host: String
        public var pid: Int32
        /// Last refreshed.
        public var time: Date
        /// When the lock was first taken (absent in older locks); prune compares it with its plans.
        public var created: Date?
        public var command: String

        var mode: Mode { exclusive ? .exclusive : (maintenance == true ? .maintenance : .shared) }
    }

    public static let staleAfter: TimeInterval = 30 * 60
    /// A held lock is rewritten this often, so that a long backup never looks stale.
    public static let refreshEvery: TimeInterval = 5 * 60
    /// Refreshes in a row that may fail before ``ensureHeld()`` fails the run: two (10 minutes
    /// without a refresh), well before the 30 minutes after which others take the lock for stale.
    public static let missedRefreshesAllowed = 2
    let backend: any Backend
    let record: Record
    private struct State {
        var name: String
        var released = false
        /// Refreshes that failed since the last that worked, and the last failure.
        var missed = 0
        var lastFailure: String?
    }
    private let state: Locked<State>
    private var timer: DispatchSourceTimer?
    public var name: String { state.withLock { $0.name } }

    private init(backend: any Backend, name: String, record: Record) {
        self.backend = backend
        self.record = record
        state = Locked(State(name: name))
    }

    public static func acquire(_ backend: any Backend, exclusive: Bool, command: String) throws -> RepositoryLock {
        try acquire(backend, mode: exclusive ? .exclusive : .shared, command: command)
    }

    public static func acquire(_ backend: any Backend, mode: Mode, command: String) throws -> RepositoryLock {
        let now = Date()
        let record = Record(
            exclusive: mode == .exclusive, maintenance: mode == .maintenance ? true : nil, host: FileSystem.hostName(),
            pid: getpid(), time: now, created: now, command: command)
        try checkConflicts(backend, mode: mode, ignoring: nil)
        let name = encodeHex(try SecureRandom.bytes(16))
        try backend.writeIfAbsent(.lock, name, try StoredJSON.encode(record))
        let lock = RepositoryLock(backend: backend, name: name, record: record)
        // Two processes may have written at once: check again now that ours is visible.
        do {
            try checkConflicts(backend, mode: mode, ignoring: name)
        } catch {
            lock.release()
            throw error
        }
        lock.startRefreshing()
        return lock
    }

    private func startRefreshing() {
        let t = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        t.schedule(deadline: .now() + Self.refreshEvery, repeating: Self.refreshEvery)
        t.setEventHandler { [weak self] in self?.refresh() }
        timer = t
        t.resume()
    }

    /// Writes the lock again with the current time under a new name, then removes the old file.
    /// A refresh that fails is counted (``ensureHeld()``); the old file stays until one works.
    func refresh() {
        var fresh = record
        fresh.time = Date()
        let newName: String
        do {
            let bytes = try StoredJSON.encode(fresh)
            newName = encodeHex(try SecureRandom.bytes(16))
            guard try backend.writeIfAbsent(.lock, newName, bytes) else {
                throw VaultlineError(.alreadyExists, "a lock file of that name exists", object: "locks/\(newName)")
            }
        } catch {
            state.withLock { s in
                s.missed += 1
                s.lastFailure = "\(error)"
            }
            return
        }
        let old: String? = state.withLock {
            $0.missed = 0
            $0.lastFailure = nil
            if $0.released { return nil }
            let o = $0.name
            $0.name = newName
            return o
        }
        // A lock file that cannot be removed is stale in 30 minutes; the new one holds the lock.
        try? backend.delete(.lock, old ?? newName)
    }

    /// Throws when the lock has not been refreshed for ``missedRefreshesAllowed`` refreshes in
    /// a row: others would soon take it for stale (a prune would no longer wait for this run),
    /// so a run checks it before it commits anything that relies on the lock.
    public func ensureHeld() throws {
        let (missed, failure) = state.withLock { ($0.missed, $0.lastFailure) }
        guard missed < Self.missedRefreshesAllowed else {
            throw VaultlineError(.locked, "the repository lock could not be refreshed \(missed) times in a row (\(failure ?? "")): others would soon take it for stale, so this run stops; nothing it has not committed is kept",
                                 object: "locks/\(name)")
        }
    }

    public func release() {
        timer?.cancel()
        let name = state.withLock { s -> String in
            s.released = true
            return s.name
        }
        try? backend.delete(.lock, name)
    }

    static func checkConflicts(_ backend: any Backend, mode: Mode, ignoring: String?) throws {
        for (other, rec) in try liveLocks(backend, ignoring: ignoring) {
            let conflict = switch (mode, rec.mode) {
            case (.exclusive, _), (_, .exclusive), (.maintenance, .maintenance): true
            default: false
            }
            if conflict {
                throw VaultlineError(
                    .locked,
                    "repository is locked \(rec.mode == .shared ? "" : "(\(rec.mode)) ")by \(rec.command) (pid \(rec.pid) on \(rec.host) since \(StoredJSON.iso8601(rec.created ?? rec.time)))",
                    object: "locks/\(other)")
            }
        }
    }

    /// Every lock that is not stale, by file name (`ignoring`: one not read, one's own).
    public static func liveLocks(_ backend: any Backend, ignoring: String? = nil) throws -> [(name: String, record: Record)] {
        try backend.list(.lock).compactMap { name in
            guard name != ignoring, let bytes = try? backend.read(.lock, name),
                  let rec = try? StoredJSON.decode(Record.self, from: bytes, object: "locks/\(name)"),
                  !isStale(rec)
            else { return nil }
            return (name, rec)
        }
    }

    static func isStale(_ rec: Record) -> Bool {
        if Date().timeIntervalSince(rec.time) > staleAfter { return true }
        if rec.host == FileSystem.hostName() {
            return kill(rec.pid, 0) != 0 && errno == ESRCH
        }
        return false
    }

    /// Removes stale locks (`unlock`).
    public static func removeStale(_ backend: any Backend) throws -> [String] {
        var removed: [String] = []
        for name in try backend.list(.lock) {
            guard let bytes = try? backend.read(.lock, name),
                  let rec = try? StoredJSON.decode(Record.self, from: bytes, object: name)
            else { continue }
            if isStale(rec) { try backend.delete(.lock, name); removed.append(name) }
        }
        return removed
    }
}
