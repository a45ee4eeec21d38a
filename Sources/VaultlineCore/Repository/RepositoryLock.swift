import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A lock file under `locks/` (docs/FORMAT.md, "Locks"). Backups take shared locks; maintenance
/// that removes data takes an exclusive one. A lock whose process is gone (same host, no such
/// pid) or that has not been refreshed for 30 minutes is stale and ignored.
public final class RepositoryLock: @unchecked Sendable {
    public struct Record: Codable, Sendable {
        public var exclusive: Bool
        public var host: String
        public var pid: Int32
        public var time: Date
        public var command: String
    }

    public static let staleAfter: TimeInterval = 30 * 60
    let backend: any Backend
    public let name: String

    private init(backend: any Backend, name: String) {
        self.backend = backend
        self.name = name
    }

    public static func acquire(_ backend: any Backend, exclusive: Bool, command: String) throws -> RepositoryLock {
        let record = Record(
            exclusive: exclusive, host: FileSystem.hostName(), pid: getpid(), time: Date(), command: command)
        try checkConflicts(backend, exclusive: exclusive, ignoring: nil)
        let name = encodeHex(try SecureRandom.bytes(16))
        try backend.writeIfAbsent(.lock, name, try StoredJSON.encode(record))
        let lock = RepositoryLock(backend: backend, name: name)
        // Two processes may have written at once: check again now that ours is visible.
        do {
            try checkConflicts(backend, exclusive: exclusive, ignoring: name)
        } catch {
            lock.release()
            throw error
        }
        return lock
    }

    public func release() {
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
