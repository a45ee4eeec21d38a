import VaultlineCore

/// An error of the replication protocol: a refusal sent by the peer (with the code of
/// docs/PROTOCOL.md, "Errors") or a local failure (connection, TLS, certificates, files). See
/// `ContextualError` for the shape all of Vaultline's errors share.
public struct ReplicationError: ContextualError, Sendable {
    /// The protocol's error codes (``wireValue`` below 100) and local ones (never sent). A code
    /// a newer peer sends that this build does not know keeps its number (``wireValue``) and
    /// is handled like ``io``. New codes may be added: switch over them with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case version, malformed, unknownType, frameTooLarge, forbidden, invalidName, conflict
            case hashMismatch, noSpace, io, notFound, busy, shuttingDown
            case connection, certificate, damagedSource
            case unrecognised(UInt16)
        }

        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        public static let version = Code(.version)
        public static let malformed = Code(.malformed)
        public static let unknownType = Code(.unknownType)
        public static let frameTooLarge = Code(.frameTooLarge)
        public static let forbidden = Code(.forbidden)
        public static let invalidName = Code(.invalidName)
        public static let conflict = Code(.conflict)
        public static let hashMismatch = Code(.hashMismatch)
        public static let noSpace = Code(.noSpace)
        public static let io = Code(.io)
        public static let notFound = Code(.notFound)
        public static let busy = Code(.busy)
        public static let shuttingDown = Code(.shuttingDown)
        /// Local: the connection could not be made, or broke.
        public static let connection = Code(.connection)
        /// Local: a certificate or key could not be read or does not verify.
        public static let certificate = Code(.certificate)
        /// Local: a file of the repository being sent does not hash to its name.
        public static let damagedSource = Code(.damagedSource)

        private static let onTheWire: [(Backing, UInt16)] = [
            (.version, 1), (.malformed, 2), (.unknownType, 3), (.frameTooLarge, 4), (.forbidden, 5),
            (.invalidName, 6), (.conflict, 7), (.hashMismatch, 8), (.noSpace, 9), (.io, 10),
            (.notFound, 11), (.busy, 12), (.shuttingDown, 13),
            (.connection, 100), (.certificate, 101), (.damagedSource, 102),
        ]

        /// The code's number: the u16 an ERROR frame carries (local codes are 100 and above).
        public var wireValue: UInt16 {
            if case .unrecognised(let value) = backing { return value }
            return Self.onTheWire.first { $0.0 == backing }?.1 ?? 10
        }

        /// Whether it may be sent in an ERROR frame (a protocol code, not a local one).
        public var isSentOnTheWire: Bool { wireValue < 100 }

        /// The code an ERROR frame's number stands for; a number this build does not know
        /// stays as it came.
        public init(wireValue: UInt16) {
            self.backing = Self.onTheWire.first { $0.1 == wireValue && $0.1 < 100 }?.0 ?? .unrecognised(wireValue)
        }

        public var description: String {
            if case .unrecognised(let value) = backing { return "code \(value)" }
            return String(describing: backing)
        }
    }

    public var code: Code
    public var message: String
    /// The file, peer or certificate this error is about.
    public var object: String?
    /// True when the peer sent this error (as opposed to a local failure).
    public var fromPeer: Bool
    public var cause: (any Error)?
    public var location: ErrorLocation

    public init(
        _ code: Code, _ message: String, object: String? = nil, fromPeer: Bool = false,
        cause: (any Error)? = nil, file: StaticString = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.object = object
        self.fromPeer = fromPeer
        self.cause = cause
        self.location = ErrorLocation(fileID: file, line: line)
    }

    public var description: String {
        var text = fromPeer ? "peer refused (\(code)): \(message)" : message
        if let object { text = "\(object): \(text)" }
        if let cause { text += " (\(cause))" }
        return text
    }
}

extension ReplicationError {
    /// The message an ERROR frame carries for `error`: its object and message, never its
    /// cause, and never a path of this site (`root`, the folder the receiver serves, is cut
    /// out), so that a peer learns what went wrong, not how this machine is laid out.
    static func wireText(_ error: any Error, hiding root: String) -> String {
        var text: String
        switch error {
        case let e as ReplicationError: text = e.object.map { "\($0): \(e.message)" } ?? e.message
        case let e as VaultlineError: text = e.message
        default: text = "internal error"
        }
        guard !root.isEmpty else { return text }
        text = text.replacing(root + "/", with: "")
        return text.replacing(root, with: ".")
    }
}
