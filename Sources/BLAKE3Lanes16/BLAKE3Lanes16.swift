import BLAKE3Rounds

/// Sixteen BLAKE3 compressions side by side, one input per lane of a `SIMD16<UInt32>`.
///
/// This module is compiled for `skylake-avx512` on x86-64 (Package.swift), so a lane vector is
/// one ZMM register, every rotation one `vprold` and every shuffle below one `vpermt2d`. Nothing
/// here may run unless `BLAKE3Hasher` (BLAKE3Hashing) has checked the CPU first; it is the
/// only caller.
public enum BLAKE3Lanes16: LaneShape {
    public typealias Lanes = SIMD16<UInt32>

    @inline(__always) public static func add(_ a: Lanes, _ b: Lanes) -> Lanes { a &+ b }
    @inline(__always) public static func xor(_ a: Lanes, _ b: Lanes) -> Lanes { a ^ b }
    @inline(__always) public static func rotateRight(_ x: Lanes, _ n: UInt32) -> Lanes { (x &>> n) | (x &<< (32 - n)) }
    @inline(__always) public static func splat(_ x: UInt32) -> Lanes { Lanes(repeating: x) }

    /// ``hashLanes(_:_:stride:count:blocks:key:counter:incrementCounter:flags:startFlags:endFlags:output:)``
    /// for sixteen lanes, compiled here with AVX-512.
    public static func hash(
        _ base: UnsafeRawPointer, stride: Int, count: Int, blocks: Int, key: SIMD8<UInt32>,
        counter: UInt64, incrementCounter: Bool, flags: UInt32, startFlags: UInt32, endFlags: UInt32,
        output: UnsafeMutableRawPointer
    ) {
        hashLanes(
            Self.self, base, stride: stride, count: count, blocks: blocks, key: key, counter: counter,
            incrementCounter: incrementCounter, flags: flags, startFlags: startFlags, endFlags: endFlags, output: output)
    }

    /// Row i is input i's whole block; transposed, vector w holds word w of all sixteen.
    @inline(__always)
    public static func message(_ inputs: UnsafePointer<UnsafeRawPointer>, offset o: Int) -> Message<Lanes> {
        var r: Rows = (
            (inputs[0] + o).loadUnaligned(as: Lanes.self), (inputs[1] + o).loadUnaligned(as: Lanes.self),
            (inputs[2] + o).loadUnaligned(as: Lanes.self), (inputs[3] + o).loadUnaligned(as: Lanes.self),
            (inputs[4] + o).loadUnaligned(as: Lanes.self), (inputs[5] + o).loadUnaligned(as: Lanes.self),
            (inputs[6] + o).loadUnaligned(as: Lanes.self), (inputs[7] + o).loadUnaligned(as: Lanes.self),
            (inputs[8] + o).loadUnaligned(as: Lanes.self), (inputs[9] + o).loadUnaligned(as: Lanes.self),
            (inputs[10] + o).loadUnaligned(as: Lanes.self), (inputs[11] + o).loadUnaligned(as: Lanes.self),
            (inputs[12] + o).loadUnaligned(as: Lanes.self), (inputs[13] + o).loadUnaligned(as: Lanes.self),
            (inputs[14] + o).loadUnaligned(as: Lanes.self), (inputs[15] + o).loadUnaligned(as: Lanes.self))
        transpose(&r)
        return Message(r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13, r.14, r.15)
    }

    /// Back to one row per input: row i's first eight words are input i's chaining value.
    @inline(__always)
    public static func store(_ h: ChainingValues<Lanes>, count: Int, to output: UnsafeMutableRawPointer) {
        let zero = Lanes(repeating: 0)
        var r: Rows = (h.h0, h.h1, h.h2, h.h3, h.h4, h.h5, h.h6, h.h7, zero, zero, zero, zero, zero, zero, zero, zero)
        transpose(&r)
        withUnsafeBytes(of: &r) { rows in
            for i in 0..<count {
                output.storeBytes(of: rows.load(fromByteOffset: i * 64, as: SIMD8<UInt32>.self), toByteOffset: i * 32, as: SIMD8<UInt32>.self)
            }
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
}
