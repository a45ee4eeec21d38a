/// Sixteen BLAKE3 compressions side by side: lane i of every vector belongs to input i.
///
/// This module is compiled for `skylake-avx512` on x86-64 (Package.swift), so a
/// `SIMD16<UInt32>` is one ZMM register and every rotation one `vprold`. Nothing here may run
/// unless `BLAKE3Hasher` (BLAKE3Hashing) has checked the CPU first; it is the only caller.
public enum BLAKE3Lanes16 {
    public typealias Lanes = SIMD16<UInt32>

    /// Hashes `count` (1…16) inputs, input i at `base + i * stride`, each `blocks` 64-byte
    /// blocks long, and writes input i's 32-byte chaining value to `output + i * 32`.
    ///
    /// - `key`: the eight key words every input starts from.
    /// - `counter`: input i's counter is `counter + i` when `incrementCounter`, else `counter`
    ///   (chunks count up; parent nodes all use 0).
    /// - `flags` on every block, `startFlags` added on the first block, `endFlags` on the last.
    ///
    /// Lanes past `count` hash input 0 again and their results are dropped, so a short final
    /// group costs one full pass rather than up to fifteen scalar ones.
    public static func hash(
        _ base: UnsafeRawPointer, stride: Int, count: Int, blocks: Int, key: SIMD8<UInt32>,
        counter: UInt64, incrementCounter: Bool, flags: UInt32, startFlags: UInt32, endFlags: UInt32,
        output: UnsafeMutableRawPointer
    ) {
        precondition(count >= 1 && count <= 16 && blocks >= 1)
        var counterLow = Lanes(repeating: 0), counterHigh = Lanes(repeating: 0)
        var inputs = (base, base, base, base, base, base, base, base, base, base, base, base, base, base, base, base)
        withUnsafeMutableBytes(of: &inputs) { slots in
            for i in 0..<count { slots.storeBytes(of: base + i * stride, toByteOffset: i * 8, as: UnsafeRawPointer.self) }
        }
        for i in 0..<16 {
            let c = counter &+ (incrementCounter ? UInt64(i) : 0)
            counterLow[i] = UInt32(truncatingIfNeeded: c)
            counterHigh[i] = UInt32(truncatingIfNeeded: c >> 32)
        }
        var h0 = Lanes(repeating: key[0]), h1 = Lanes(repeating: key[1])
        var h2 = Lanes(repeating: key[2]), h3 = Lanes(repeating: key[3])
        var h4 = Lanes(repeating: key[4]), h5 = Lanes(repeating: key[5])
        var h6 = Lanes(repeating: key[6]), h7 = Lanes(repeating: key[7])
        var blockFlags = flags | startFlags
        for b in 0..<blocks {
            if b == blocks - 1 { blockFlags |= endFlags }
            let o = b * 64
            // Row i is input i's block; transposed, vector w holds word w of all sixteen.
            var m: Rows = (
                (inputs.0 + o).loadUnaligned(as: Lanes.self), (inputs.1 + o).loadUnaligned(as: Lanes.self),
                (inputs.2 + o).loadUnaligned(as: Lanes.self), (inputs.3 + o).loadUnaligned(as: Lanes.self),
                (inputs.4 + o).loadUnaligned(as: Lanes.self), (inputs.5 + o).loadUnaligned(as: Lanes.self),
                (inputs.6 + o).loadUnaligned(as: Lanes.self), (inputs.7 + o).loadUnaligned(as: Lanes.self),
                (inputs.8 + o).loadUnaligned(as: Lanes.self), (inputs.9 + o).loadUnaligned(as: Lanes.self),
                (inputs.10 + o).loadUnaligned(as: Lanes.self), (inputs.11 + o).loadUnaligned(as: Lanes.self),
                (inputs.12 + o).loadUnaligned(as: Lanes.self), (inputs.13 + o).loadUnaligned(as: Lanes.self),
                (inputs.14 + o).loadUnaligned(as: Lanes.self), (inputs.15 + o).loadUnaligned(as: Lanes.self))
            transpose(&m)
            var s = State(
                v0: h0, v1: h1, v2: h2, v3: h3, v4: h4, v5: h5, v6: h6, v7: h7,
                v8: Lanes(repeating: 0x6A09_E667), v9: Lanes(repeating: 0xBB67_AE85),
                v10: Lanes(repeating: 0x3C6E_F372), v11: Lanes(repeating: 0xA54F_F53A),
                v12: counterLow, v13: counterHigh, v14: Lanes(repeating: 64), v15: Lanes(repeating: blockFlags))
            // The seven rounds, each with the message words in the order the schedule gives.
            s.round(m.0, m.1, m.2, m.3, m.4, m.5, m.6, m.7, m.8, m.9, m.10, m.11, m.12, m.13, m.14, m.15)
            s.round(m.2, m.6, m.3, m.10, m.7, m.0, m.4, m.13, m.1, m.11, m.12, m.5, m.9, m.14, m.15, m.8)
            s.round(m.3, m.4, m.10, m.12, m.13, m.2, m.7, m.14, m.6, m.5, m.9, m.0, m.11, m.15, m.8, m.1)
            s.round(m.10, m.7, m.12, m.9, m.14, m.3, m.13, m.15, m.4, m.0, m.11, m.2, m.5, m.8, m.1, m.6)
            s.round(m.12, m.13, m.9, m.11, m.15, m.10, m.14, m.8, m.7, m.2, m.5, m.3, m.0, m.1, m.6, m.4)
            s.round(m.9, m.14, m.11, m.5, m.8, m.12, m.15, m.1, m.13, m.3, m.0, m.10, m.2, m.6, m.4, m.7)
            s.round(m.11, m.15, m.5, m.0, m.1, m.9, m.8, m.6, m.14, m.10, m.2, m.12, m.3, m.4, m.7, m.13)
            h0 = s.v0 ^ s.v8; h1 = s.v1 ^ s.v9; h2 = s.v2 ^ s.v10; h3 = s.v3 ^ s.v11
            h4 = s.v4 ^ s.v12; h5 = s.v5 ^ s.v13; h6 = s.v6 ^ s.v14; h7 = s.v7 ^ s.v15
            blockFlags = flags
        }
        // Back to one row per input: row i's first eight words are input i's chaining value.
        let zero = Lanes(repeating: 0)
        var cv: Rows = (h0, h1, h2, h3, h4, h5, h6, h7, zero, zero, zero, zero, zero, zero, zero, zero)
        transpose(&cv)
        withUnsafeBytes(of: &cv) { rows in
            for i in 0..<count { output.storeBytes(of: rows.load(fromByteOffset: i * 64, as: SIMD8<UInt32>.self), toByteOffset: i * 32, as: SIMD8<UInt32>.self) }
        }
    }

