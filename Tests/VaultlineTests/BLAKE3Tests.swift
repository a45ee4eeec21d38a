import Foundation
import Testing
import BLAKE3Hashing
@testable import VaultlineCore

/// BLAKE3 keyed hashes (the blob ids of format version 2) against the specification's test
/// vectors and `b3sum --keyed`, through every path the CPU can run (scalar, 8 and 16 lanes).
@Suite struct BLAKE3Tests {
    /// The specification's test-vector key and input (byte i is i mod 251).
    static let key = Bytes32(bytes: Array("whats the Elvish word for friend".utf8))!
    static func input(_ n: Int) -> [UInt8] { (0..<n).map { UInt8($0 % 251) } }

    /// Keyed hashes of the test-vector inputs as `b3sum --keyed` (1.2.0) prints them; the
    /// lengths cover an empty input, partial and whole blocks and chunks, odd and even chunk
    /// counts, and a 4 MiB blob (the largest chunk the repository stores).
    static let vectors: [(Int, String)] = [
        (0, "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"),
        (1, "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"),
        (63, "bb1eb5d4afa793c1ebdd9fb08def6c36d10096986ae0cfe148cd101170ce37ae"),
        (64, "ba8ced36f327700d213f120b1a207a3b8c04330528586f414d09f2f7d9ccb7e6"),
        (65, "c0a4edefa2d2accb9277c371ac12fcdbb52988a86edc54f0716e1591b4326e72"),
        (1023, "c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e"),
        (1024, "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"),
        (1025, "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"),
        (2048, "879cf1fa2ea0e79126cb1063617a05b6ad9d0b696d0d757cf053439f60a99dd1"),
        (2049, "9f29700902f7c86e514ddc4df1e3049f258b2472b6dd5267f61bf13983b78dd5"),
        (3072, "044a0e7b172a312dc02a4c9a818c036ffa2776368d7f528268d2e6b5df191770"),
        (3073, "68dede9bef00ba89e43f31a6825f4cf433389fedae75c04ee9f0cf16a427c95a"),
        (4096, "befc660aea2f1718884cd8deb9902811d332f4fc4a38cf7c7300d597a081bfc0"),
        (4097, "00df940cd36bb9fa7cbbc3556744e0dbc8191401afe70520ba292ee3ca80abbc"),
        (8193, "954a2a75420c8d6547e3ba5b98d963e6fa6491addc8c023189cc519821b4a1f5"),
        (16384, "9e9fc4eb7cf081ea7c47d1807790ed211bfec56aa25bb7037784c13c4b707b0d"),
        (17407, "ca8737b4247e6fd904ed0c2b3c8029e64f1b5682dfad2434f47c55581a27b2f6"),
        (31744, "efa53b389ab67c593dba624d898d0f7353ab99e4ac9d42302ee64cbf9939a419"),
        (102400, "1c35d1a5811083fd7119f5d5d1ba027b4d01c0c6c49fb6ff2cf75393ea5db4a7"),
        (1048576, "59b889b0821111fc4c249dc98b5435b767b44fb881542c61a85c1bebbffb2906"),
        (1049601, "cad95b45045adc2bbe591d0f6fd8d71305b4f048020a537734c94b9b599f6121"),
        (4194304, "182b531d06d2705f68e23dc6a5580481f3342ded15cece016b58e0922e75c0e3"),
    ]

    /// Every path this CPU can run: scalar, and eight and sixteen lanes where it has them.
    static var paths: [BLAKE3Hasher.Path] { BLAKE3Hasher.Path.allCases.filter(\.available) }

    @Test func keyedHashesMatchTheSpecificationsVectors() {
        // Every vector's input is a prefix of the longest one.
        let longest = Self.input(Self.vectors.map(\.0).max() ?? 0)
        longest.withUnsafeBytes { all in
            for path in Self.paths {
                for (n, expected) in Self.vectors {
                    let got = Bytes32(words: BLAKE3Hasher.hash(
                        UnsafeRawBufferPointer(rebasing: all[0..<n]), key: Self.key.words, flags: BLAKE3Hasher.keyedHash, path: path))
                    #expect(got.hex == expected, "\(n) bytes, \(path)")
                }
            }
            #expect(BLAKE3.keyedHash(key: Self.key, UnsafeRawBufferPointer(rebasing: all[0..<1025])).hex == Self.vectors[7].1)
        }
    }

    /// Random keys, contents and lengths against the reference tool, where it is installed.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/b3sum")))
    func randomInputsMatchB3sum() throws {
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 0xB1A4E3)
        for trial in 0..<12 {
            let n = trial < 4 ? Int(rng.next() % 4096) : Int(rng.next() % 600_000)
            let data = rng.bytes(n)
            let key = Bytes32(bytes: rng.bytes(32))!
            try Fixtures.writeFile(dir.path + "/in", data)
            try Fixtures.writeFile(dir.path + "/key", key.bytes)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "/usr/bin/b3sum --keyed --no-names '\(dir.path)/in' < '\(dir.path)/key'"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            for path in Self.paths {
                let got = data.withUnsafeBytes { Bytes32(words: BLAKE3Hasher.hash($0, key: key.words, flags: BLAKE3Hasher.keyedHash, path: path)) }
                #expect(got.hex == out.trimmingCharacters(in: .whitespacesAndNewlines), "\(n) bytes, \(path)")
            }
        }
    }
}
