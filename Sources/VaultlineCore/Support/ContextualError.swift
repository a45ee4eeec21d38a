/// The shape every error of Vaultline's libraries has: ``VaultlineError`` (the storage engine),
/// `GraphError` (Microsoft Graph) and `ReplicationError` (the replication protocol).
///
/// Modelled on `_NIOFileSystem.FileSystemError` and swift-certificates' `CertificateError`:
/// a ``code`` for programs (a struct over a private enum, so new codes are not a breaking
/// change, and compared with `==`: tests assert it), a ``message`` for people, the ``object``
/// (path, blob id, URL, peer) it concerns, the ``cause`` it wraps, and the ``location`` in the
/// source that raised it.
public protocol ContextualError: Error, CustomStringConvertible {
    associatedtype Code: Hashable, Sendable, CustomStringConvertible
    var code: Code { get }
    var message: String { get }
    var object: String? { get }
    var cause: (any Error)? { get }
    var location: ErrorLocation { get }
}

extension ContextualError {
    /// `object: message (cause)`: how the CLI prints it. The location is left for ``debugDescription``.
    public var description: String {
        var text = message
        if let object { text = "\(object): \(text)" }
        if let cause { text += " (\(cause))" }
        return text
    }

    /// The description with the code and where it was raised: for logs and test failures.
    public var debugDescription: String { "[\(code)] \(description) at \(location)" }
}

/// Where an error was raised: the `#fileID` and `#line` of its initialiser's caller.
public struct ErrorLocation: Hashable, Sendable, CustomStringConvertible {
    public var fileID: String
    public var line: UInt

    public init(fileID: StaticString = #fileID, line: UInt = #line) {
        self.fileID = "\(fileID)"
        self.line = line
    }

    public var description: String { "\(fileID):\(line)" }
}
