#if _endian(big)
#error("BLAKE3 here reads message and key words in little-endian memory order")
#endif

import BLAKE3Lanes16
import BLAKE3Lanes8
import BLAKE3Rounds
import CCPUFeatures

/// BLAKE3 in keyed-hash mode with a 32-byte output, over a whole buffer in memory: the blob-id
/// function of format version 2 (docs/FORMAT.md, "Blob ids"). VaultlineCore's `BLAKE3` is the
/// only caller; this module is compiled with optimization even in debug builds, so that the
/// test suite hashes at speed.
///
/// Written from the BLAKE3 specification (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, 2020):
/// 1 KiB chunks of 64-byte blocks, each chunk compressed into a chaining value, chaining values
/// merged pairwise in a left-complete binary tree whose root compression carries `ROOT`. Full
/// chunks and parent nodes go several at a time through the widest lane path the CPU has
/// (``Path``); the last chunk goes through the scalar ``compress`` below. Tested against
/// `b3sum --keyed` and the specification's test vectors on every path the CPU can run.
public enum BLAKE3Hasher {
    public static let chunkLength = 1024
    public static let blockLength = 64

    public static let chunkStart: UInt32 = 1 << 0
    public static let chunkEnd: UInt32 = 1 << 1
    public static let parent: UInt32 = 1 << 2
    public static let root: UInt32 = 1 << 3
    public static let keyedHash: UInt32 = 1 << 4

    /// How many chunks or parents are compressed at once.
    public enum Path: Int, Sendable, CaseIterable, CustomStringConvertible {
        /// One at a time, on any CPU. (Four lanes of baseline SSE2 measured slower than this:
        /// 163 against 113 ms for 64 MiB.)
        case scalar = 1
        /// BLAKE3Lanes8, AVX2.
        case eight = 8
        /// BLAKE3Lanes16, AVX-512.
        case sixteen = 16

        public var description: String { self == .scalar ? "scalar" : "\(rawValue) lanes" }
        /// True when this CPU can run the path.
        public var available: Bool {
            switch self {
            case .scalar: true
            case .eight: Self.hasAVX2
            case .sixteen: Self.hasAVX512
            }
        }

        // Asked once: CPUID is serializing, and in a virtual machine it exits to the hypervisor.
        private static let hasAVX2 = vl_cpu_has_avx2_haswell() != 0
        private static let hasAVX512 = vl_cpu_has_avx512_skylake() != 0
    }

    /// The widest path this CPU runs, chosen once.
    public static let path: Path = Path.allCases.last { $0.available } ?? .scalar

