import Testing
@testable import VaultlineCore

@Suite struct CryptoTests {
    @Test func sha256EmptyAndABC() {
        #expect(SHA256.hash([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func hmacRFC4231Case2() {
        let mac = HMACSHA256.mac(keyBytes: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))
        #expect(mac.hex == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func hkdfRFC5869Case1() {
        let okm = HMACSHA256.hkdf(
            ikm: [UInt8](repeating: 0x0b, count: 22), salt: Array(0x00...0x0c), info: Array(0xf0...0xf9))
        #expect(okm.hex == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf")
    }

    @Test func aesGCMKnownAnswer() throws {
        // NIST GCM test case 14: 256-bit zero key, zero IV, one zero block.
        let c = try AESGCM(key: .zero)
        let sealed = try c.seal([UInt8](repeating: 0, count: 16), nonce: [UInt8](repeating: 0, count: 12))
        #expect(encodeHex(sealed) == "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919")
    }

    @Test func aesGCMRejectsTamperingAndWrongAAD() throws {
        let key = try SecureRandom.key()
        let c = try AESGCM(key: key)
        let nonce = try SecureRandom.bytes(12)
        let msg = Array("attack at dawn".utf8)
        var sealed = try c.seal(msg, nonce: nonce, aad: [1, 2, 3])
        #expect(sealed.withUnsafeBytes { c.open($0, nonce: nonce, aad: [1, 2, 3]) } == msg)
        #expect(sealed.withUnsafeBytes { c.open($0, nonce: nonce, aad: [1, 2, 4]) } == nil)
        sealed[3] ^= 1
        #expect(sealed.withUnsafeBytes { c.open($0, nonce: nonce, aad: [1, 2, 3]) } == nil)
        let other = try AESGCM(key: try SecureRandom.key())
        sealed[3] ^= 1
        #expect(sealed.withUnsafeBytes { other.open($0, nonce: nonce, aad: [1, 2, 3]) } == nil)
    }

    @Test func scryptRFC7914() throws {
        let dk = try Scrypt.derive(password: Array("password".utf8), salt: Array("NaCl".utf8), n: 1024, r: 8, p: 16)
        #expect(dk.hex == "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162")
    }

    @Test func hexRoundTrip() {
        let b: [UInt8] = [0, 1, 0xab, 0xff]
        #expect(encodeHex(b) == "0001abff")
        #expect(decodeHex("0001ABff") == b)
        #expect(decodeHex("abc") == nil)
        #expect(decodeHex("zz") == nil)
    }
}

@Suite struct CodecTests {
    @Test(arguments: [Codec.none, .zstd, .lz4])
    func roundTrip(codec: Codec) throws {
        var rng = SplitMix64(seed: 7)
        let inputs: [[UInt8]] = [[], [1], Array(repeating: 7, count: 100_000), rng.bytes(70_000),
                                 Array("the quick brown fox ".utf8).flatMap { Array(repeating: $0, count: 3) }]
        let c = try Compressor(codec: codec)
        let d = Decompressor()
        for input in inputs {
            var out = [UInt8](repeating: 0, count: c.bound(input.count))
            let n = try input.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try c.compress(src, into: $0) } }
            var back = [UInt8](repeating: 0, count: input.count)
            try out.withUnsafeBytes { src in
                try back.withUnsafeMutableBytes { try d.decompress(UnsafeRawBufferPointer(rebasing: src[0..<n]), codec: codec, into: $0) }
            }
            #expect(back == input)
        }
    }

    @Test func corruptZstdIsAnError() throws {
        let garbage: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5]
        var out = [UInt8](repeating: 0, count: 100)
        expectError(VaultlineError.self, .compression) {
            try garbage.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try Decompressor().decompress(src, codec: .zstd, into: $0) } }
        }
    }
}
