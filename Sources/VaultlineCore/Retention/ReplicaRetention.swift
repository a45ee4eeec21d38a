import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Site B's retention lock (`<replica>/retention-lock`, plain JSON): nothing younger than `days`
/// is deleted there, whatever a policy says. Age at site B is the later of a file's arrival
/// (its modification time at B) and, for snapshots, the time recorded in it — so a primary
/// that sends old-looking snapshots cannot make them deletable sooner. The lock is set at site
/// B only (the replication protocol has no verb that touches it) and can only be raised.
public struct RetentionLock: Codable, Sendable, Equatable {
    public var days: Double
    public var set: Date

    public static let fileName = "retention-lock"

    public var seconds: TimeInterval { days * 86400 }

    public static func load(repository path: String) throws -> RetentionLock? {
        let file = path + "/" + fileName
        guard FileSystem.exists(file) else { return nil }
        return try StoredJSON.decode(RetentionLock.self, from: try FileSystem.readFile(file), object: file)
    }

    /// Sets or raises the lock; lowering it is refused.
    @discardableResult
    public static func raise(repository path: String, days: Double) throws -> RetentionLock {
        guard days > 0 else { throw VaultlineError(.invalidArgument, "the retention lock must be a positive number of days") }
        if let current = try load(repository: path), current.days > days {
            throw VaultlineError(
                .invalidArgument,
                "the retention lock is \(current.days) days; it can only be raised (lowering it takes removing \(fileName) by hand at this site)",
                object: path + "/" + fileName)
        }
        let lock = RetentionLock(days: days, set: Date())
        try FileSystem.replaceFile(path + "/" + fileName, with: try StoredJSON.encode(lock), mode: 0o644)
        return lock
    }

    /// Whether a file that arrived at `arrival` (and, for a snapshot, was taken at `time`) is
    /// still under the lock at `now`.
    public func holds(arrival: Date?, time: Date? = nil, now: Date = Date()) -> Bool {
        let newest = [arrival, time].compactMap { $0 }.max() ?? now
        return now.timeIntervalSince(newest) < seconds
    }
}

/// Names a replica prune removed at site B (`<replica>/pruned-names`, one `<kind> <name>` per
/// line, appended and fsynced before the file is deleted). The receiver counts them as held, so
/// site A never sends a forgotten snapshot, or a pack or index file site B freed, again.
public enum PrunedNames {
    public static let fileName = "pruned-names"

    public static func load(repository path: String) -> [FileKind: Set<String>] {
        guard let bytes = try? FileSystem.readFile(path + "/" + fileName) else { return [:] }
        var out: [FileKind: Set<String>] = [:]
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let parts = line.split(separator: UInt8(ascii: " "))
            guard parts.count == 2, let kind = FileKind(rawValue: String(decoding: parts[0], as: UTF8.self)) else { continue }
            out[kind, default: []].insert(String(decoding: parts[1], as: UTF8.self))
        }
        return out
    }

    public static func append(repository path: String, _ kind: FileKind, _ names: [String]) throws {
        guard !names.isEmpty else { return }
        let file = path + "/" + fileName
        let fd = try FileDescriptor(open: file, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644)
        try fd.write(Array(names.map { "\(kind.rawValue) \($0)\n" }.joined().utf8))
        try fd.sync()
    }
}
