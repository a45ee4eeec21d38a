import Benchmark
import VaultlineCore

/// Each benchmark processes `size` bytes per iteration: MB/s = size / 2^20 × throughput (ops/s).
let size = 64 << 20

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
        maxDuration: .seconds(5), maxIterations: 30)

    var rng = SplitMix64(seed: 1)
    let random = rng.bytes(size)
    // Real-ish compressible data: the random bytes as hex text.
    let text = Array(encodeHex(random.prefix(size / 2)).utf8)

    Benchmark("FastCDC v2020 cut, 64 MiB random, 256K/1M/4M") { benchmark in
        let cdc = try FastCDC(.default, seed: 7)
        for _ in benchmark.scaledIterations {
            random.withUnsafeBytes { buf in
                var o = 0, chunks = 0
                while o < buf.count { o += cdc.cut(UnsafeRawBufferPointer(rebasing: buf[o...])).length; chunks += 1 }
                blackHole(chunks)
            }
        }
    }

    Benchmark("SHA-256, 64 MiB") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(random.withUnsafeBytes { SHA256.hash($0) }) }
    }

    Benchmark("HMAC-SHA256 blob ids, 64 × 1 MiB") { benchmark in
        let key = MasterKey(encryptionKey: .zero, idKey: Bytes32(a: 1, b: 2, c: 3, d: 4), chunkerSeed: 0)
        for _ in benchmark.scaledIterations {
            random.withUnsafeBytes { buf in
                for i in stride(from: 0, to: size, by: 1 << 20) {
                    blackHole(key.blobID(UnsafeRawBufferPointer(rebasing: buf[i..<(i + (1 << 20))])))
                }
            }
        }
    }

    // Format 2's blob ids, on every path this CPU runs (16 lanes AVX-512, 8 AVX2, scalar).
    for path in BLAKE3.Path.allCases where path.available {
        Benchmark("BLAKE3 keyed blob ids, 64 × 1 MiB, \(path)") { benchmark in
            let key = Bytes32(a: 1, b: 2, c: 3, d: 4)
            for _ in benchmark.scaledIterations {
                random.withUnsafeBytes { buf in
                    for i in stride(from: 0, to: size, by: 1 << 20) {
                        blackHole(BLAKE3.keyedHash(key: key, UnsafeRawBufferPointer(rebasing: buf[i..<(i + (1 << 20))]), path: path))
                    }
                }
            }
        }
    }

    Benchmark("AES-256-GCM seal, 64 × 1 MiB") { benchmark in
        let gcm = try AESGCM(key: Bytes32(a: 9, b: 9, c: 9, d: 9))
        var out = [UInt8](repeating: 0, count: (1 << 20) + 16)
        let nonce = [UInt8](repeating: 0, count: 12)
        for _ in benchmark.scaledIterations {
            try random.withUnsafeBytes { buf in
                try nonce.withUnsafeBytes { n in
                    try out.withUnsafeMutableBytes { o in
                        for i in stride(from: 0, to: size, by: 1 << 20) {
                            try gcm.seal(UnsafeRawBufferPointer(rebasing: buf[i..<(i + (1 << 20))]), nonce: n, aad: UnsafeRawBufferPointer(start: nil, count: 0), into: o)
                        }
                    }
                }
            }
        }
    }

    for codec in [Codec.zstd, .lz4] {
        Benchmark("\(codec) compress, 64 × 1 MiB hex text") { benchmark in
            let c = try Compressor(codec: codec, level: 3)
            var out = [UInt8](repeating: 0, count: c.bound(1 << 20))
            for _ in benchmark.scaledIterations {
                try text.withUnsafeBytes { buf in
                    try out.withUnsafeMutableBytes { o in
                        for i in stride(from: 0, to: buf.count - (1 << 20) + 1, by: 1 << 20) {
                            blackHole(try c.compress(UnsafeRawBufferPointer(rebasing: buf[i..<(i + (1 << 20))]), into: o))
                        }
                    }
                }
            }
        }
    }

    Benchmark("BlobIndex: insert 1M blobs, then 1M lookups", configuration: .init(maxIterations: 5)) { benchmark in
        for _ in benchmark.scaledIterations {
            var r = SplitMix64(seed: 3)
            let index = BlobIndex()
            var ids: [Bytes32] = []
            ids.reserveCapacity(1_000_000)
            for p in 0..<5000 {
                var entries: [PackEntry] = []
                for i in 0..<200 {
                    let id = Bytes32(a: r.next(), b: r.next(), c: r.next(), d: r.next())
                    ids.append(id)
                    entries.append(PackEntry(type: .data, codec: .zstd, id: id, offset: UInt32(i * 100), storedLength: 100, rawLength: 200))
                }
                index.add(pack: Bytes32(a: UInt64(p), b: 0, c: 0, d: 0), salt: .zero, entries: entries)
            }
            index.compact()
            var found = 0
            for id in ids where index.contains(id) { found += 1 }
            blackHole(found)
        }
    }
}
