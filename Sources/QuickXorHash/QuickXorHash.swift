/// QuickXorHash: the content hash OneDrive for Business and SharePoint give every file
/// (`file.hashes.quickXorHash`, base64 of 20 bytes). Microsoft's description: a 160-bit
/// register; byte i of the input is XORed in at bit position 11·i mod 160 (wrapping around the
/// register), and the input's length as a little-endian u64 is XORed into the last 8 bytes.
///
/// Used by the restore to tell whether a file in the tenant already equals the backup's without
/// downloading it, and by the simulator to answer as Graph does.
public struct QuickXorHash: Sendable {
    /// The register: bits 0..<64, 64..<128 and 128..<160 (the last cell holds 32).
    private var cells: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private var length: UInt64 = 0
    /// Where the next byte goes, in bits (0..<160).
    private var shift = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var position = shift
        for byte in bytes {
            xorByte(byte, at: position)
            position += 11
            if position >= 160 { position -= 160 }
        }
        shift = position
        length &+= UInt64(bytes.count)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// XORs one byte in at bit `position`, wrapping past bit 159 to bit 0.
    @inline(__always)
    private mutating func xorByte(_ byte: UInt8, at position: Int) {
        let value = UInt64(byte)
        switch position {
        case 0..<57: cells.0 ^= value << UInt64(position)
        case 57..<64:
            cells.0 ^= value << UInt64(position)
            cells.1 ^= value >> UInt64(64 - position)
        case 64..<121: cells.1 ^= value << UInt64(position - 64)
        case 121..<128:
            cells.1 ^= value << UInt64(position - 64)
            cells.2 ^= value >> UInt64(128 - position)
        case 128..<153: cells.2 ^= value << UInt64(position - 128)
        default:
            // Bits 153..<160: the byte's high bits wrap to the register's start.
            cells.2 ^= (value << UInt64(position - 128)) & 0xFFFF_FFFF
            cells.0 ^= value >> UInt64(160 - position)
        }
    }

    /// The 20-byte digest.
    public func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: cells.0 >> UInt64(8 * i))
            out[8 + i] = UInt8(truncatingIfNeeded: cells.1 >> UInt64(8 * i))
        }
        for i in 0..<4 { out[16 + i] = UInt8(truncatingIfNeeded: cells.2 >> UInt64(8 * i)) }
        for i in 0..<8 { out[12 + i] ^= UInt8(truncatingIfNeeded: length >> UInt64(8 * i)) }
        return out
    }

    /// The digest in base64, as Graph writes it.
    public func base64() -> String {
        Self.base64(finalize())
    }

    public static func hash(_ bytes: [UInt8]) -> String {
        var h = QuickXorHash()
        h.update(bytes)
        return h.base64()
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i]), b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0, b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(table[Int(v >> 18 & 63)])
            out.append(table[Int(v >> 12 & 63)])
            out.append(i + 1 < bytes.count ? table[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
