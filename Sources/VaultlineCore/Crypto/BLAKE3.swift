import BLAKE3Hashing

/// BLAKE3 keyed hashes as the repository uses them (blob ids of format version 2): the
/// `BLAKE3` module's hasher on `Bytes32` keys and results.
public enum BLAKE3 {
    /// True when this CPU hashes sixteen chunks at a time (AVX-512); otherwise one at a time.
    public static var usesSixteenLanes: Bool { BLAKE3Hasher.usesSixteenLanes }

    /// BLAKE3 keyed hash of `input` under `key`, 32 bytes. `sixteenLanes: false` forces the
    /// scalar path (benchmarks compare the two); true is allowed only where ``usesSixteenLanes``.
    @inlinable public static func keyedHash(
        key: Bytes32, _ input: UnsafeRawBufferPointer, sixteenLanes: Bool = BLAKE3Hasher.usesSixteenLanes
    ) -> Bytes32 {
        Bytes32(words: BLAKE3Hasher.hash(input, key: key.words, flags: BLAKE3Hasher.keyedHash, lanes: sixteenLanes))
    }
}

extension Bytes32 {
    /// The 32 bytes as eight little-endian words (BLAKE3's key and chaining-value layout).
    @usableFromInline var words: SIMD8<UInt32> {
        var w = SIMD8<UInt32>()
        withUnsafeMutableBytes(of: &w) { write(to: $0.baseAddress!) }
        return SIMD8(w[0].littleEndian, w[1].littleEndian, w[2].littleEndian, w[3].littleEndian,
                     w[4].littleEndian, w[5].littleEndian, w[6].littleEndian, w[7].littleEndian)
    }

    @usableFromInline init(words: SIMD8<UInt32>) {
        var le = SIMD8(words[0].littleEndian, words[1].littleEndian, words[2].littleEndian, words[3].littleEndian,
                       words[4].littleEndian, words[5].littleEndian, words[6].littleEndian, words[7].littleEndian)
        self = withUnsafeBytes(of: &le) { Bytes32($0) }
    }
}