    /// The hash of `input`: `key` is the eight key words (the IV when unkeyed), `flags` the
    /// mode (``keyedHash`` or 0); the result is the first eight output words. `path` must be
    /// ``Path/available`` on this CPU.
    public static func hash(_ input: UnsafeRawBufferPointer, key: SIMD8<UInt32>, flags: UInt32, path: Path = path) -> SIMD8<UInt32> {
        precondition(path.available)
        let width = path.rawValue
        if input.count <= chunkLength {
            return chunk(input, key: key, counter: 0, flags: flags | root)
        }
        let chunks = (input.count + chunkLength - 1) / chunkLength
        let base = input.baseAddress!  // non-empty here
        return withUnsafeTemporaryAllocation(byteCount: chunks * 32, alignment: 64) { cvs -> SIMD8<UInt32> in
            let out = cvs.baseAddress!
            // Every chunk but the last is whole; the last (whole or not) is compressed alone.
            let whole = chunks - 1
            var i = 0
            if path != .scalar {
                while i < whole {
                    let n = min(width, whole - i)
                    lanes(
                        path, base + i * chunkLength, stride: chunkLength, count: n, blocks: chunkLength / blockLength, key: key,
                        counter: UInt64(i), incrementCounter: true, flags: flags, startFlags: chunkStart, endFlags: chunkEnd,
                        output: out + i * 32)
                    i += n
                }
            }
            while i < chunks {
                let end = min(input.count, (i + 1) * chunkLength)
                let cv = chunk(UnsafeRawBufferPointer(rebasing: input[(i * chunkLength)..<end]), key: key, counter: UInt64(i), flags: flags)
                out.storeBytes(of: cv, toByteOffset: i * 32, as: SIMD8<UInt32>.self)
                i += 1
            }
            // Parents, a level at a time: pair 2k and 2k+1 of a level are one 64-byte block,
            // and an odd last node moves up unchanged (the tree is left-complete).
            var nodes = chunks
            while nodes > 2 {
                let pairs = nodes / 2
                var p = 0
                if path != .scalar {
                    while p < pairs {
                        let n = min(width, pairs - p)
                        lanes(
                            path, UnsafeRawPointer(out + p * 64), stride: 64, count: n, blocks: 1, key: key, counter: 0,
                            incrementCounter: false, flags: flags | parent, startFlags: 0, endFlags: 0, output: out + p * 32)
                        p += n
                    }
                }
                while p < pairs {
                    let cv = compress(key, block: UnsafeRawPointer(out + p * 64), counter: 0, length: 64, flags: flags | parent)
                    out.storeBytes(of: cv, toByteOffset: p * 32, as: SIMD8<UInt32>.self)
                    p += 1
                }
                if nodes % 2 == 1 {
                    let last = out.load(fromByteOffset: (nodes - 1) * 32, as: SIMD8<UInt32>.self)
                    out.storeBytes(of: last, toByteOffset: pairs * 32, as: SIMD8<UInt32>.self)
                }
                nodes = pairs + nodes % 2
            }
            return compress(key, block: UnsafeRawPointer(out), counter: 0, length: 64, flags: flags | parent | root)
        }
    }

    /// `count` inputs through the lane module of `path` (see ``hashLanes``).
    static func lanes(
        _ path: Path, _ base: UnsafeRawPointer, stride: Int, count: Int, blocks: Int, key: SIMD8<UInt32>,
        counter: UInt64, incrementCounter: Bool, flags: UInt32, startFlags: UInt32, endFlags: UInt32,
        output: UnsafeMutableRawPointer
    ) {
        switch path {
        case .sixteen:
            BLAKE3Lanes16.hash(
                base, stride: stride, count: count, blocks: blocks, key: key, counter: counter, incrementCounter: incrementCounter,
                flags: flags, startFlags: startFlags, endFlags: endFlags, output: output)
        case .eight:
            BLAKE3Lanes8.hash(
                base, stride: stride, count: count, blocks: blocks, key: key, counter: counter, incrementCounter: incrementCounter,
                flags: flags, startFlags: startFlags, endFlags: endFlags, output: output)
        case .scalar:
            preconditionFailure("the scalar path compresses one chunk at a time")
        }
    }

