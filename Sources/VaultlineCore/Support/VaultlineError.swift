#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error raised by the storage engine: what went wrong, on which object, and why
/// (see ``ContextualError`` for the shape all of Vaultline's errors share).
public struct VaultlineError: ContextualError, Sendable {
    /// A broad category, stable across releases; the CLI maps it to an exit status. New codes
    /// may be added: switch over them with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String, Hashable, Sendable {
            case io, noSpace, notFound, alreadyExists, wrongPassword, corrupt, invalidArgument
            case locked, unsupported, crypto, compression
        }

        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// A system call failed.
        public static let io = Code(.io)
        /// ENOSPC or EDQUOT, or a service's quota is full.
        public static let noSpace = Code(.noSpace)
        /// A file, repository, snapshot, blob or item is missing.
        public static let notFound = Code(.notFound)
        /// A repository (or file) already exists where one was to be made.
        public static let alreadyExists = Code(.alreadyExists)
        /// No key slot opened with the given password.
        public static let wrongPassword = Code(.wrongPassword)
        /// A hash, tag or structure check failed.
        public static let corrupt = Code(.corrupt)
        /// Bad user input, or a request the target refused as not allowed.
        public static let invalidArgument = Code(.invalidArgument)
        /// A conflicting lock is held.
        public static let locked = Code(.locked)
        /// A format version or feature this build does not support.
        public static let unsupported = Code(.unsupported)
        /// The crypto library failed (not an authentication failure: that is ``corrupt``).
        public static let crypto = Code(.crypto)
        /// zstd or lz4 failed on data that passed authentication.
        public static let compression = Code(.compression)

        public var description: String { backing.rawValue }
    }

    public var code: Code
    public var message: String
    /// The path, file name or id this error is about, when there is one.
    public var object: String?
    /// The errno of a failed system call, when there is one.
    public var errno: Int32?
    /// Another error this one wraps.
    public var cause: (any Error)?
    public var location: ErrorLocation

    public init(
        _ code: Code, _ message: String, object: String? = nil, errno: Int32? = nil,
        cause: (any Error)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.object = object
        self.errno = errno
        self.cause = cause
        self.location = ErrorLocation(fileID: file, line: line)
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
}
