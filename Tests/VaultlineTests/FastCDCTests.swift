import Foundation
import Testing
@testable import VaultlineCore

/// Published FastCDC vectors (fastcdc-rs and Bazel) over SekienAkashita.jpg.
struct FastCDCVector: Sendable, CustomTestStringConvertible {
    struct Chunk: Sendable { var offset: Int; var length: Int; var hash: UInt64; var sha256: String }
    var id: String
    var parameters: FastCDC.Parameters
    var seed: UInt64
    var chunks: [Chunk]
    var testDescription: String { id }

    static func load() throws -> [FastCDCVector] {
        let url = TestData.shared.appendingPathComponent("fastcdc/vectors.json")
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return (root["vectors"] as! [[String: Any]]).compactMap { v in
            guard let variant = FastCDC.Variant(rawValue: v["variant"] as! String) else { return nil }
            return FastCDCVector(
                id: v["id"] as! String,
                parameters: .init(
                    minSize: v["min"] as! Int, avgSize: v["avg"] as! Int, maxSize: v["max"] as! Int,
                    normalization: v["normalization"] as! Int, variant: variant),
                seed: UInt64((v["seed"] as? Int) ?? 0),
                chunks: (v["chunks"] as! [[String: Any]]).map {
                    Chunk(offset: $0["offset"] as! Int, length: $0["length"] as! Int,
                          hash: UInt64($0["hash"] as! String)!, sha256: $0["sha256"] as! String)
                })
        }
    }

    static let all: [FastCDCVector] = (try? load()) ?? []
}

@Suite struct FastCDCTests {
    static let image = try! Data(contentsOf: TestData.shared.appendingPathComponent("fastcdc/SekienAkashita.jpg"))

    @Test func vectorsCoverEveryGearSet() {
        // 13 v2016/v2020 sets in the file: 5 v2016, 6 v2020, 2 Bazel (ronomon is a different algorithm, not used by Vaultline).
        #expect(FastCDCVector.all.count == 13)
    }

    @Test(arguments: FastCDCVector.all)
    func reproducesPublishedCuts(_ vector: FastCDCVector) throws {
        let cdc = try FastCDC(vector.parameters, seed: vector.seed)
        var got: [FastCDCVector.Chunk] = []
        Self.image.withUnsafeBytes { buf in
            var offset = 0
            while offset < buf.count {
                let (len, fp) = cdc.cut(UnsafeRawBufferPointer(rebasing: buf[offset...]))
                let sha = SHA256.hash(UnsafeRawBufferPointer(rebasing: buf[offset..<offset + len])).hex
                got.append(.init(offset: offset, length: len, hash: fp, sha256: sha))
                offset += len
            }
        }
        #expect(got.map(\.offset) == vector.chunks.map(\.offset))
        #expect(got.map(\.length) == vector.chunks.map(\.length))
        #expect(got.map(\.hash) == vector.chunks.map(\.hash))
        #expect(got.map(\.sha256) == vector.chunks.map(\.sha256))
    }

    @Test(arguments: [1, 7, 4096, 65_537, 1 << 20])
    func streamingMatchesWholeBuffer(readSize: Int) throws {
        // Random data several times the max chunk, read in pieces of `readSize`.
        var rng = SplitMix64(seed: 42)
        let data = (0..<(600_000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let cdc = try FastCDC(.init(minSize: 4096, avgSize: 16384, maxSize: 65536), seed: 99)
        var whole: [Int] = []
        data.withUnsafeBytes { buf in
            var o = 0
            while o < buf.count { let n = cdc.cut(UnsafeRawBufferPointer(rebasing: buf[o...])).length; whole.append(n); o += n }
        }
        var pos = 0
        let stream = ChunkStream(chunker: cdc) { out in
            let n = min(readSize, out.count, data.count - pos)
            data.withUnsafeBytes { src in out.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[pos..<pos + n])) }
            pos += n
            return n
        }
        var streamed: [Int] = []
        var expectedOffset: UInt64 = 0
        while let c = try stream.next() {
            #expect(c.offset == expectedOffset)
            expectedOffset += UInt64(c.bytes.count)
            streamed.append(c.bytes.count)
        }
        #expect(streamed == whole)
        #expect(streamed.reduce(0, +) == data.count)
    }

    @Test func rejectsImpossibleParameters() {
        expectError(VaultlineError.self, .invalidArgument) { _ = try FastCDC(.init(minSize: 100, avgSize: 50, maxSize: 200)) }
        expectError(VaultlineError.self, .invalidArgument) { _ = try FastCDC(.init(minSize: 64, avgSize: 64, maxSize: 64, normalization: 3)) }
    }
}
