/// FastCDC content-defined chunking (Xia et al., 2016 and the 2020 "rolling two bytes" variant),
/// cut-for-cut compatible with fastcdc-rs and Bazel's published FastCDC 2020 vectors.
///
/// `cut` finds the first boundary of a buffer. Hashing restarts at zero for each chunk and begins
/// at `minSize`; the byte whose inclusion makes `(fp & mask) == 0` is the first byte of the *next*
/// chunk. Normalized chunking uses the stricter mask `maskS` before `avgSize` and the looser
/// `maskL` after it; `maxSize` is an inclusive cap. See docs/FORMAT.md, "Chunking".
public struct FastCDC: Sendable {
    public enum Variant: String, Sendable, Codable {
        case v2016, v2020
    }

    /// Chunker parameters; stored in the repository config so every backup cuts alike.
    public struct Parameters: Sendable, Codable, Equatable {
        public var minSize: Int
        public var avgSize: Int
        public var maxSize: Int
        public var normalization: Int
        public var variant: Variant

        public init(minSize: Int, avgSize: Int, maxSize: Int, normalization: Int = 1, variant: Variant = .v2020) {
            self.minSize = minSize
            self.avgSize = avgSize
            self.maxSize = maxSize
            self.normalization = normalization
            self.variant = variant
        }

        /// Vaultline's default: 256 KiB / 1 MiB / 4 MiB, normalization level 1 (see docs/FORMAT.md
        /// for the measurements behind the choice).
        public static let `default` = Parameters(minSize: 256 << 10, avgSize: 1 << 20, maxSize: 4 << 20)
    }

    /// MASKS[k] for an expected chunk size of 2^k bytes (k = 5...25), as in fastcdc-rs: spread-out
    /// bits from the FastCDC paper's reference implementation.
    static let masks: [UInt64] = [
        0, 0, 0, 0, 0,
        0x0000_0000_0180_4110, // 5 (only for NC 3 at 256 B)
        0x0000_0000_0180_3110, // 6: 64 B
        0x0000_0000_1803_5100, // 7: 128 B
        0x0000_0018_0003_5300, // 8: 256 B
        0x0000_0190_0035_3000, // 9: 512 B
        0x0000_5900_0353_0000, // 10: 1 KiB
        0x0000_d900_0353_0000, // 11: 2 KiB
        0x0000_d901_0353_0000, // 12: 4 KiB
        0x0000_d903_0353_0000, // 13: 8 KiB
        0x0000_d903_1353_0000, // 14: 16 KiB
        0x0000_d90f_0353_0000, // 15: 32 KiB
        0x0000_d903_0353_7000, // 16: 64 KiB
        0x0000_d907_0353_7000, // 17: 128 KiB
        0x0000_d907_0753_7000, // 18: 256 KiB
        0x0000_d917_0753_7000, // 19: 512 KiB
        0x0000_d917_4753_7000, // 20: 1 MiB
        0x0000_d917_6753_7000, // 21: 2 MiB
        0x0000_d937_6753_7000, // 22: 4 MiB
        0x0000_d937_7753_7000, // 23: 8 MiB
        0x0000_d937_7757_7000, // 24: 16 MiB
        0x0000_db37_7757_7000, // 25 (only for NC 3 at 4 MiB+)
    ]

    public let parameters: Parameters
    let maskS: UInt64
    let maskL: UInt64
    let gearTable: [UInt64]
    let gearShifted: [UInt64]

    /// - Parameter seed: 0 for the published tables; a repository uses a secret seed so chunk
    ///   boundaries do not reveal which known files it holds (2020 variant only, as in fastcdc-rs).
    public init(_ p: Parameters, seed: UInt64 = 0) throws {
        guard p.minSize >= 64, p.minSize <= p.avgSize, p.avgSize <= p.maxSize,
              p.maxSize <= 256 << 20, (0...3).contains(p.normalization)
        else {
            throw VaultlineError(
                .invalidArgument,
                "chunker sizes must satisfy 64 <= min <= avg <= max <= 256 MiB and normalization 0...3 (got \(p.minSize)/\(p.avgSize)/\(p.maxSize), nc \(p.normalization))")
        }
        let bits = Int(Double(p.avgSize).log2Rounded)
        guard bits - p.normalization >= 5, bits + p.normalization <= 25 else {
            throw VaultlineError(.invalidArgument, "average chunk size \(p.avgSize) with normalization \(p.normalization) is outside 64 B...16 MiB")
        }
        parameters = p
        maskS = Self.masks[bits + p.normalization]
        maskL = Self.masks[bits - p.normalization]
        let s = p.variant == .v2020 ? seed : 0
        gearTable = Self.gear.map { $0 ^ s }
        gearShifted = Self.gear.map { ($0 << 1) ^ (s << 1) }
    }

