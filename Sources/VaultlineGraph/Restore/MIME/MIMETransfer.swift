import Foundation

/// Content-Transfer-Encodings (RFC 2045 §6) and charsets, decoded tolerantly: real mail has
/// base64 with stray characters and no padding, quoted-printable with bad escapes, and charsets
/// named in many ways.
enum MIMETransfer {
    static func decode(_ body: ArraySlice<UInt8>, encoding: String) -> [UInt8] {
        switch encoding {
        case "base64": base64(body)
        case "quoted-printable": quotedPrintable(body, header: false)
        default: Array(body)
        }
    }

    /// Base64, skipping every byte outside the alphabet; stops at `=`; a trailing group of 2 or
    /// 3 characters still gives its bytes.
    static func base64(_ input: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3 / 4)
        var acc: UInt32 = 0
        var n = 0
        for c in input {
            let v: UInt32
            switch c {
            case 65...90: v = UInt32(c - 65)
            case 97...122: v = UInt32(c - 97 + 26)
            case 48...57: v = UInt32(c - 48 + 52)
            case 43, 45: v = 62  // + (and - of the URL-safe alphabet)
            case 47, 95: v = 63  // / (and _)
            case 61:
                if n == 2 { out.append(UInt8(acc >> 4 & 0xFF)) } else if n == 3 {
                    out.append(UInt8(acc >> 10 & 0xFF))
                    out.append(UInt8(acc >> 2 & 0xFF))
                }
                return out
            default: continue
            }
            acc = acc << 6 | v
            n += 1
            if n == 4 {
                out.append(UInt8(acc >> 16 & 0xFF))
                out.append(UInt8(acc >> 8 & 0xFF))
                out.append(UInt8(acc & 0xFF))
                acc = 0
                n = 0
            }
        }
        if n == 2 { out.append(UInt8(acc >> 4 & 0xFF)) } else if n == 3 {
            out.append(UInt8(acc >> 10 & 0xFF))
            out.append(UInt8(acc >> 2 & 0xFF))
        }
        return out
    }

    /// Quoted-printable: `=XX`, soft line breaks (`=` at a line's end), trailing white space of a
    /// line dropped (RFC 2045 §6.7 rule 3). A bad escape stays as written.
    static func quotedPrintable(_ input: ArraySlice<UInt8>, header: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        let b = Array(input)
        var i = 0
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 65...70: c - 55
            case 97...102: c - 87
            default: nil
            }
        }
        while i < b.count {
            let c = b[i]
            if c == 61 {
                // Soft break: "=" then optional white space then (CR)LF.
                var j = i + 1
                while j < b.count, b[j] == 32 || b[j] == 9 { j += 1 }
                if j < b.count, b[j] == 10 { i = j + 1; continue }
                if j + 1 < b.count, b[j] == 13, b[j + 1] == 10 { i = j + 2; continue }
                if j == b.count { i = j; continue }
                if i + 2 < b.count, let h = hex(b[i + 1]), let l = hex(b[i + 2]) {
                    out.append(h << 4 | l)
                    i += 3
                    continue
                }
                out.append(c)
                i += 1
                continue
            }
            if !header, c == 32 || c == 9 {
                // Drop white space at a line's end.
                var j = i
                while j < b.count, b[j] == 32 || b[j] == 9 { j += 1 }
                if j == b.count || b[j] == 10 || (b[j] == 13 && j + 1 < b.count && b[j + 1] == 10) {
                    i = j
                    continue
                }
            }
            out.append(c)
            i += 1
        }
        return out
    }
}

/// Text in a named charset (MIME names, any case, aliases). UTF-8 and its subsets, Latin-1,
/// Windows-1252 and UTF-16 are decoded here; others through Foundation where it knows them,
/// else as Latin-1 (every byte kept as a character, nothing lost).
public enum MIMECharset {
    public static func decode(_ bytes: [UInt8], charset: String?) -> String {
        let name = (charset ?? "us-ascii").trimmingCharacters(in: CharacterSet(charactersIn: " \t\"'")).lowercased()
        switch name {
        case "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "":
            return String(decoding: bytes, as: UTF8.self)
        case "iso-8859-1", "latin1", "iso8859-1", "l1", "iso_8859-1":
            return String(bytes.map { Character(Unicode.Scalar($0)) })
        case "windows-1252", "cp1252", "x-cp1252":
            return String(String.UnicodeScalarView(bytes.map { windows1252($0) }))
        case "utf-16", "utf-16le", "utf-16be":
            let encoding: String.Encoding = name == "utf-16be" ? .utf16BigEndian : name == "utf-16le" ? .utf16LittleEndian : .utf16
            return String(data: Data(bytes), encoding: encoding) ?? latin1(bytes)
        default:
            let table: [String: String.Encoding] = ["iso-8859-2": .isoLatin2, "windows-1250": .windowsCP1250, "windows-1251": .windowsCP1251,
                                                    "windows-1253": .windowsCP1253, "windows-1254": .windowsCP1254, "shift_jis": .shiftJIS,
                                                    "euc-jp": .japaneseEUC, "iso-2022-jp": .iso2022JP]
            if let encoding = table[name], let s = String(data: Data(bytes), encoding: encoding) { return s }
            // An unknown charset: valid UTF-8 is taken as such (mislabelled mail usually is).
            return String(validating: bytes, as: UTF8.self) ?? latin1(bytes)
        }
    }

    static func latin1(_ bytes: [UInt8]) -> String { String(bytes.map { Character(Unicode.Scalar($0)) }) }

    private static let cp1252: [UInt32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
        0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ]

    private static func windows1252(_ b: UInt8) -> Unicode.Scalar {
        let v = (0x80...0x9F).contains(b) ? cp1252[Int(b - 0x80)] : UInt32(b)
        return Unicode.Scalar(v) ?? Unicode.Scalar(UInt8(ascii: "?"))
    }
}