    /// The chaining value of one chunk (at most 1 KiB; empty only as the whole input).
    static func chunk(_ bytes: UnsafeRawBufferPointer, key: SIMD8<UInt32>, counter: UInt64, flags: UInt32) -> SIMD8<UInt32> {
        var cv = key
        let blocks = max(1, (bytes.count + blockLength - 1) / blockLength)
        // The root flag, when given, belongs on the last block only.
        let lastFlags = flags | chunkEnd
        let bodyFlags = flags & ~root
        for b in 0..<blocks {
            let start = b * blockLength
            let length = min(blockLength, bytes.count - start)
            let blockFlags = (b == blocks - 1 ? lastFlags : bodyFlags) | (b == 0 ? chunkStart : 0)
            if length == blockLength {
                cv = compress(cv, block: bytes.baseAddress! + start, counter: counter, length: 64, flags: blockFlags)
            } else {
                // A short last block is zero-padded; its length goes into the compression.
                var padded = SIMD16<UInt32>(repeating: 0)
                withUnsafeMutableBytes(of: &padded) { p in
                    if length > 0 { p.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)])) }
                }
                cv = withUnsafeBytes(of: &padded) {
                    compress(cv, block: $0.baseAddress!, counter: counter, length: UInt32(length), flags: blockFlags)
                }
            }
        }
        return cv
    }

    /// One compression of a 64-byte block, returning the 8-word chaining value.
    static func compress(_ cv: SIMD8<UInt32>, block: UnsafeRawPointer, counter: UInt64, length: UInt32, flags: UInt32) -> SIMD8<UInt32> {
        let m = block.loadUnaligned(as: SIMD16<UInt32>.self)
        var s = ScalarState(
            v0: cv[0], v1: cv[1], v2: cv[2], v3: cv[3], v4: cv[4], v5: cv[5], v6: cv[6], v7: cv[7],
            v8: 0x6A09_E667, v9: 0xBB67_AE85, v10: 0x3C6E_F372, v11: 0xA54F_F53A,
            v12: UInt32(truncatingIfNeeded: counter), v13: UInt32(truncatingIfNeeded: counter >> 32), v14: length, v15: flags)
        s.round(m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12], m[13], m[14], m[15])
        s.round(m[2], m[6], m[3], m[10], m[7], m[0], m[4], m[13], m[1], m[11], m[12], m[5], m[9], m[14], m[15], m[8])
        s.round(m[3], m[4], m[10], m[12], m[13], m[2], m[7], m[14], m[6], m[5], m[9], m[0], m[11], m[15], m[8], m[1])
        s.round(m[10], m[7], m[12], m[9], m[14], m[3], m[13], m[15], m[4], m[0], m[11], m[2], m[5], m[8], m[1], m[6])
        s.round(m[12], m[13], m[9], m[11], m[15], m[10], m[14], m[8], m[7], m[2], m[5], m[3], m[0], m[1], m[6], m[4])
        s.round(m[9], m[14], m[11], m[5], m[8], m[12], m[15], m[1], m[13], m[3], m[0], m[10], m[2], m[6], m[4], m[7])
        s.round(m[11], m[15], m[5], m[0], m[1], m[9], m[8], m[6], m[14], m[10], m[2], m[12], m[3], m[4], m[7], m[13])
        return SIMD8(s.v0 ^ s.v8, s.v1 ^ s.v9, s.v2 ^ s.v10, s.v3 ^ s.v11, s.v4 ^ s.v12, s.v5 ^ s.v13, s.v6 ^ s.v14, s.v7 ^ s.v15)
    }

    struct ScalarState {
        var v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15: UInt32

        @inline(__always)
        mutating func round(
            _ m0: UInt32, _ m1: UInt32, _ m2: UInt32, _ m3: UInt32, _ m4: UInt32, _ m5: UInt32, _ m6: UInt32, _ m7: UInt32,
            _ m8: UInt32, _ m9: UInt32, _ m10: UInt32, _ m11: UInt32, _ m12: UInt32, _ m13: UInt32, _ m14: UInt32, _ m15: UInt32
        ) {
            Self.g(&v0, &v4, &v8, &v12, m0, m1); Self.g(&v1, &v5, &v9, &v13, m2, m3)
            Self.g(&v2, &v6, &v10, &v14, m4, m5); Self.g(&v3, &v7, &v11, &v15, m6, m7)
            Self.g(&v0, &v5, &v10, &v15, m8, m9); Self.g(&v1, &v6, &v11, &v12, m10, m11)
            Self.g(&v2, &v7, &v8, &v13, m12, m13); Self.g(&v3, &v4, &v9, &v14, m14, m15)
        }

        @inline(__always)
        static func g(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32, _ d: inout UInt32, _ x: UInt32, _ y: UInt32) {
            a = a &+ b &+ x; d = (d ^ a).rotatedRight(16); c = c &+ d; b = (b ^ c).rotatedRight(12)
            a = a &+ b &+ y; d = (d ^ a).rotatedRight(8); c = c &+ d; b = (b ^ c).rotatedRight(7)
        }
    }
}

extension UInt32 {
    @inline(__always) func rotatedRight(_ n: UInt32) -> UInt32 { (self &>> n) | (self &<< (32 - n)) }
}
