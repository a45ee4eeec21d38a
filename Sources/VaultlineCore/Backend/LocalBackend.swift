import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A repository in a local directory (docs/FORMAT.md, "Layout"):
/// `config`, `keys/`, `packs/xx/` (xx = first two hex digits of the name), `index/`,
/// `snapshots/`, `locks/`.
public struct LocalBackend: Backend {
    public let root: String

    public init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    /// Creates the folder layout (an existing, empty directory is fine).
    public func createLayout() throws {
        try FileSystem.makeDirectories(root)
        for kind in FileKind.allCases where kind != .config {
            try FileSystem.makeDirectories(root + "/" + kind.rawValue)
        }
        for i in 0..<256 {
            try FileSystem.makeDirectories(root + "/packs/" + encodeHex([UInt8(i)]))
        }
        try FileSystem.syncDirectory(root + "/packs")
        try FileSystem.syncDirectory(root)
    }

    public func directory(_ kind: FileKind, _ name: String) -> String {
        switch kind {
        case .config: root
        case .pack: root + "/packs/" + String(name.prefix(2))
        default: root + "/" + kind.rawValue
        }
    }

    public func path(_ kind: FileKind, _ name: String) -> String {
        kind == .config ? root + "/config" : directory(kind, name) + "/" + name
    }

    func validate(_ kind: FileKind, _ name: String) throws { try kind.validate(name) }

    public func list(_ kind: FileKind) throws -> [String] {
        switch kind {
        case .config:
            return FileSystem.exists(root + "/config") ? ["config"] : []
        case .pack:
            var out: [String] = []
            for sub in try Self.names(in: root + "/packs") where sub.utf8.count == 2 {
                out += try Self.names(in: root + "/packs/" + sub)
            }
            return out
        default:
            return try Self.names(in: root + "/" + kind.rawValue)
        }
    }

    /// The names in a directory, temporary files left out. A directory that is not there is
    /// empty (docs/FORMAT.md, "Layout"): as on object storage, a repository need not have
    /// folders it has nothing in (prune/ in older repositories, locks/ in a copied one).
    private static func names(in directory: String) throws -> [String] {
        guard FileSystem.exists(directory) else { return [] }
        return try FileSystem.list(directory).filter { !$0.hasPrefix(".") }
    }

    public func stat(_ kind: FileKind, _ name: String) throws -> Int64? {
        try validate(kind, name)
        var st = Glibc.stat()
        if lstat(path(kind, name), &st) != 0 {
            if errno == ENOENT { return nil }
            throw VaultlineError.system("stat", object: path(kind, name))
        }
        return Int64(st.st_size)
    }

