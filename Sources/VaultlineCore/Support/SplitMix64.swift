/// A small deterministic generator (SplitMix64) for reproducible demo and test data.
/// Not for secrets: use ``SecureRandom``.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= n { buf.storeBytes(of: next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < n { buf[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
        return out
    }
}
