#if canImport(Glibc)
import Glibc
#endif

/// Compares two directory trees as a restore should leave them: the same names, kinds, modes,
/// file contents, modification times and symlink targets. Used by `vaultline demo` and tests.
public enum DirectoryComparison {
    public struct Summary: Sendable { public var files = 0; public var bytes: UInt64 = 0 }

    /// Throws a ``VaultlineError/Code/corrupt`` error naming the first difference.
    @discardableResult
    public static func compare(_ a: String, _ b: String) throws -> Summary {
        var summary = Summary()
        try compare(a, b, &summary)
        return summary
    }

    private static func compare(_ a: String, _ b: String, _ summary: inout Summary) throws {
        let namesA = try FileSystem.list(a).sorted(), namesB = try FileSystem.list(b).sorted()
        guard namesA == namesB else {
            let missing = Set(namesA).subtracting(namesB).sorted(), extra = Set(namesB).subtracting(namesA).sorted()
            throw VaultlineError(.corrupt, "entries differ: missing \(missing), extra \(extra)", object: b)
        }
        for name in namesA {
            let pa = a + "/" + name, pb = b + "/" + name
            var sa = stat(), sb = stat()
            guard lstat(pa, &sa) == 0 else { throw VaultlineError.system("lstat", object: pa) }
            guard lstat(pb, &sb) == 0 else { throw VaultlineError.system("lstat", object: pb) }
            guard sa.st_mode == sb.st_mode else {
                throw VaultlineError(.corrupt, "mode \(String(sb.st_mode, radix: 8)) differs from \(String(sa.st_mode, radix: 8))", object: pb)
            }
            switch sa.st_mode & S_IFMT {
            case S_IFDIR:
                try compare(pa, pb, &summary)
            case S_IFREG:
                guard try FileSystem.readFile(pa) == FileSystem.readFile(pb) else {
                    throw VaultlineError(.corrupt, "content differs", object: pb)
                }
                guard sa.st_mtim.tv_sec == sb.st_mtim.tv_sec, sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec else {
                    throw VaultlineError(.corrupt, "mtime differs", object: pb)
                }
                summary.files += 1
                summary.bytes += UInt64(sa.st_size)
            case S_IFLNK:
                guard linkTarget(pa) == linkTarget(pb) else { throw VaultlineError(.corrupt, "symlink target differs", object: pb) }
            default:
                break
            }
        }
    }

    static func linkTarget(_ path: String) -> String {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBufferPointer { readlink(path, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count - 1) }
        return n < 0 ? "" : String(decoding: buf[0..<n], as: UTF8.self)
    }
}
