#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error raised by the storage engine: what went wrong, on which object, and why.
///
/// Modelled on `_NIOFileSystem.FileSystemError`: a stable ``Code`` for programs, a message for
/// people, the object (file path, blob id, pack name) it concerns, the underlying errno or C
/// library result, and the source location that raised it.
public struct VaultlineError: Error, Sendable, CustomStringConvertible {
    /// A broad category, stable across releases; the CLI maps it to an exit status.
    public enum Code: String, Sendable, Codable {
        case io                 // a system call failed
        case noSpace            // ENOSPC / EDQUOT
        case notFound           // a file, repository, snapshot or blob is missing
        case alreadyExists      // a repository already exists where init was asked
        case wrongPassword      // no key slot opened with the given password
        case corrupt            // a hash, tag or structure check failed
        case invalidArgument    // bad user input
        case locked             // a conflicting lock is held
        case unsupported        // format version or feature not supported
        case crypto             // the crypto library failed (not an authentication failure)
        case compression        // zstd/lz4 failed on data that passed authentication
    }

    public var code: Code
    public var message: String
    /// The path, file name or id this error is about, when there is one.
    public var object: String?
    /// The errno of a failed system call, when there is one.
    public var errno: Int32?
    /// Another error this one wraps.
    public var cause: (any Error)?
    public var location: String

    public init(
        _ code: Code, _ message: String, object: String? = nil, errno: Int32? = nil,
        cause: (any Error)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.object = object
        self.errno = errno
        self.cause = cause
        self.location = "\(file):\(line)"
    }

    /// An error for a failed system call; ENOSPC and EDQUOT become ``Code/noSpace``.
    public static func system(
        _ call: String, object: String?, errno err: Int32 = Glibc.errno,
        file: StaticString = #fileID, line: UInt = #line
    ) -> VaultlineError {
        let code: Code
        switch err {
        case ENOSPC, EDQUOT: code = .noSpace
        case ENOENT: code = .notFound
        case EEXIST: code = .alreadyExists
        default: code = .io
        }
        let reason = String(cString: strerror(err))
        return VaultlineError(
            code, "\(call) failed: \(reason)", object: object, errno: err, file: file, line: line)
    }

    public var description: String {
        var s = message
        if let object { s = "\(object): \(s)" }
        if let cause { s += " (\(cause))" }
        return s
    }
}
