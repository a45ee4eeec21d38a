import CCrypto

/// A 32-byte digest or key, stored inline (no heap allocation).
public struct Bytes32: Hashable, Sendable, Comparable {
    public var a: UInt64, b: UInt64, c: UInt64, d: UInt64

    public init(a: UInt64, b: UInt64, c: UInt64, d: UInt64) {
        self.a = a; self.b = b; self.c = c; self.d = d
    }

    /// Builds from 32 bytes; `bytes` must hold at least 32.
    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 32)
        a = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        b = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        c = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        d = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self = bytes.withUnsafeBytes { Bytes32($0) }
    }

    /// Parses 64 lowercase or uppercase hex digits.
    public init?(hex: some StringProtocol) {
        guard let raw = decodeHex(hex), raw.count == 32 else { return nil }
        self.init(bytes: raw)
    }

    public static let zero = Bytes32(a: 0, b: 0, c: 0, d: 0)

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { write(to: $0.baseAddress!) }
        return out
    }

    /// Writes the 32 bytes, big-endian words, to `p`.
    @inlinable public func write(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: a.bigEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: b.bigEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: c.bigEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: d.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    public var hex: String { encodeHex(bytes) }

    public static func < (l: Bytes32, r: Bytes32) -> Bool {
        (l.a, l.b, l.c, l.d) < (r.a, r.b, r.c, r.d)
    }
}

/// SHA-256 through libcrypto (SHA-NI where the CPU has it).
public enum SHA256 {
    public static func hash(_ data: UnsafeRawBufferPointer) -> Bytes32 {
        var out = Bytes32.zero
        withUnsafeTemporaryAllocation(byteCount: 32, alignment: 8) { buf in
            _ = CCrypto.SHA256(
                data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count,
                buf.baseAddress!.assumingMemoryBound(to: UInt8.self))
            out = Bytes32(UnsafeRawBufferPointer(buf))
        }
        return out
    }

    public static func hash(_ data: [UInt8]) -> Bytes32 {
        data.withUnsafeBytes { hash($0) }
    }

    /// An incremental hasher for data that arrives in pieces (files read from disk).
    public final class Hasher {
        private let ctx: OpaquePointer

        public init() throws {
            guard let ctx = EVP_MD_CTX_new() else {
                throw VaultlineError(.crypto, "EVP_MD_CTX_new failed")
            }
            guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else {
                EVP_MD_CTX_free(ctx)
                throw VaultlineError(.crypto, "EVP_DigestInit_ex(sha256) failed")
            }
            self.ctx = ctx
        }

        public func update(_ data: UnsafeRawBufferPointer) {
            _ = EVP_DigestUpdate(ctx, data.baseAddress, data.count)
        }

        /// The digest; call once.
        public func finalize() -> Bytes32 {
            var out = Bytes32.zero
            withUnsafeTemporaryAllocation(byteCount: 32, alignment: 8) { buf in
                var len: UInt32 = 32
                _ = EVP_DigestFinal_ex(ctx, buf.baseAddress!.assumingMemoryBound(to: UInt8.self), &len)
                out = Bytes32(UnsafeRawBufferPointer(buf))
            }
            return out
        }

        deinit { EVP_MD_CTX_free(ctx) }
    }
}
