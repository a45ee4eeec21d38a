import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A lock file under `locks/` (docs/FORMAT.md, "Locks"). Backups take shared locks; maintenance
/// that removes data takes an exclusive one. A lock whose process is gone (same host, no such
/// pid) or that has not been refreshed for 30 minutes is stale and ignored.
public final class RepositoryLock: @unchecked Sendable {
    public struct Record: Codable, Sendable, Equatable {
        public var exclusive: Bool
        public var host: String
        public var pid: Int32
        public var time: Date
        public var command: String
    }

    public static let staleAfter: TimeInterval = 30 * 60
    /// A held lock is rewritten this often, so that a long backup never looks stale.
    public static let refreshEvery: TimeInterval = 5 * 60
    let backend: any Backend
    let record: Record
    private let state: Locked<(name: String, released: Bool)>
    private var timer: DispatchSourceTimer?
    public var name: String { state.withLock { $0.name } }

    private init(backend: any Backend, name: String, record: Record) {
        self.backend = backend
        self.record = record
        state = Locked((name, false))
    }

    public static func acquire(_ backend: any Backend, exclusive: Bool, command: String) throws -> RepositoryLock {
        let record = Record(
            exclusive: exclusive, host: FileSystem.hostName(), pid: getpid(), time: Date(), command: command)
        try checkConflicts(backend, exclusive: exclusive, ignoring: nil)
        let name = encodeHex(try SecureRandom.bytes(16))
        try backend.writeIfAbsent(.lock, name, try StoredJSON.encode(record))
        let lock = RepositoryLock(backend: backend, name: name, record: record)
        // Two processes may have written at once: check again now that ours is visible.
        do {
            try checkConflicts(backend, exclusive: exclusive, ignoring: name)
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
    func refresh() {
        var fresh = record
        fresh.time = Date()
        guard let bytes = try? StoredJSON.encode(fresh), let random = try? SecureRandom.bytes(16) else { return }
        let newName = encodeHex(random)
        guard (try? backend.writeIfAbsent(.lock, newName, bytes)) == true else { return }
        let old: String? = state.withLock {
            if $0.released { return nil }
            let o = $0.name
            $0.name = newName
            return o
        }
        try? backend.delete(.lock, old ?? newName)
    }

    public func release() {
        timer?.cancel()
        let name = state.withLock { s -> String in s.released = true; return s.name }
        try? backend.delete(.lock, name)
    }

    static func checkConflicts(_ backend: any Backend, exclusive: Bool, ignoring: String?) throws {
        for other in try backend.list(.lock) where other != ignoring {
            guard let bytes = try? backend.read(.lock, other),
                  let rec = try? StoredJSON.decode(Record.self, from: bytes, object: "locks/\(other)")
            else { continue }
            if isStale(rec) { continue }
            if exclusive || rec.exclusive {
                throw VaultlineError(
                    .locked,
                    "repository is locked \(rec.exclusive ? "exclusively" : "") by \(rec.command) (pid \(rec.pid) on \(rec.host) since \(StoredJSON.iso8601(rec.time)))",
                    object: "locks/\(other)")
            }
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
