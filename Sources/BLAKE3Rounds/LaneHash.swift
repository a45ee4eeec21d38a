/// The BLAKE3 compression written once for any number of lanes: lane i of every vector belongs
/// to input i. A lane shape (``LaneShape``) says how a block of each input becomes sixteen
/// message vectors and how the chaining values go back out; the modules that conform to it
/// (BLAKE3Lanes16 for AVX-512, BLAKE3Lanes8 for AVX2) specialize ``hashLanes(_:_:stride:count:blocks:key:counter:incrementCounter:flags:startFlags:endFlags:output:)``
/// and compile it with their own target flags. Everything here is inlined into them.
public protocol LaneShape {
    associatedtype Lanes: SIMD where Lanes.Scalar == UInt32
    // The arithmetic, on the concrete vector type: the SIMD protocol's generic operators
    // specialize to one scalar operation per lane, the concrete types' to one instruction.
    static func add(_ a: Lanes, _ b: Lanes) -> Lanes
    static func xor(_ a: Lanes, _ b: Lanes) -> Lanes
    static func rotateRight(_ x: Lanes, _ n: UInt32) -> Lanes
    static func splat(_ x: UInt32) -> Lanes
    /// The sixteen message words of the block at `offset` of every input, one vector per word.
    static func message(_ inputs: UnsafePointer<UnsafeRawPointer>, offset: Int) -> Message<Lanes>
    /// Writes lane i's eight chaining-value words to `output + i * 32` for i in 0..<count.
    static func store(_ cv: ChainingValues<Lanes>, count: Int, to output: UnsafeMutableRawPointer)
}

@frozen public struct Message<V: SIMD> where V.Scalar == UInt32 {
    public var m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15: V
    @inlinable @inline(__always)
    public init(_ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V, _ m5: V, _ m6: V, _ m7: V,
                _ m8: V, _ m9: V, _ m10: V, _ m11: V, _ m12: V, _ m13: V, _ m14: V, _ m15: V) {
        (self.m0, self.m1, self.m2, self.m3, self.m4, self.m5, self.m6, self.m7) = (m0, m1, m2, m3, m4, m5, m6, m7)
        (self.m8, self.m9, self.m10, self.m11, self.m12, self.m13, self.m14, self.m15) = (m8, m9, m10, m11, m12, m13, m14, m15)
    }
}

@frozen public struct ChainingValues<V: SIMD> where V.Scalar == UInt32 {
    public var h0, h1, h2, h3, h4, h5, h6, h7: V
    @inlinable @inline(__always)
    public init(_ h0: V, _ h1: V, _ h2: V, _ h3: V, _ h4: V, _ h5: V, _ h6: V, _ h7: V) {
        (self.h0, self.h1, self.h2, self.h3, self.h4, self.h5, self.h6, self.h7) = (h0, h1, h2, h3, h4, h5, h6, h7)
    }
}

