import Foundation

/// Header fields (RFC 5322 §2.2, 3.2.2), parameters (RFC 2045 §5.1, RFC 2231), encoded words
/// (RFC 2047) and address lists (RFC 5322 §3.4).
public enum MIMEHeader {
    /// Fields of a header block, unfolded. A line that is neither a field nor a continuation
    /// (no colon) is dropped, as mail readers do.
    static func fields(_ block: ArraySlice<UInt8>) -> [(name: String, value: String)] {
        var out: [(name: String, value: String)] = []
        var current: [UInt8] = []
        func flush() {
            guard let colon = current.firstIndex(of: 58), colon > 0 else { current = []; return }
            let name = String(decoding: current[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            let value = text(current[(colon + 1)...]).trimmingCharacters(in: .whitespaces)
            if !name.isEmpty, !name.contains(" ") { out.append((name, value)) }
            current = []
        }
        for var line in block.split(separator: 10, omittingEmptySubsequences: false) {
            if line.last == 13 { line = line.dropLast() }
            if let first = line.first, first == 32 || first == 9 {
                current += [32] + line.drop { $0 == 32 || $0 == 9 }
            } else {
                flush()
                current = Array(line)
            }
        }
        flush()
        return out
    }

    /// Header bytes as text: UTF-8 where valid (RFC 6532), else Latin-1, byte for character.
    static func text(_ bytes: ArraySlice<UInt8>) -> String {
        String(validating: bytes, as: UTF8.self) ?? String(bytes.map { Character(Unicode.Scalar($0)) })
    }

    /// `value; name=param; …`: the value lower-cased and the parameters (names lower-cased,
    /// quoted strings unquoted, RFC 2231 continuations joined and their charset applied).
    public static func parameterized(_ header: String) -> (String, [String: String]) {
        let pieces = splitOutsideQuotes(header, ";")
        let value = (pieces.first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        var plain: [String: String] = [:]
        var extended: [String: [(Int, String, Bool)]] = [:]
        for piece in pieces.dropFirst() {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            var name = piece[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var v = piece[piece.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if v.hasPrefix("\""), v.count >= 2, v.hasSuffix("\"") {
                v = String(v.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\\\", with: "\\")
            }
            // RFC 2231: name*=charset'lang'pct, name*0=…, name*1*=…
            let encoded = name.hasSuffix("*")
            if encoded { name.removeLast() }
            if let star = name.firstIndex(of: "*"), let n = Int(name[name.index(after: star)...]) {
                extended[String(name[..<star]), default: []].append((n, v, encoded))
            } else if encoded {
                extended[name, default: []].append((0, v, true))
            } else {
                plain[name] = v
            }
        }
        for (name, segments) in extended {
            var charset = "utf-8"
            var bytes: [UInt8] = []
            for (i, (_, v, encoded)) in segments.sorted(by: { $0.0 < $1.0 }).enumerated() {
                var v = Substring(v)
                if encoded, i == 0 {
                    let parts = v.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                    if parts.count == 3 {
                        charset = parts[0].isEmpty ? "us-ascii" : String(parts[0])
                        v = parts[2]
                    }
                }
                bytes += encoded ? percentDecoded(v) : Array(v.utf8)
            }
            plain[name] = MIMECharset.decode(bytes, charset: charset)
        }
        return (value, plain)
    }

    private static func percentDecoded(_ s: Substring) -> [UInt8] {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == 37, i + 2 < b.count, let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// Splits at `separator` outside double quotes (and their backslash escapes).
    static func splitOutsideQuotes(_ s: String, _ separator: Character) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for c in s {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" && quoted { current.append(c); escaped = true; continue }
            if c == "\"" { quoted.toggle() }
            if c == separator && !quoted { out.append(current); current = ""; continue }
            current.append(c)
        }
        out.append(current)
        return out
    }

    /// Decodes RFC 2047 encoded words (`=?charset?B?…?=`, `=?charset?Q?…?=`); white space between
    /// two encoded words is dropped. Malformed words stay as written.
    public static func decodeWords(_ s: String) -> String {
        guard s.contains("=?") else { return s }
        var out = ""
        var rest = Substring(s)
        var pendingSpace = ""
        var lastWasWord = false
        while !rest.isEmpty {
            if rest.hasPrefix("=?"), let (decoded, after) = encodedWord(rest) {
                if !lastWasWord { out += pendingSpace }
                out += decoded
                pendingSpace = ""
                lastWasWord = true
                rest = after
                continue
            }
            let c = rest.removeFirst()
            if c == " " || c == "\t" || c == "\r" || c == "\n" {
                pendingSpace.append(c == "\t" ? "\t" : " ")
                continue
            }
            out += pendingSpace
            pendingSpace = ""
            out.append(c)
            lastWasWord = false
        }
        return out + pendingSpace
    }

    private static func encodedWord(_ s: Substring) -> (String, Substring)? {
        let body = s.dropFirst(2)
        guard let q1 = body.firstIndex(of: "?") else { return nil }
        let charset = body[..<q1].split(separator: "*").first.map(String.init) ?? ""  // RFC 2231 language suffix
        let afterCharset = body[body.index(after: q1)...]
        guard let q2 = afterCharset.firstIndex(of: "?"), afterCharset.distance(from: afterCharset.startIndex, to: q2) == 1 else { return nil }
        let encoding = afterCharset[afterCharset.startIndex].uppercased()
        let text = afterCharset[afterCharset.index(after: q2)...]
        guard let end = text.range(of: "?=") else { return nil }
        let payload = text[..<end.lowerBound]
        guard !payload.contains(" ") else { return nil }
        let bytes: [UInt8]
        switch encoding {
        case "B": bytes = MIMETransfer.base64(Array(payload.utf8)[...])
        case "Q":
            bytes = MIMETransfer.quotedPrintable(Array(payload.utf8).map { $0 == 95 ? 32 : $0 }[...], header: true)
        default: return nil
        }
        return (MIMECharset.decode(bytes, charset: charset), text[end.upperBound...])
    }

    /// One address of an address list: display name (decoded, may be empty) and addr-spec.
    public struct Address: Sendable, Equatable {
        public var name: String
        public var address: String
    }

    /// An address list (`"Name" <a@b>, c@d, Group: e@f;`), comments dropped, groups flattened.
    /// Entries without an `@` that are not in angle brackets are dropped.
    public static func addresses(_ header: String) -> [Address] {
        var out: [Address] = []
        for entry in splitOutsideQuotesAndAngles(header) {
            var e = stripComments(entry).trimmingCharacters(in: .whitespaces)
            // A group's display name: "Team: a@b" (its closing ";" was a separator).
            if let colon = e.firstIndex(of: ":"), !e[..<colon].contains("<"), !e[..<colon].contains("@"), !e[..<colon].contains("\"") {
                e = String(e[e.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            }
            guard !e.isEmpty else { continue }
            if let lt = e.lastIndex(of: "<"), let gt = e[lt...].firstIndex(of: ">") {
                let address = e[e.index(after: lt)..<gt].trimmingCharacters(in: .whitespaces)
                var name = e[..<lt].trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 { name = String(name.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"") }
                guard !address.isEmpty else { continue }
                out.append(Address(name: decodeWords(name), address: address))
            } else if e.contains("@") {
                out.append(Address(name: "", address: e))
            }
        }
        return out
    }

    private static func splitOutsideQuotesAndAngles(_ s: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false, angle = false, escaped = false
        for c in s {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" && quoted { current.append(c); escaped = true; continue }
            if c == "\"" { quoted.toggle() }
            if !quoted { if c == "<" { angle = true } else if c == ">" { angle = false } }
            if (c == "," || c == ";") && !quoted && !angle { out.append(current); current = ""; continue }
            current.append(c)
        }
        out.append(current)
        return out
    }

    private static func stripComments(_ s: String) -> String {
        var out = ""
        var depth = 0, quoted = false
        for c in s {
            if c == "\"" && depth == 0 { quoted.toggle() }
            if !quoted {
                if c == "(" { depth += 1; continue }
                if c == ")" && depth > 0 { depth -= 1; continue }
            }
            if depth == 0 { out.append(c) }
        }
        return out
    }

    /// An RFC 5322 date (`Tue, 1 Dec 2026 14:06:10 +0100`; day name, seconds and zone optional;
    /// obsolete zones such as `GMT`, `EST` and military letters). Nil when it is not one.
    public static func date(_ s: String) -> Date? {
        var words = stripComments(s).replacingOccurrences(of: ",", with: " ").split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if let first = words.first, Int(first) == nil { words.removeFirst() }  // day name
        guard words.count >= 4, let day = Int(words[0]), var year = Int(words[2]) else { return nil }
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        guard let month = months.firstIndex(of: String(words[1].prefix(3)).lowercased()) else { return nil }
        if words[2].count == 2 { year += year < 50 ? 2000 : 1900 } else if words[2].count == 3 { year += 1900 }
        let time = words[3].split(separator: ":").compactMap { Int($0) }
        guard time.count >= 2, time.count <= 3, time[0] < 24, time[1] < 60, (time.count == 2 || time[2] <= 60) else { return nil }
        var offset = 0
        if words.count >= 5 {
            let zone = words[4]
            if let sign = zone.first, sign == "+" || sign == "-", zone.count == 5, let v = Int(zone.dropFirst()) {
                offset = (sign == "+" ? 1 : -1) * ((v / 100) * 3600 + (v % 100) * 60)
            } else {
                let named = ["ut": 0, "gmt": 0, "z": 0, "est": -5, "edt": -4, "cst": -6, "cdt": -5, "mst": -7, "mdt": -6, "pst": -8, "pdt": -7]
                offset = (named[zone.lowercased()] ?? 0) * 3600
            }
        }
        let seconds = time[0] * 3600 + time[1] * 60 + (time.count == 3 ? min(time[2], 59) : 0) - offset
        return GraphDate.make(year: year, month: month + 1, day: day, seconds: seconds)
    }
}
