/// Text that came from outside (a peer, a server's error body, a file): made safe to write
/// into a log line or onto a terminal: no byte of it can end the line, start a fake one or
/// move the cursor. `PeerText` (replication) and the S3 client use it.
public enum UntrustedText {
    /// Longest outside text kept in a log line, in characters; the rest is cut and counted.
    public static let maxLogLength = 256

    /// `text` with every backslash, control character (C0, DEL, C1), line or paragraph
    /// separator and bidirectional override written as an escape (`\n`, `\u{1B}`), and cut to
    /// `maxLength` characters with the number of characters left out.
    public static func escaped(_ text: String, maxLength: Int = maxLogLength) -> String {
        escaped(text, maxLength: maxLength, quotes: false)
    }

    /// ``escaped(_:maxLength:)`` in double quotes, with `"` escaped too: a log field whose
    /// value cannot be read as more fields (`client="x role=primary"` stays one field).
    public static func quoted(_ text: String, maxLength: Int = maxLogLength) -> String {
        "\"" + escaped(text, maxLength: maxLength, quotes: true) + "\""
    }

    private static func escaped(_ text: String, maxLength: Int, quotes: Bool) -> String {
        var out = ""
        out.reserveCapacity(min(text.utf8.count, maxLength + 16))
        var kept = 0
        var total = 0
        for scalar in text.unicodeScalars {
            total += 1
            guard kept < maxLength else { continue }
            kept += 1
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"" where quotes: out += "\\\""
            default:
                if needsEscape(scalar) {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        if total > kept { out += "…(\(total - kept) more)" }
        return out
    }

    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        case 0x2028, 0x2029: true  // line and paragraph separators
        case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: true  // bidirectional controls
        default: false
        }
    }
}
