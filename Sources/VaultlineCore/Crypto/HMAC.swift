import CCrypto

/// HMAC-SHA256 and HKDF-SHA256 (RFC 5869) through libcrypto.
public enum HMACSHA256 {
    /// HMAC-SHA256(key, data).
    public static func mac(key: Bytes32, _ data: UnsafeRawBufferPointer) -> Bytes32 {
        var out = Bytes32.zero
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { buf in
            let keyPtr = buf.baseAddress!
            key.write(to: keyPtr)
            let mdPtr = (keyPtr + 32).assumingMemoryBound(to: UInt8.self)
            var len: UInt32 = 32
            _ = HMAC(
                EVP_sha256(), keyPtr, 32,
                data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, mdPtr, &len)
            out = Bytes32(UnsafeRawBufferPointer(rebasing: buf[32..<64]))
        }
        return out
    }

    /// HMAC-SHA256 with a key of any length.
    public static func mac(keyBytes: [UInt8], _ data: [UInt8]) -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 32
        keyBytes.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                _ = HMAC(
                    EVP_sha256(), k.baseAddress, Int32(k.count),
                    d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &out, &len)
            }
        }
        return out.withUnsafeBytes { Bytes32($0) }
    }

    /// HKDF-SHA256 producing one 32-byte key: PRK = HMAC(salt, ikm); OKM = HMAC(PRK, info || 0x01).
    public static func hkdf(ikm: [UInt8], salt: [UInt8], info: [UInt8]) -> Bytes32 {
        let prk = mac(keyBytes: salt, ikm)
        return mac(keyBytes: prk.bytes, info + [0x01])
    }
}

/// Cryptographically secure random bytes from libcrypto's DRBG.
public enum SecureRandom {
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else {
            throw VaultlineError(.crypto, "RAND_bytes failed (code \(ERR_get_error()))")
        }
        return out
    }

    public static func key() throws -> Bytes32 {
        let raw = try bytes(32)
        return raw.withUnsafeBytes { Bytes32($0) }
    }
}

/// scrypt key derivation (RFC 7914) through libcrypto's EVP_PBE_scrypt.
public enum Scrypt {
    /// What a key slot may ask for: N a power of two in [2, 2^20], r in [1, 32], p in [1, 16],
    /// memory 128·N·r at most 256 MiB (N·r ≤ 2^21) and work N·r·p at most 2^22 (16 times the
    /// default 2^15·8·1, about 2 s here). A hostile slot cannot make `open` take gigabytes or
    /// minutes. Checked before anything is multiplied.
    public static func acceptable(n: UInt64, r: UInt64, p: UInt64) -> Bool {
        guard n >= 2, n & (n - 1) == 0, n <= 1 << 20, r >= 1, r <= 32, p >= 1, p <= 16 else { return false }
        return n * r <= 1 << 21 && n * r * p <= 1 << 22
    }

    public static func derive(
        password: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64
    ) throws -> Bytes32 {
        var out = [UInt8](repeating: 0, count: 32)
        guard acceptable(n: n, r: r, p: p) else {
            throw VaultlineError(.invalidArgument, "scrypt parameters out of range: N=\(n) r=\(r) p=\(p)")
        }
        // 128·N·r bytes of working memory (at most 256 MiB, by the bounds) plus slack.
        let need = 128 * n * r + 1 << 20
        let rc = password.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { s in
                pw.withMemoryRebound(to: CChar.self) { pwc in
                    EVP_PBE_scrypt(
                        pwc.baseAddress, pw.count, s.baseAddress, s.count, n, r, p, need, &out, 32)
                }
            }
        }
        guard rc == 1 else {
            throw VaultlineError(.crypto, "EVP_PBE_scrypt failed (code \(ERR_get_error()))")
        }
        return out.withUnsafeBytes { Bytes32($0) }
    }
}
