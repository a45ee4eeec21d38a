import Foundation

/// The kinds of file in a repository, each with its own folder (docs/FORMAT.md, "Layout").
public enum FileKind: String, Sendable, CaseIterable, Codable {
    case config
    case key = "keys"
    case pack = "packs"
    case index
    case snapshot = "snapshots"
    case lock = "locks"
    /// Prune plans: packs marked for deletion, and when (site-local; never replicated).
    case plan = "prune"

    /// Immutable kinds are named by the SHA-256 of their bytes; config and locks are not.
    public var isContentAddressed: Bool {
        switch self {
        case .key, .pack, .index, .snapshot, .plan: true
        case .config, .lock: false
        }
    }

    /// Rejects names that could escape the kind's folder or are not of its form: 64 lower-case
    /// hex digits for content-addressed kinds, 1–128 of `0-9 a-z -` for locks.
    public func validate(_ name: String) throws {
        if self == .config { return }
        let ok: Bool
        if isContentAddressed {
            ok = name.utf8.count == 64 && name.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
        } else {
            ok = !name.isEmpty && name.utf8.count <= 128
                && name.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 122) || $0 == 45 }
        }
        guard ok else { throw VaultlineError(.invalidArgument, "invalid \(rawValue) file name", object: name) }
    }

    /// Where a file of this kind lives under a repository's root: `config`, `packs/ab/abcd…`
    /// (packs are sharded by the first two hex digits of their name), `index/…`.
    public func relativePath(_ name: String) -> String {
        switch self {
        case .config: "config"
        case .pack: "packs/" + name.prefix(2) + "/" + name
        default: rawValue + "/" + name
        }
    }
}

/// Where repository files live. Every write is durable when it returns (temp file, fsync,
/// rename, fsync of the directory), and never replaces a file that exists.
///
/// Replication and scrub use only this protocol and ``FileKind``: they need no key.
public protocol Backend: Sendable {
    /// The names of all files of `kind` (hidden temporary files excluded).
    func list(_ kind: FileKind) throws -> [String]
    /// The size of a file, or nil when it does not exist.
    func stat(_ kind: FileKind, _ name: String) throws -> Int64?
    /// Every file of `kind` with its size (object storage lists them together; a disk stats each).
    func sizes(_ kind: FileKind) throws -> [String: Int64]
    /// Reads `length` bytes at `offset`, or the whole file when `length` is nil.
    func read(_ kind: FileKind, _ name: String, offset: Int64, length: Int?) throws -> [UInt8]
    /// Reads a whole file into `buffer` (grown when too small, never shrunk) and returns its
    /// length: a reader of many files (check, scrub) reuses one buffer and pays no page faults
    /// for a fresh one each time.
    func read(_ kind: FileKind, _ name: String, into buffer: inout [UInt8]) throws -> Int
    /// Reads exactly `buffer.count` bytes at `offset` into memory the caller reuses (restore
    /// reads every blob this way); a file too short for them is `corrupt`.
    func read(_ kind: FileKind, _ name: String, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Reads `length` bytes at `offset` and hands them to `body` (valid only there): restore
    /// reads what it needs of a pack as a few large ranges this way. `buffer` is memory the
    /// caller reuses where the backend needs some (a disk reads into it; object storage hands
    /// over the answer's own bytes). A file too short for the range is `corrupt`.
    func withBytes<R>(_ kind: FileKind, _ name: String, offset: Int64, length: Int, reusing buffer: inout [UInt8],
                      _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R
    /// The largest gap between two wanted ranges of one file that is cheaper to read through
    /// than to skip with a second read: small for a disk, a round trip's worth of bytes for
    /// object storage.
    var readThroughGap: Int { get }
    /// Writes a new file durably; returns false (and writes nothing) when the name exists.
    @discardableResult
    func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws -> Bool
    /// When a file was last written (at this site), or nil when unknown.
    func modified(_ kind: FileKind, _ name: String) throws -> Date?
    /// Removes a file; a missing file is not an error.
    func delete(_ kind: FileKind, _ name: String) throws
    /// Starts a file whose name is known only once it is complete (packs are named by the
    /// hash of their bytes): append to it, then commit it under its name.
    func beginWrite(_ kind: FileKind) throws -> any BackendPendingFile
    /// How many pending files a writer should commit at once: 1 for a disk (one fsync stream
    /// is what it does best), more for object storage, where each commit is a round trip.
    var preferredConcurrentCommits: Int { get }
}

/// A file being written through a backend; invisible under its final name until committed.
public protocol BackendPendingFile: AnyObject, Sendable {
    func append(_ bytes: UnsafeRawBufferPointer) throws
    /// Makes the file durable under `name` (fsync, link, fsync of the directory). Returns false
    /// when a file of that name exists already (the pending file is then discarded).
    func commit(name: String) throws -> Bool
    /// Discards the file.
    func abandon()
}

extension Backend {
    public var preferredConcurrentCommits: Int { 1 }

    public var readThroughGap: Int { 64 << 10 }

    public func withBytes<R>(_ kind: FileKind, _ name: String, offset: Int64, length: Int, reusing buffer: inout [UInt8],
                             _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard length >= 0 else { throw VaultlineError(.invalidArgument, "a negative length", object: kind.relativePath(name)) }
        if buffer.count < length { buffer = [UInt8](repeating: 0, count: length) }
        return try buffer.withUnsafeMutableBytes { whole in
            let range = UnsafeMutableRawBufferPointer(rebasing: whole[0..<length])
            try read(kind, name, offset: offset, into: range)
            return try body(UnsafeRawBufferPointer(range))
        }
    }

    public func sizes(_ kind: FileKind) throws -> [String: Int64] {
        var out: [String: Int64] = [:]
        for name in try list(kind) {
            if let size = try stat(kind, name) { out[name] = size }
        }
        return out
    }

    public func modified(_ kind: FileKind, _ name: String) throws -> Date? { nil }

    public func read(_ kind: FileKind, _ name: String) throws -> [UInt8] {
        try read(kind, name, offset: 0, length: nil)
    }

    public func read(_ kind: FileKind, _ name: String, into buffer: inout [UInt8]) throws -> Int {
        let bytes = try read(kind, name)
        if buffer.count < bytes.count { buffer = bytes } else { buffer.replaceSubrange(0..<bytes.count, with: bytes) }
        return bytes.count
    }

    public func read(_ kind: FileKind, _ name: String, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let bytes = try read(kind, name, offset: offset, length: buffer.count)
        guard bytes.count == buffer.count else {
            throw VaultlineError(.corrupt, "file is truncated: wanted \(buffer.count) bytes at offset \(offset), got \(bytes.count)", object: "\(kind.rawValue)/\(name)")
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    @discardableResult
    public func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: [UInt8]) throws -> Bool {
        try bytes.withUnsafeBytes { try writeIfAbsent(kind, name, $0) }
    }
}
