import Foundation
import Synchronization
import VaultlineCore
#if canImport(Glibc)
import Glibc
#endif

/// Index files, snapshots and key slots of a bucket, kept on the local disk: every command reads
/// all index files and backups read every snapshot, and on object storage each is a GET (restic
/// and kopia keep the same cache). Only content-addressed files are kept, and each is checked
/// against its name on every read, so a stale, torn or tampered entry is never used: it is
/// removed and fetched again. The bucket stays the truth: a listing drops what it no longer
/// has. A cache that cannot be written is skipped, never an error.
public final class ContentCache: Sendable {
    public static let kinds: Set<FileKind> = [.index, .snapshot, .key]

    public let root: String
    private let counters = Mutex((hits: 0, misses: 0))

    /// A cache in `root` (created 0700); nil when it cannot be made.
    public init?(root: String) {
        self.root = root
        for kind in Self.kinds {
            guard (try? FileSystem.makeDirectories(root + "/" + kind.rawValue, mode: 0o700)) != nil else { return nil }
        }
    }

    /// The cache for `location`: `VAULTLINE_CACHE_DIR`, else `$XDG_CACHE_HOME/vaultline`, else
    /// `~/.cache/vaultline`, then one folder per location (named by a hash of it). Nil when
    /// `VAULTLINE_CACHE_DIR` is `off` or no folder can be made.
    public static func forLocation(_ location: S3Location, environment: [String: String], home: String) -> ContentCache? {
        let base: String
        if let chosen = environment["VAULTLINE_CACHE_DIR"], !chosen.isEmpty {
            if chosen == "off" { return nil }
            base = chosen
        } else if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            base = xdg + "/vaultline"
        } else {
            base = home + "/.cache/vaultline"
        }
        let tag = VaultlineCore.SHA256.hash(Array("\(location)".utf8)).hex.prefix(16)
        return ContentCache(root: base + "/s3-" + tag)
    }

    public var stats: (hits: Int, misses: Int) { counters.withLock { $0 } }

    func path(_ kind: FileKind, _ name: String) -> String { root + "/" + kind.rawValue + "/" + name }

    func holds(_ kind: FileKind) -> Bool { Self.kinds.contains(kind) }

    /// The cached bytes of `name`, or nil (nothing cached, or an entry that does not hash to
    /// its name: removed).
    func read(_ kind: FileKind, _ name: String) -> [UInt8]? {
        guard holds(kind), (try? kind.validate(name)) != nil else { return nil }
        let file = path(kind, name)
        guard let bytes = try? FileSystem.readFile(file) else {
            counters.withLock { $0.misses += 1 }
            return nil
        }
        guard VaultlineCore.SHA256.hash(bytes).hex == name else {
            unlink(file)
            counters.withLock { $0.misses += 1 }
            return nil
        }
        counters.withLock { $0.hits += 1 }
        return bytes
    }

    /// Keeps `bytes` under `name` when they hash to it (a temporary file renamed into place, so
    /// that a reader sees all of it or nothing; no fsync: a lost entry is fetched again).
    func store(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) {
        guard holds(kind), (try? kind.validate(name)) != nil, VaultlineCore.SHA256.hash(bytes).hex == name else { return }
        let file = path(kind, name)
        let temporary = file + ".tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = (try? FileDescriptor.writeAll(fd, bytes, at: 0, object: temporary)) != nil
        _ = close(fd)
        if !written || rename(temporary, file) != 0 { unlink(temporary) }
    }

    func remove(_ kind: FileKind, _ name: String) {
        guard holds(kind), (try? kind.validate(name)) != nil else { return }
        unlink(path(kind, name))
    }

    /// Drops every entry of `kind` the bucket no longer lists (and temporary files left by a
    /// killed process).
    func retain(_ kind: FileKind, _ listed: Set<String>) {
        guard holds(kind), let names = try? FileSystem.list(root + "/" + kind.rawValue) else { return }
        for name in names where !listed.contains(name) { unlink(path(kind, name)) }
    }
}
