import VaultlineCore

/// An error of the replication protocol: a refusal sent by the peer (with the code of
/// docs/PROTOCOL.md, "Errors") or a local failure (connection, TLS, certificates, files).
public struct ReplicationError: Error, Sendable, CustomStringConvertible {
    public enum Code: UInt16, Sendable {
        case version = 1
        case malformed = 2
        case unknownType = 3
        case frameTooLarge = 4
        case forbidden = 5
        case invalidName = 6
        case conflict = 7
        case hashMismatch = 8
        case noSpace = 9
        case io = 10
        case notFound = 11
        case busy = 12
        case shuttingDown = 13
        // Local codes, never sent on the wire.
        case connection = 100
        case certificate = 101
        case damagedSource = 102

        var name: String { String(describing: self) }
    }

    public var code: Code
    public var message: String
    /// The file, peer or certificate this error is about.
    public var object: String?
    /// True when the peer sent this error (as opposed to a local failure).
    public var fromPeer: Bool
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, object: String? = nil, fromPeer: Bool = false, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.object = object
        self.fromPeer = fromPeer
        self.cause = cause
    }

    public var description: String {
        var s = fromPeer ? "peer refused (\(code.name)): \(message)" : message
        if let object { s = "\(object): \(s)" }
        if let cause { s += " (\(cause))" }
        return s
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