    public func modified(_ kind: FileKind, _ name: String) throws -> Date? {
        try validate(kind, name)
        var st = Glibc.stat()
        guard lstat(path(kind, name), &st) == 0 else {
            if errno == ENOENT { return nil }
            throw VaultlineError.system("stat", object: path(kind, name))
        }
        return Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    public func read(_ kind: FileKind, _ name: String, offset: Int64, length: Int?) throws -> [UInt8] {
        try validate(kind, name)
        let fd = try FileDescriptor(open: path(kind, name), flags: O_RDONLY)
        let count = try length ?? Int(fd.size() - offset)
        return try fd.pread(count: count, at: offset)
    }

    public func read(_ kind: FileKind, _ name: String, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try validate(kind, name)
        let fd = try FileDescriptor(open: path(kind, name), flags: O_RDONLY)
        try fd.pread(into: buffer, at: offset)
    }

    public func read(_ kind: FileKind, _ name: String, into buffer: inout [UInt8]) throws -> Int {
        try validate(kind, name)
        let fd = try FileDescriptor(open: path(kind, name), flags: O_RDONLY)
        let count = Int(try fd.size())
        if buffer.count < count { buffer = [UInt8](repeating: 0, count: count) }
        try buffer.withUnsafeMutableBytes { try fd.pread(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<count]), at: 0) }
        return count
    }

    public func writeIfAbsent(_ kind: FileKind, _ name: String, _ bytes: UnsafeRawBufferPointer) throws -> Bool {
        try validate(kind, name)
        let dir = directory(kind, name)
        let final = path(kind, name)
        if FileSystem.exists(final) { return false }
        if !FileSystem.isDirectory(dir) {
            // A folder the repository did not have yet (section "Layout"): made, and its
            // entry made durable up to the root, before a file in it is acknowledged.
            try FileSystem.makeDirectories(dir)
            var parent = dir
            while parent.count > root.count, let slash = parent.lastIndex(of: "/") {
                parent = String(parent[..<slash])
                try FileSystem.syncDirectory(parent.isEmpty ? "/" : parent)
            }
        }
        let tmp = dir + "/.tmp-" + encodeHex(try SecureRandom.bytes(8))
        do {
            let fd = try FileDescriptor(open: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: kind == .lock ? 0o600 : 0o400)
            try fd.write(bytes)
            try fd.sync()
        } catch {
            unlink(tmp)
            throw error
        }
        // link(2) refuses to replace an existing name, so two writers can never clobber a file.
        if link(tmp, final) != 0 {
            let err = errno
            unlink(tmp)
            if err == EEXIST { return false }
            throw VaultlineError.system("link", object: final, errno: err)
        }
        unlink(tmp)
        try FileSystem.syncDirectory(dir)
        return true
    }

    /// Puts a good copy of a content-addressed file in place of a damaged one (or a missing
    /// one): `repair --from`. The only way a repository file is ever replaced, and only by bytes
    /// that hash to its name, so a good file can never be made bad by it.
    public func replaceVerified(_ kind: FileKind, _ name: String, _ bytes: [UInt8]) throws {
        try validate(kind, name)
        guard kind.isContentAddressed, SHA256.hash(bytes).hex == name else {
            throw VaultlineError(.invalidArgument, "refusing to replace a file with bytes that do not hash to its name", object: path(kind, name))
        }
        let dir = directory(kind, name)
        try FileSystem.makeDirectories(dir, mode: 0o700)
        let final = path(kind, name)
        let tmp = dir + "/.tmp-" + encodeHex(try SecureRandom.bytes(8))
        do {
            let fd = try FileDescriptor(open: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o400)
            try fd.write(bytes)
            try fd.sync()
            guard rename(tmp, final) == 0 else { throw VaultlineError.system("rename", object: final) }
        } catch {
            unlink(tmp)
            throw error
        }
        try FileSystem.syncDirectory(dir)
    }

    public func beginWrite(_ kind: FileKind) throws -> any BackendPendingFile {
        try LocalPendingFile(backend: self, kind: kind)
    }

    public func delete(_ kind: FileKind, _ name: String) throws {
        try validate(kind, name)
        let p = path(kind, name)
        if unlink(p) != 0 && errno != ENOENT { throw VaultlineError.system("unlink", object: p) }
        try FileSystem.syncDirectory(directory(kind, name))
    }
}

/// A temporary file in the repository (`.tmp-<random>` beside where it will live; hidden from
/// `list`) that becomes a repository file by link(2), which never replaces an existing name.
// @unchecked Sendable: used by the one writer that began it, until it commits or abandons it
final class LocalPendingFile: BackendPendingFile, @unchecked Sendable {
    let backend: LocalBackend
    let kind: FileKind
    let tmp: String
    let fd: Int32
    var done = false

    init(backend: LocalBackend, kind: FileKind) throws {
        self.backend = backend
        self.kind = kind
        // Packs live in packs/xx/: keep the temporary file in packs/ (same file system), and
        // link it into its subfolder at commit.
        let dir = kind == .pack ? backend.root + "/packs" : backend.directory(kind, "")
        tmp = dir + "/.tmp-" + encodeHex(try SecureRandom.bytes(8))
        let fd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o400)
        guard fd >= 0 else { throw VaultlineError.system("open", object: tmp) }
        self.fd = fd
    }

    deinit {
        if !done { abandon() }
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("write", object: tmp)
            }
            off += n
        }
    }

    func commit(name: String) throws -> Bool {
        try backend.validate(kind, name)
        defer { done = true; Glibc.close(fd); unlink(tmp) }
        guard fsync(fd) == 0 else { throw VaultlineError.system("fsync", object: tmp) }
        let final = backend.path(kind, name)
        if link(tmp, final) != 0 {
            if errno == EEXIST { return false }
            throw VaultlineError.system("link", object: final)
        }
        try FileSystem.syncDirectory(backend.directory(kind, name))
        return true
    }

    func abandon() {
        guard !done else { return }
        done = true
        Glibc.close(fd)
        unlink(tmp)
    }
}
