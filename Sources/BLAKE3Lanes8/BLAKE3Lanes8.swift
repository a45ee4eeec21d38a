import BLAKE3Rounds

/// Eight BLAKE3 compressions side by side, one input per lane of a `SIMD8<UInt32>`.
///
/// This module is compiled for `haswell` (AVX2) on x86-64 (Package.swift): a lane vector is one
/// YMM register. The transposes stay inside 128-bit halves until one last exchange of halves:
/// built from `evenHalf`/`lowHalf:highHalf:` as in BLAKE3Lanes16, LLVM went on to run the
/// rounds on 128-bit halves, at half the speed (67 against 35 ms for 64 MiB). Nothing here may
/// run unless `BLAKE3Hasher` (BLAKE3Hashing) has checked the CPU first; it is the only caller.
///
/// The arithmetic and `hash` repeat BLAKE3Lanes16's on purpose: each must be compiled in the
/// module whose `-target-cpu` it needs (Swift has no per-function target attributes).
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

    /// Transposes an 8×8 matrix of words the AVX2 way: 32-bit and 64-bit interleaves inside
    /// each 128-bit half, then one exchange of halves.
    @inline(__always)
    static func transpose(_ r: inout Rows) {
        let t0 = low32(r.0, r.1), t1 = high32(r.0, r.1), t2 = low32(r.2, r.3), t3 = high32(r.2, r.3)
        let t4 = low32(r.4, r.5), t5 = high32(r.4, r.5), t6 = low32(r.6, r.7), t7 = high32(r.6, r.7)
        let u0 = low64(t0, t2), u1 = high64(t0, t2), u2 = low64(t1, t3), u3 = high64(t1, t3)
        let u4 = low64(t4, t6), u5 = high64(t4, t6), u6 = low64(t5, t7), u7 = high64(t5, t7)
        r = (lowHalves(u0, u4), lowHalves(u1, u5), lowHalves(u2, u6), lowHalves(u3, u7),
             highHalves(u0, u4), highHalves(u1, u5), highHalves(u2, u6), highHalves(u3, u7))
    }

    @inline(__always) static func low32(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5]) }
    @inline(__always) static func high32(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7]) }
    @inline(__always) static func low64(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5]) }
    @inline(__always) static func high64(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7]) }
    @inline(__always) static func lowHalves(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]) }
    @inline(__always) static func highHalves(_ a: Lanes, _ b: Lanes) -> Lanes { Lanes(a[4], a[5], a[6], a[7], b[4], b[5], b[6], b[7]) }
}