    typealias Rows = (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes)

    /// Transposes a 16×16 matrix of words: four perfect unshuffles (even words of each pair of
    /// rows first, then odd) rotate each word's 8-bit position by four, swapping row and column.
    @inline(__always)
    static func transpose(_ r: inout Rows) {
        for _ in 0..<4 {
            r = (evens(r.0, r.1), evens(r.2, r.3), evens(r.4, r.5), evens(r.6, r.7),
                 evens(r.8, r.9), evens(r.10, r.11), evens(r.12, r.13), evens(r.14, r.15),
                 odds(r.0, r.1), odds(r.2, r.3), odds(r.4, r.5), odds(r.6, r.7),
                 odds(r.8, r.9), odds(r.10, r.11), odds(r.12, r.13), odds(r.14, r.15))
        }
    }

    @inline(__always) static func evens(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(lowHalf: a.evenHalf, highHalf: b.evenHalf) }
    @inline(__always) static func odds(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(lowHalf: a.oddHalf, highHalf: b.oddHalf) }

    /// The sixteen state words of sixteen compressions.
    struct State {
        var v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15: Lanes

        /// One round: G on the four columns, then on the four diagonals.
        @inline(__always)
        mutating func round(
            _ m0: Lanes, _ m1: Lanes, _ m2: Lanes, _ m3: Lanes, _ m4: Lanes, _ m5: Lanes, _ m6: Lanes, _ m7: Lanes,
            _ m8: Lanes, _ m9: Lanes, _ m10: Lanes, _ m11: Lanes, _ m12: Lanes, _ m13: Lanes, _ m14: Lanes, _ m15: Lanes
        ) {
            Self.g(&v0, &v4, &v8, &v12, m0, m1); Self.g(&v1, &v5, &v9, &v13, m2, m3)
            Self.g(&v2, &v6, &v10, &v14, m4, m5); Self.g(&v3, &v7, &v11, &v15, m6, m7)
            Self.g(&v0, &v5, &v10, &v15, m8, m9); Self.g(&v1, &v6, &v11, &v12, m10, m11)
            Self.g(&v2, &v7, &v8, &v13, m12, m13); Self.g(&v3, &v4, &v9, &v14, m14, m15)
        }

        @inline(__always)
        static func g(_ a: inout Lanes, _ b: inout Lanes, _ c: inout Lanes, _ d: inout Lanes, _ x: Lanes, _ y: Lanes) {
            a = a &+ b &+ x; d = rotateRight(d ^ a, 16); c = c &+ d; b = rotateRight(b ^ c, 12)
            a = a &+ b &+ y; d = rotateRight(d ^ a, 8); c = c &+ d; b = rotateRight(b ^ c, 7)
        }

        @inline(__always)
        static func rotateRight(_ x: Lanes, _ n: UInt32) -> Lanes { (x &>> n) | (x &<< (32 - n)) }
    }
}