/// Hashes `count` (1…lanes) inputs, input i at `base + i * stride`, each `blocks` 64-byte
/// blocks long, and writes input i's 32-byte chaining value to `output + i * 32`.
///
/// - `key`: the eight key words every input starts from.
/// - `counter`: input i's counter is `counter + i` when `incrementCounter`, else `counter`
///   (chunks count up; parent nodes all use 0).
/// - `flags` on every block, `startFlags` added on the first block, `endFlags` on the last.
///
/// Lanes past `count` hash input 0 again and their results are dropped, so a short final
/// group costs one full pass rather than several scalar ones.
@inlinable @inline(__always)
public func hashLanes<Shape: LaneShape>(
    _ shape: Shape.Type, _ base: UnsafeRawPointer, stride: Int, count: Int, blocks: Int, key: SIMD8<UInt32>,
    counter: UInt64, incrementCounter: Bool, flags: UInt32, startFlags: UInt32, endFlags: UInt32,
    output: UnsafeMutableRawPointer
) {
    typealias V = Shape.Lanes
    typealias S = Shape
    let width = V.scalarCount
    precondition(count >= 1 && count <= width && blocks >= 1)
    // The counters go through memory: built lane by lane in registers, the compiler keeps
    // them as scalars and splits the first rounds into scalar code.
    let (counterLow, counterHigh) = withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 2 * width) { words in
        for i in 0..<width {
            let c = counter &+ (incrementCounter ? UInt64(i) : 0)
            words[i] = UInt32(truncatingIfNeeded: c)
            words[width + i] = UInt32(truncatingIfNeeded: c >> 32)
        }
        let raw = UnsafeRawPointer(words.baseAddress!)
        return (raw.loadUnaligned(as: V.self), raw.loadUnaligned(fromByteOffset: 4 * width, as: V.self))
    }
    withUnsafeTemporaryAllocation(of: UnsafeRawPointer.self, capacity: width) { inputs in
        for i in 0..<width { inputs[i] = base + (i < count ? i : 0) * stride }
        let inputs = UnsafePointer(inputs.baseAddress!)
        var h = ChainingValues(
            S.splat(key[0]), S.splat(key[1]), S.splat(key[2]), S.splat(key[3]),
            S.splat(key[4]), S.splat(key[5]), S.splat(key[6]), S.splat(key[7]))
        var blockFlags = flags | startFlags
        for b in 0..<blocks {
            if b == blocks - 1 { blockFlags |= endFlags }
            let m = Shape.message(inputs, offset: b * 64)
            var s = LaneState<Shape>(
                v0: h.h0, v1: h.h1, v2: h.h2, v3: h.h3, v4: h.h4, v5: h.h5, v6: h.h6, v7: h.h7,
                v8: S.splat(0x6A09_E667), v9: S.splat(0xBB67_AE85), v10: S.splat(0x3C6E_F372), v11: S.splat(0xA54F_F53A),
                v12: counterLow, v13: counterHigh, v14: S.splat(64), v15: S.splat(blockFlags))
            // The seven rounds, each with the message words in the order the schedule gives.
            s.round(m.m0, m.m1, m.m2, m.m3, m.m4, m.m5, m.m6, m.m7, m.m8, m.m9, m.m10, m.m11, m.m12, m.m13, m.m14, m.m15)
            s.round(m.m2, m.m6, m.m3, m.m10, m.m7, m.m0, m.m4, m.m13, m.m1, m.m11, m.m12, m.m5, m.m9, m.m14, m.m15, m.m8)
            s.round(m.m3, m.m4, m.m10, m.m12, m.m13, m.m2, m.m7, m.m14, m.m6, m.m5, m.m9, m.m0, m.m11, m.m15, m.m8, m.m1)
            s.round(m.m10, m.m7, m.m12, m.m9, m.m14, m.m3, m.m13, m.m15, m.m4, m.m0, m.m11, m.m2, m.m5, m.m8, m.m1, m.m6)
            s.round(m.m12, m.m13, m.m9, m.m11, m.m15, m.m10, m.m14, m.m8, m.m7, m.m2, m.m5, m.m3, m.m0, m.m1, m.m6, m.m4)
            s.round(m.m9, m.m14, m.m11, m.m5, m.m8, m.m12, m.m15, m.m1, m.m13, m.m3, m.m0, m.m10, m.m2, m.m6, m.m4, m.m7)
            s.round(m.m11, m.m15, m.m5, m.m0, m.m1, m.m9, m.m8, m.m6, m.m14, m.m10, m.m2, m.m12, m.m3, m.m4, m.m7, m.m13)
            h = ChainingValues(
                S.xor(s.v0, s.v8), S.xor(s.v1, s.v9), S.xor(s.v2, s.v10), S.xor(s.v3, s.v11),
                S.xor(s.v4, s.v12), S.xor(s.v5, s.v13), S.xor(s.v6, s.v14), S.xor(s.v7, s.v15))
            blockFlags = flags
        }
        Shape.store(h, count: count, to: output)
    }
}

/// The sixteen state words of `Shape.Lanes.scalarCount` compressions.
@frozen public struct LaneState<Shape: LaneShape> {
    public typealias V = Shape.Lanes
    public var v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15: V

    @inlinable @inline(__always)
    public init(v0: V, v1: V, v2: V, v3: V, v4: V, v5: V, v6: V, v7: V, v8: V, v9: V, v10: V, v11: V, v12: V, v13: V, v14: V, v15: V) {
        (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5, self.v6, self.v7) = (v0, v1, v2, v3, v4, v5, v6, v7)
        (self.v8, self.v9, self.v10, self.v11, self.v12, self.v13, self.v14, self.v15) = (v8, v9, v10, v11, v12, v13, v14, v15)
    }

    /// One round: G on the four columns, then on the four diagonals.
    @inlinable @inline(__always)
    public mutating func round(
        _ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V, _ m5: V, _ m6: V, _ m7: V,
        _ m8: V, _ m9: V, _ m10: V, _ m11: V, _ m12: V, _ m13: V, _ m14: V, _ m15: V
    ) {
        Self.g(&v0, &v4, &v8, &v12, m0, m1); Self.g(&v1, &v5, &v9, &v13, m2, m3)
        Self.g(&v2, &v6, &v10, &v14, m4, m5); Self.g(&v3, &v7, &v11, &v15, m6, m7)
        Self.g(&v0, &v5, &v10, &v15, m8, m9); Self.g(&v1, &v6, &v11, &v12, m10, m11)
        Self.g(&v2, &v7, &v8, &v13, m12, m13); Self.g(&v3, &v4, &v9, &v14, m14, m15)
    }

    @inlinable @inline(__always)
    static func g(_ a: inout V, _ b: inout V, _ c: inout V, _ d: inout V, _ x: V, _ y: V) {
        a = Shape.add(Shape.add(a, b), x); d = Shape.rotateRight(Shape.xor(d, a), 16)
        c = Shape.add(c, d); b = Shape.rotateRight(Shape.xor(b, c), 12)
        a = Shape.add(Shape.add(a, b), y); d = Shape.rotateRight(Shape.xor(d, a), 8)
        c = Shape.add(c, d); b = Shape.rotateRight(Shape.xor(b, c), 7)
    }
}