    /// Finds the first chunk of `data`: its length and the Gear fingerprint at the cut (the
    /// running fingerprint when no boundary is found, 0 when `data.count <= minSize`).
    @inlinable
    public func cut(_ data: UnsafeRawBufferPointer) -> (length: Int, fingerprint: UInt64) {
        switch parameters.variant {
        case .v2020: cut2020(data)
        case .v2016: cut2016(data)
        }
    }

    @usableFromInline
    func cut2020(_ data: UnsafeRawBufferPointer) -> (length: Int, fingerprint: UInt64) {
        var remaining = data.count
        let minSize = parameters.minSize
        if remaining <= minSize { return (remaining, 0) }
        var center = parameters.avgSize
        if remaining > parameters.maxSize {
            remaining = parameters.maxSize
        } else if remaining < center {
            center = remaining
        }
        let maskS = self.maskS, maskL = self.maskL
        let maskSLs = maskS << 1, maskLLs = maskL << 1
        return gearTable.withUnsafeBufferPointer { g in
            gearShifted.withUnsafeBufferPointer { gs in
                let src = data.baseAddress!.assumingMemoryBound(to: UInt8.self)
                let gear = g.baseAddress!, gearLs = gs.baseAddress!
                var hash: UInt64 = 0
                var i = minSize / 2
                let centerHalf = center / 2
                while i < centerHalf {
                    let a = i &* 2
                    hash = (hash &<< 2) &+ gearLs[Int(src[a])]
                    if hash & maskSLs == 0 { return (a, hash) }
                    hash = hash &+ gear[Int(src[a &+ 1])]
                    if hash & maskS == 0 { return (a &+ 1, hash) }
                    i &+= 1
                }
                let endHalf = remaining / 2
                while i < endHalf {
                    let a = i &* 2
                    hash = (hash &<< 2) &+ gearLs[Int(src[a])]
                    if hash & maskLLs == 0 { return (a, hash) }
                    hash = hash &+ gear[Int(src[a &+ 1])]
                    if hash & maskL == 0 { return (a &+ 1, hash) }
                    i &+= 1
                }
                return (remaining, hash)
            }
        }
    }

    @usableFromInline
    func cut2016(_ data: UnsafeRawBufferPointer) -> (length: Int, fingerprint: UInt64) {
        var remaining = data.count
        let minSize = parameters.minSize
        if remaining <= minSize { return (remaining, 0) }
        var center = parameters.avgSize
        if remaining > parameters.maxSize {
            remaining = parameters.maxSize
        } else if remaining < center {
            center = remaining
        }
        let maskS = self.maskS, maskL = self.maskL
        return gearTable.withUnsafeBufferPointer { g in
            let src = data.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let gear = g.baseAddress!
            var hash: UInt64 = 0
            var i = minSize
            while i < center {
                hash = (hash &<< 1) &+ gear[Int(src[i])]
                if hash & maskS == 0 { return (i, hash) }
                i &+= 1
            }
            while i < remaining {
                hash = (hash &<< 1) &+ gear[Int(src[i])]
                if hash & maskL == 0 { return (i, hash) }
                i &+= 1
            }
            return (remaining, hash)
        }
    }
}

extension Double {
    /// round(log2(self)), as fastcdc-rs computes the mask index.
    var log2Rounded: Double {
        var x = self, e = 0.0
        while x >= 2 { x /= 2; e += 1 }
        // x in [1, 2): round up when x >= sqrt(2).
        return x >= 2.0.squareRoot() ? e + 1 : e
    }
}
