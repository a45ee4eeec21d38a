import VaultlineCore

/// The spill table's own encoding of a tree node: every node of a collection the round touches
/// goes in and comes out once, so JSON (as trees are stored) would be paid twice per item for
/// nothing. Private to one process run: nothing else reads it.
///
/// `kind` (1 byte), a presence mask (2 bytes, little-endian), then the fields present in
/// declaration order: integers as 8 bytes little-endian, strings as a LEB128 length and UTF-8,
/// `content` as a count and strings, `metadata` as a count and key/value strings.
enum NodeCoding {
    private enum Field: Int {
        case mode, mtimeNs, uid, gid, inode, device, size, content, subtree, linkTarget, metadata, damaged
    }

    static func encode(_ n: TreeNode) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + (n.metadata?.values.reduce(0) { $0 + $1.utf8.count } ?? 0))
        func int(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func length(_ v: Int) {
            var v = UInt(v)
            while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        func string(_ s: String) { length(s.utf8.count); out += s.utf8 }
        let kind: UInt8 = switch n.kind { case .file: 0; case .dir: 1; case .symlink: 2 }
        out.append(kind)
        string(n.name)
        var mask = 0
        func flag(_ f: Field, _ present: Bool) { if present { mask |= 1 << f.rawValue } }
        flag(.mode, n.mode != nil)
        flag(.mtimeNs, n.mtimeNs != nil)
        flag(.uid, n.uid != nil)
        flag(.gid, n.gid != nil)
        flag(.inode, n.inode != nil)
        flag(.device, n.device != nil)
        flag(.size, n.size != nil)
        flag(.content, n.content != nil)
        flag(.subtree, n.subtree != nil)
        flag(.linkTarget, n.linkTarget != nil)
        flag(.metadata, n.metadata != nil)
        flag(.damaged, n.damaged != nil)
        out.append(UInt8(mask & 0xff))
        out.append(UInt8(mask >> 8))
        if let v = n.mode { int(UInt64(v)) }
        if let v = n.mtimeNs { int(UInt64(bitPattern: v)) }
        if let v = n.uid { int(UInt64(v)) }
        if let v = n.gid { int(UInt64(v)) }
        if let v = n.inode { int(v) }
        if let v = n.device { int(v) }
        if let v = n.size { int(v) }
        if let c = n.content { length(c.count); c.forEach(string) }
        if let v = n.subtree { string(v) }
        if let v = n.linkTarget { string(v) }
        if let m = n.metadata {
            length(m.count)
            for (k, v) in m { string(k); string(v) }
        }
        if let v = n.damaged { string(v) }
        return out
    }

    struct Malformed: Error {}

    static func decode(_ bytes: [UInt8]) throws -> TreeNode {
        try bytes.withUnsafeBytes { raw in
            var at = 0
            func byte() throws -> UInt8 {
                guard at < raw.count else { throw Malformed() }
                defer { at += 1 }
                return raw[at]
            }
            func int() throws -> UInt64 {
                guard at + 8 <= raw.count else { throw Malformed() }
                defer { at += 8 }
                return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            }
            func length() throws -> Int {
                var v = 0
                var shift = 0
                while true {
                    let b = try byte()
                    v |= Int(b & 0x7f) << shift
                    if b < 0x80 { return v }
                    shift += 7
                    guard shift < 63 else { throw Malformed() }
                }
            }
            func string() throws -> String {
                let n = try length()
                guard n <= raw.count - at else { throw Malformed() }
                defer { at += n }
                return String(decoding: UnsafeRawBufferPointer(rebasing: raw[at..<(at + n)]), as: UTF8.self)
            }
            let kind: TreeNode.Kind = switch try byte() { case 0: .file; case 1: .dir; default: .symlink }
            var n = TreeNode(name: try string(), kind: kind)
            let mask = Int(try byte()) | Int(try byte()) << 8
            func has(_ f: Field) -> Bool { mask & (1 << f.rawValue) != 0 }
            if has(.mode) { n.mode = UInt32(truncatingIfNeeded: try int()) }
            if has(.mtimeNs) { n.mtimeNs = Int64(bitPattern: try int()) }
            if has(.uid) { n.uid = UInt32(truncatingIfNeeded: try int()) }
            if has(.gid) { n.gid = UInt32(truncatingIfNeeded: try int()) }
            if has(.inode) { n.inode = try int() }
            if has(.device) { n.device = try int() }
            if has(.size) { n.size = try int() }
            if has(.content) { n.content = try (0..<length()).map { _ in try string() } }
            if has(.subtree) { n.subtree = try string() }
            if has(.linkTarget) { n.linkTarget = try string() }
            if has(.metadata) {
                var m: [String: String] = [:]
                for _ in 0..<(try length()) { m[try string()] = try string() }
                n.metadata = m
            }
            if has(.damaged) { n.damaged = try string() }
            return n
        }
    }
}
