import BLAKE3Hashing

/// BLAKE3 keyed hashes as the repository uses them (blob ids of format version 2): the
/// `BLAKE3` module's hasher on `Bytes32` keys and results.
public enum BLAKE3 {
    public typealias Path = BLAKE3Hasher.Path

    /// How many chunks this CPU hashes at once: 16 (AVX-512), 8 (AVX2) or 1.
    public static var path: Path { BLAKE3Hasher.path }

    /// BLAKE3 keyed hash of `input` under `key`, 32 bytes. `path` forces a narrower path than
    /// the CPU's widest (benchmarks compare them); it must be available on this CPU.
    @inlinable public static func keyedHash(key: Bytes32, _ input: UnsafeRawBufferPointer, path: Path = BLAKE3Hasher.path) -> Bytes32 {
        Bytes32(words: BLAKE3Hasher.hash(input, key: key.words, flags: BLAKE3Hasher.keyedHash, path: path))
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
