import CCrypto

/// AES-256-GCM through libcrypto's EVP interface.
///
/// One instance holds one cipher context for one key; it is not thread-safe, so each thread keeps
/// its own. The caller supplies a 96-bit nonce that must never repeat under the key (see
/// docs/FORMAT.md, "Nonces").
public final class AESGCM {
    public static let tagSize = 16
    public static let nonceSize = 12

    private let ctx: OpaquePointer
    private let key: [UInt8]

    public init(key: Bytes32) throws {
        guard let ctx = EVP_CIPHER_CTX_new() else {
            throw VaultlineError(.crypto, "EVP_CIPHER_CTX_new failed")
        }
        self.ctx = ctx
        self.key = key.bytes
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    /// Encrypts `plaintext` into `out` (which must hold plaintext.count + 16 bytes): ciphertext, then tag.
    public func seal(
        _ plaintext: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
        aad: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer
    ) throws {
        precondition(out.count >= plaintext.count + Self.tagSize && nonce.count == Self.nonceSize)
        let o = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len: Int32 = 0
        let ok = key.withUnsafeBufferPointer { k -> Bool in
            guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
                  vl_gcm_set_ivlen(ctx, Int32(Self.nonceSize)) == 1,
                  EVP_EncryptInit_ex(ctx, nil, nil, k.baseAddress, nonce.baseAddress?.assumingMemoryBound(to: UInt8.self)) == 1
            else { return false }
            if aad.count > 0 {
                guard EVP_EncryptUpdate(ctx, nil, &len, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1
                else { return false }
            }
            guard EVP_EncryptUpdate(ctx, o, &len, plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1
            else { return false }
            var fin: Int32 = 0
            guard EVP_EncryptFinal_ex(ctx, o + Int(len), &fin) == 1 else { return false }
            return vl_gcm_get_tag(ctx, o + plaintext.count, Int32(Self.tagSize)) == 1
        }
        guard ok else { throw VaultlineError(.crypto, "AES-256-GCM encryption failed (code \(ERR_get_error()))") }
    }

    /// Decrypts ciphertext-then-tag into `out` (which must hold sealed.count - 16 bytes).
    /// Returns false when the tag does not authenticate (wrong key or altered bytes).
    public func open(
        _ sealed: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
        aad: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer
    ) -> Bool {
        guard sealed.count >= Self.tagSize, nonce.count == Self.nonceSize else { return false }
        let ctLen = sealed.count - Self.tagSize
        precondition(out.count >= ctLen)
        let o = out.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let s = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len: Int32 = 0
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
        key.withUnsafeBufferPointer { k -> Bool in
            guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
                  vl_gcm_set_ivlen(ctx, Int32(Self.nonceSize)) == 1,
                  EVP_DecryptInit_ex(ctx, nil, nil, k.baseAddress, nonce.baseAddress?.assumingMemoryBound(to: UInt8.self)) == 1
            else { return false }
            if aad.count > 0 {
                guard EVP_DecryptUpdate(ctx, nil, &len, aad.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(aad.count)) == 1
                else { return false }
            }
            if ctLen > 0 {
                guard EVP_DecryptUpdate(ctx, o, &len, s, Int32(ctLen)) == 1 else { return false }
            }
            guard vl_gcm_set_tag(ctx, s + ctLen, Int32(Self.tagSize)) == 1 else { return false }
            var fin: Int32 = 0
            return EVP_DecryptFinal_ex(ctx, o.map { $0 + Int(len) } ?? scratch.baseAddress!, &fin) == 1
        }
        }
    }

    /// Convenience: seal an array, returning ciphertext || tag.
    public func seal(_ plaintext: [UInt8], nonce: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + Self.tagSize)
        try plaintext.withUnsafeBytes { p in
            try nonce.withUnsafeBytes { n in
                try aad.withUnsafeBytes { a in
                    try out.withUnsafeMutableBytes { o in
                        try seal(p, nonce: n, aad: a, into: o)
                    }
                }
            }
        }
        return out
    }

    /// Convenience: open ciphertext || tag; nil when it does not authenticate.
    public func open(_ sealed: UnsafeRawBufferPointer, nonce: [UInt8], aad: [UInt8] = []) -> [UInt8]? {
        guard sealed.count >= Self.tagSize else { return nil }
        var out = [UInt8](repeating: 0, count: sealed.count - Self.tagSize)
        let ok = nonce.withUnsafeBytes { n in
            aad.withUnsafeBytes { a in out.withUnsafeMutableBytes { o in open(sealed, nonce: n, aad: a, into: o) } }
        }
        return ok ? out : nil
    }
}
