import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A thin owner of a POSIX file descriptor. Every failure becomes a ``VaultlineError`` naming the
/// path and the errno.
public struct FileDescriptor: ~Copyable {
    public let raw: Int32
    public let path: String

    public init(open path: String, flags: Int32, mode: mode_t = 0o644) throws {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VaultlineError.system("open", object: path) }
        raw = fd
        self.path = path
    }

    deinit { Glibc.close(raw) }

    /// Reads until `buffer` is full or the end of the file; returns the count read.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.read(raw, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("read", object: path)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// One read(2) (retried on EINTR): the count read, 0 at the end of the file.
    public func readSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(raw, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw VaultlineError.system("read", object: path) }
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset`; a short file is ``VaultlineError/Code/corrupt``.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("pread", object: path)
            }
            if n == 0 {
                throw VaultlineError(.corrupt, "file is truncated: wanted \(buffer.count) bytes at offset \(offset), got \(done)", object: path)
            }
            done += n
        }
    }

    public func pread(count: Int, at offset: Int64) throws -> [UInt8] {
        // Not zero-filled first: every byte is read or the call throws (check reads whole packs).
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try pread(into: UnsafeMutableRawBufferPointer(buffer), at: offset)
            initialized = count
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(raw, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("write", object: path)
            }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset` of the open file `fd` (`pwrite`, retried on EINTR and
    /// short writes), for callers that share a descriptor between threads; `object` names the
    /// file in an error.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, object: String) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw VaultlineError.system("pwrite", object: object)
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func sync() throws {
        guard fsync(raw) == 0 else { throw VaultlineError.system("fsync", object: path) }
    }

    public func size() throws -> Int64 {
        var st = stat()
        guard fstat(raw, &st) == 0 else { throw VaultlineError.system("fstat", object: path) }
        return Int64(st.st_size)
    }
}

/// File-system helpers used by the backend and the restorer.
public enum FileSystem {
    /// fsyncs a directory so that a rename or unlink inside it is durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = try FileDescriptor(open: path, flags: O_RDONLY | O_DIRECTORY)
        try fd.sync()
    }

    /// mkdir -p; existing directories are fine.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw VaultlineError.system("mkdir", object: current)
            }
        }
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names in a directory, without "." and "..", unsorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw VaultlineError.system("opendir", object: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Replaces the small file at `path` durably: a temporary file beside it, fsync, rename,
    /// fsync of the directory. Readers see the old or the new content, never a mix.
    /// A bare file name is in the working directory (its temporary file too, not in `/`).
    public static func replaceFile(_ path: String, with bytes: [UInt8], mode: mode_t = 0o600) throws {
        let parent = (path as NSString).deletingLastPathComponent
        let dir = parent.isEmpty ? "." : parent
        let tmp = dir + "/.tmp-" + encodeHex(try SecureRandom.bytes(8))
        do {
            let fd = try FileDescriptor(open: tmp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode)
            try fd.write(bytes)
            try fd.sync()
            guard rename(tmp, path) == 0 else { throw VaultlineError.system("rename", object: path) }
        } catch {
            unlink(tmp)
            throw error
        }
        try syncDirectory(dir)
    }

    /// `$XDG_STATE_HOME/vaultline` (or `~/.local/state/vaultline`): where jobs keep state that
    /// must survive a reboot (the scrub cursor).
    public static func stateDirectory() -> String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? env["HOME"].map { $0 + "/.local/state" } ?? NSTemporaryDirectory()
        return base + "/vaultline"
    }

    /// Reads a whole (small) file.
    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor(open: path, flags: O_RDONLY)
        let size = try fd.size()
        return try fd.pread(count: Int(size), at: 0)
    }

    public static func hostName() -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        gethostname(&buf, 255)
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }

    public static func userName() -> String {
        if let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return String(getuid())
    }
}

extension FileSystem {
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// glibc's `sync_file_range`, looked up once at run time (the Glibc module does not export
    /// it); nil where the C library has none.
    private static let syncFileRange: SyncFileRange? = {
        #if canImport(Glibc)
        if let symbol = dlsym(nil, "sync_file_range") { return unsafeBitCast(symbol, to: SyncFileRange.self) }
        #endif
        return nil
    }()

    /// Asks the kernel to start writing a range of `fd` to the disk without waiting
    /// (`SYNC_FILE_RANGE_WRITE`): a later fsync then finds most of it written. A hint only:
    /// durability still comes from fsync.
    public static func startWriteBack(_ fd: Int32, offset: Int64, length: Int64) {
        _ = syncFileRange?(fd, offset, length, 2 /* SYNC_FILE_RANGE_WRITE */)
    }
}
