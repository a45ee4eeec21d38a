import BLAKE3Rounds

/// Eight BLAKE3 compressions side by side, one input per lane of a `SIMD8<UInt32>`.
///
/// This module is compiled for `haswell` (AVX2) on x86-64 (Package.swift): a lane vector is one
/// YMM register, though LLVM runs much of the rounds on 128-bit halves (measured 0.8–1.0 GB/s,
/// against 3.1 GB/s for sixteen lanes and 0.5–0.6 GB/s scalar; HMAC-SHA256 with SHA extensions
/// is 1.3 GB/s, which is why `init` picks BLAKE3 only where AVX-512 is). Nothing here may run unless `BLAKE3Hasher` (BLAKE3Hashing) has checked the CPU
/// first; it is the only caller.
public enum BLAKE3Lanes8: LaneShape {
    public typealias Lanes = SIMD8<UInt32>

    @inline(__always) public static func add(_ a: Lanes, _ b: Lanes) -> Lanes { a &+ b }
    @inline(__always) public static func xor(_ a: Lanes, _ b: Lanes) -> Lanes { a ^ b }
    @inline(__always) public static func rotateRight(_ x: Lanes, _ n: UInt32) -> Lanes { (x &>> n) | (x &<< (32 - n)) }
    @inline(__always) public static func splat(_ x: UInt32) -> Lanes { Lanes(repeating: x) }

    /// ``hashLanes(_:_:stride:count:blocks:key:counter:incrementCounter:flags:startFlags:endFlags:output:)``
    /// for eight lanes, compiled here with AVX2.
    public static func hash(
        _ base: UnsafeRawPointer, stride: Int, count: Int, blocks: Int, key: SIMD8<UInt32>,
        counter: UInt64, incrementCounter: Bool, flags: UInt32, startFlags: UInt32, endFlags: UInt32,
        output: UnsafeMutableRawPointer
    ) {
        hashLanes(
            Self.self, base, stride: stride, count: count, blocks: blocks, key: key, counter: counter,
            incrementCounter: incrementCounter, flags: flags, startFlags: startFlags, endFlags: endFlags, output: output)
    }

    /// Each input's block is two rows (words 0–7, 8–15); two 8×8 transposes give the sixteen
    /// message vectors.
    @inline(__always)
    public static func message(_ inputs: UnsafePointer<UnsafeRawPointer>, offset o: Int) -> Message<Lanes> {
        var lo: Rows = (
            (inputs[0] + o).loadUnaligned(as: Lanes.self), (inputs[1] + o).loadUnaligned(as: Lanes.self),
            (inputs[2] + o).loadUnaligned(as: Lanes.self), (inputs[3] + o).loadUnaligned(as: Lanes.self),
            (inputs[4] + o).loadUnaligned(as: Lanes.self), (inputs[5] + o).loadUnaligned(as: Lanes.self),
            (inputs[6] + o).loadUnaligned(as: Lanes.self), (inputs[7] + o).loadUnaligned(as: Lanes.self))
        let p = o + 32
        var hi: Rows = (
            (inputs[0] + p).loadUnaligned(as: Lanes.self), (inputs[1] + p).loadUnaligned(as: Lanes.self),
            (inputs[2] + p).loadUnaligned(as: Lanes.self), (inputs[3] + p).loadUnaligned(as: Lanes.self),
            (inputs[4] + p).loadUnaligned(as: Lanes.self), (inputs[5] + p).loadUnaligned(as: Lanes.self),
            (inputs[6] + p).loadUnaligned(as: Lanes.self), (inputs[7] + p).loadUnaligned(as: Lanes.self))
        transpose(&lo)
        transpose(&hi)
        return Message(lo.0, lo.1, lo.2, lo.3, lo.4, lo.5, lo.6, lo.7, hi.0, hi.1, hi.2, hi.3, hi.4, hi.5, hi.6, hi.7)
    }

    /// One 8×8 transpose puts input i's chaining value in row i.
    @inline(__always)
    public static func store(_ h: ChainingValues<Lanes>, count: Int, to output: UnsafeMutableRawPointer) {
        var r: Rows = (h.h0, h.h1, h.h2, h.h3, h.h4, h.h5, h.h6, h.h7)
        transpose(&r)
        withUnsafeBytes(of: &r) { rows in
            output.copyMemory(from: rows.baseAddress!, byteCount: count * 32)
        }
    }

    typealias Rows = (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes)

    /// Transposes an 8×8 matrix of words with three perfect unshuffles (see BLAKE3Lanes16).
    @inline(__always)
    static func transpose(_ r: inout Rows) {
        for _ in 0..<3 {
            r = (evens(r.0, r.1), evens(r.2, r.3), evens(r.4, r.5), evens(r.6, r.7),
                 odds(r.0, r.1), odds(r.2, r.3), odds(r.4, r.5), odds(r.6, r.7))
        }
    }

    @inline(__always) static func evens(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(lowHalf: a.evenHalf, highHalf: b.evenHalf) }
    @inline(__always) static func odds(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(lowHalf: a.oddHalf, highHalf: b.oddHalf) }
}
