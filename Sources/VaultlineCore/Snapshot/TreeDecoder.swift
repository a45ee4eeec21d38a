/// Reads a stored tree's JSON (docs/FORMAT.md, "Trees") straight into ``Tree``, by hand:
/// Foundation's `JSONDecoder` spent 57% of a search through a mail snapshot on trees, most of
/// it unescaping the Graph JSON that mail nodes carry in their metadata.
///
/// It takes what `JSONDecoder` takes for these types and refuses the rest, and a key given twice
/// (which readers settle differently; the writer never repeats one): `name` and `kind` are
/// required; integers must be integers in their type's range; strings must be valid UTF-8 with
/// no raw control characters; `null` stands for an absent optional; unknown keys are skipped
/// (a newer writer's fields). Nesting is limited to 64 levels in skipped values.
struct TreeDecoder {
    private let bytes: [UInt8]
    private var at = 0

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func decode(_ bytes: [UInt8]) throws(TreeDecodingError) -> Tree {
        var reader = TreeDecoder(bytes)
        let tree = try reader.tree()
        reader.skipSpace()
        guard reader.at == bytes.count else { throw reader.failure("bytes after the tree") }
        return tree
    }

    private mutating func tree() throws(TreeDecodingError) -> Tree {
        var nodes: [TreeNode]?
        var parts: [String]?
        try object { (reader: inout TreeDecoder, key: String) throws(TreeDecodingError) in
            switch key {
            case "nodes" where nodes != nil, "parts" where parts != nil: throw reader.failure("the key \"\(key)\" twice in a tree")
            case "nodes": nodes = try reader.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.array { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.node() } }
            case "parts": parts = try reader.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.strings() }
            default: try reader.skipValue(depth: 0)
            }
        }
        guard let nodes else { throw failure("the tree has no \"nodes\"") }
        var tree = Tree(sortedNodes: nodes)
        tree.parts = parts
        return tree
    }

    /// A node's known keys, by bit: a key given twice is refused (readers disagree on which
    /// one counts; our writer never repeats one).
    private static let nodeKeys = ["name", "kind", "mode", "mtimeNs", "uid", "gid", "inode", "device", "size", "content", "subtree",
                                   "linkTarget", "damaged", "metadata"]

    private mutating func node() throws(TreeDecodingError) -> TreeNode {
        var name: String?
        var kind: TreeNode.Kind?
        var node = TreeNode(name: "", kind: .file)
        var seen: UInt32 = 0
        try object { (r: inout TreeDecoder, key: String) throws(TreeDecodingError) in
            if let bit = Self.nodeKeys.firstIndex(of: key) {
                guard seen & (1 << bit) == 0 else { throw r.failure("the key \"\(key)\" twice in a node") }
                seen |= 1 << bit
            }
            switch key {
            case "name": name = try r.string()
            case "kind":
                let text = try r.string()
                guard let k = TreeNode.Kind(rawValue: text) else { throw r.failure("unknown node kind \"\(text)\"") }
                kind = k
            case "mode": node.mode = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt32.self) }
            case "mtimeNs": node.mtimeNs = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(Int64.self) }
            case "uid": node.uid = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt32.self) }
            case "gid": node.gid = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt32.self) }
            case "inode": node.inode = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt64.self) }
            case "device": node.device = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt64.self) }
            case "size": node.size = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.integer(UInt64.self) }
            case "content": node.content = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.strings() }
            case "subtree": node.subtree = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.string() }
            case "linkTarget": node.linkTarget = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.string() }
            case "damaged": node.damaged = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.string() }
            case "metadata":
                node.metadata = try r.optional { (r: inout TreeDecoder) throws(TreeDecodingError) in
                    var map: [String: String] = [:]
                    try r.object { (r: inout TreeDecoder, key: String) throws(TreeDecodingError) in
                        guard map[key] == nil else { throw r.failure("the metadata key \"\(key)\" twice") }
                        map[key] = try r.string()
                    }
                    return map
                }
            default: try r.skipValue(depth: 0)
            }
        }
        guard let name else { throw failure("a node has no \"name\"") }
        guard let kind else { throw failure("node \"\(name)\" has no \"kind\"") }
        node.name = name
        node.kind = kind
        return node
    }

    // MARK: JSON

    private mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
    }

    private func failure(_ what: String) -> TreeDecodingError { TreeDecodingError(message: what, offset: at) }

    private mutating func expect(_ byte: UInt8) throws(TreeDecodingError) {
        skipSpace()
        guard at < bytes.count, bytes[at] == byte else { throw failure("expected \"\(Character(Unicode.Scalar(byte)))\"") }
        at += 1
    }

    /// `null` (nil) or a value.
    private mutating func optional<T>(_ value: (inout TreeDecoder) throws(TreeDecodingError) -> T) throws(TreeDecodingError) -> T? {
        skipSpace()
        if bytes.count - at >= 4, bytes[at] == 0x6E, bytes[at + 1] == 0x75, bytes[at + 2] == 0x6C, bytes[at + 3] == 0x6C {
            at += 4
            return nil
        }
        return try value(&self)
    }

    /// Calls `member` with each key of an object, the reader placed at the key's value.
    private mutating func object(_ member: (inout TreeDecoder, String) throws(TreeDecodingError) -> Void) throws(TreeDecodingError) {
        try expect(0x7B)
        skipSpace()
        if at < bytes.count, bytes[at] == 0x7D { at += 1; return }
        while true {
            let key = try string()
            try expect(0x3A)
            try member(&self, key)
            skipSpace()
            guard at < bytes.count else { throw failure("the object does not end") }
            if bytes[at] == 0x2C { at += 1; continue }
            if bytes[at] == 0x7D { at += 1; return }
            throw failure("expected \",\" or \"}\"")
        }
    }

    private mutating func array<T>(_ element: (inout TreeDecoder) throws(TreeDecodingError) -> T) throws(TreeDecodingError) -> [T] {
        try expect(0x5B)
        var out: [T] = []
        skipSpace()
        if at < bytes.count, bytes[at] == 0x5D { at += 1; return out }
        while true {
            out.append(try element(&self))
            skipSpace()
            guard at < bytes.count else { throw failure("the array does not end") }
            if bytes[at] == 0x2C { at += 1; continue }
            if bytes[at] == 0x5D { at += 1; return out }
            throw failure("expected \",\" or \"]\"")
        }
    }

    private mutating func strings() throws(TreeDecodingError) -> [String] {
        try array { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.string() }
    }

    /// An integer of type `T`, written as JSON writes integers: no fraction, no exponent, no
    /// leading zeros.
    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(TreeDecodingError) -> T {
        skipSpace()
        let negative = at < bytes.count && bytes[at] == 0x2D
        if negative { at += 1 }
        let start = at
        var value: T = 0
        while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
            let digit = T(bytes[at] - 0x30)
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = negative ? times.subtractingReportingOverflow(digit) : times.addingReportingOverflow(digit)
            guard !o1, !o2 else { throw failure("a number out of range for \(T.self)") }
            value = next
            at += 1
        }
        guard at > start, !(bytes[start] == 0x30 && at - start > 1) else { throw failure("expected an integer") }
        if at < bytes.count, bytes[at] == 0x2E || bytes[at] == 0x65 || bytes[at] == 0x45 { throw failure("expected an integer, found a fraction or exponent") }
        return value
    }

    private mutating func string() throws(TreeDecodingError) -> String {
        try expect(0x22)
        let start = at
        // Fast path: no escapes (names, ids, most metadata).
        while at < bytes.count {
            let b = bytes[at]
            if b == 0x22 {
                defer { at += 1 }
                return try text(bytes[start..<at])
            }
            if b == 0x5C { break }
            guard b >= 0x20 else { throw failure("a control character in a string") }
            at += 1
        }
        var out = Array(bytes[start..<at])
        while at < bytes.count {
            let b = bytes[at]
            at += 1
            switch b {
            case 0x22:
                return try text(out[...])
            case 0x5C:
                guard at < bytes.count else { throw failure("the string does not end") }
                let e = bytes[at]
                at += 1
                switch e {
                case 0x22, 0x5C, 0x2F: out.append(e)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard bytes.count - at >= 6, bytes[at] == 0x5C, bytes[at + 1] == 0x75 else { throw failure("an unpaired surrogate") }
                        at += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw failure("an unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw failure("an unpaired surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw failure("an invalid \\u escape") }
                    out += Array(String(Character(u)).utf8)
                default:
                    throw failure("an invalid escape")
                }
            default:
                guard b >= 0x20 else { throw failure("a control character in a string") }
                out.append(b)
            }
        }
        throw failure("the string does not end")
    }

    private mutating func hex4() throws(TreeDecodingError) -> UInt32 {
        guard bytes.count - at >= 4 else { throw failure("a short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[at]
            let d: UInt32
            switch b {
            case 0x30...0x39: d = UInt32(b - 0x30)
            case 0x41...0x46: d = UInt32(b - 0x41 + 10)
            case 0x61...0x66: d = UInt32(b - 0x61 + 10)
            default: throw failure("an invalid \\u escape")
            }
            v = v << 4 | d
            at += 1
        }
        return v
    }

    private func text(_ utf8: ArraySlice<UInt8>) throws(TreeDecodingError) -> String {
        guard let s = String(validating: utf8, as: UTF8.self) else { throw failure("a string that is not UTF-8") }
        return s
    }

    /// Skips any JSON value (an unknown key's).
    private mutating func skipValue(depth: Int) throws(TreeDecodingError) {
        guard depth < 64 else { throw failure("nesting deeper than 64") }
        skipSpace()
        guard at < bytes.count else { throw failure("expected a value") }
        switch bytes[at] {
        case 0x22: _ = try string()
        case 0x7B: try object { (r: inout TreeDecoder, _: String) throws(TreeDecodingError) in try r.skipValue(depth: depth + 1) }
        case 0x5B: _ = try array { (r: inout TreeDecoder) throws(TreeDecodingError) in try r.skipValue(depth: depth + 1) }
        case 0x74: try literal("true")
        case 0x66: try literal("false")
        case 0x6E: try literal("null")
        default:
            // A number: sign, digits, fraction, exponent.
            let start = at
            while at < bytes.count, "+-0123456789.eE".utf8.contains(bytes[at]) { at += 1 }
            guard at > start else { throw failure("expected a value") }
        }
    }

    private mutating func literal(_ word: String) throws(TreeDecodingError) {
        let utf8 = Array(word.utf8)
        guard bytes.count - at >= utf8.count, bytes[at..<(at + utf8.count)].elementsEqual(utf8) else { throw failure("expected \(word)") }
        at += utf8.count
    }
}

struct TreeDecodingError: Error, CustomStringConvertible {
    var message: String
    var offset: Int
    var description: String { "\(message) at byte \(offset)" }
}
