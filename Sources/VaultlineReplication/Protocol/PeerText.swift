import Logging
import VaultlineCore

/// Text that came from a peer (a HELLO name, an ERROR message, a certificate subject, an
/// error that quotes a repository id), made safe to write into a log line or onto a terminal
/// (``UntrustedText`` does the escaping).
public enum PeerText {
    /// Longest peer text kept in a log line, in characters; the rest is cut and counted.
    public static let maxLogLength = UntrustedText.maxLogLength

    /// See ``UntrustedText/escaped(_:maxLength:)``.
    public static func escaped(_ text: String, maxLength: Int = maxLogLength) -> String {
        UntrustedText.escaped(text, maxLength: maxLength)
    }

    /// See ``UntrustedText/quoted(_:maxLength:)``.
    public static func quoted(_ text: String, maxLength: Int = maxLogLength) -> String {
        UntrustedText.quoted(text, maxLength: maxLength)
    }

    /// A log metadata value for peer text (quoted).
    public static func metadata(_ text: String) -> Logger.MetadataValue { .string(quoted(text)) }

    /// A log metadata value for an error whose description may quote peer text.
    public static func metadata(_ error: any Error) -> Logger.MetadataValue { .string(quoted("\(error)")) }
}
