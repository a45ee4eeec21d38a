import ArgumentParser
import Foundation
import VaultlineCore

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tools for debugging.", subcommands: [Chunk.self, IndexMemory.self, S3Upload.self, RPO.self])

    struct Chunk: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the FastCDC chunks of a file: offset, length, fingerprint.",
            discussion: "Sizes take K and M suffixes (powers of 1024). Uses the unseeded Gear table, so cuts match fastcdc-rs.")

        @Argument(help: "The file to chunk.")
        var file: String
        @Option(help: "Minimum chunk size.") var min = "256K"
        @Option(help: "Average chunk size.") var avg = "1M"
        @Option(help: "Maximum chunk size.") var max = "4M"
        @Option(help: "Normalization level 0-3.") var normalization = 1
        @Option(help: "v2020 or v2016.") var variant = "v2020"
        @Option(help: "Gear seed (v2020).") var seed: UInt64 = 0
        @Flag(help: "Also print each chunk's SHA-256.") var sha256 = false
        @Flag(help: "JSON output.") var json = false

        struct Row: Encodable { var offset: UInt64; var length: Int; var fingerprint: String; var sha256: String? }

        func run() throws {
            try reporting {
                guard let v = FastCDC.Variant(rawValue: variant) else { throw VaultlineError(.invalidArgument, "variant must be v2020 or v2016") }
                let params = FastCDC.Parameters(
                    minSize: try size(min), avgSize: try size(avg), maxSize: try size(max), normalization: normalization, variant: v)
                let cdc = try FastCDC(params, seed: seed)
                let fd = try FileDescriptor(open: file, flags: O_RDONLY)
                let stream = ChunkStream(chunker: cdc) { try fd.readSome(into: $0) }
                var rows: [Row] = []
                while let c = try stream.next() {
                    let row = Row(offset: c.offset, length: c.bytes.count, fingerprint: String(format: "%016llx", c.fingerprint),
                                  sha256: sha256 ? SHA256.hash(c.bytes).hex : nil)
                    if json { rows.append(row) } else {
                        print("\(row.offset)\t\(row.length)\t\(row.fingerprint)\(row.sha256.map { "\t" + $0 } ?? "")")
                    }
                }
                if json { try printJSON(rows) }
            }
        }

        func size(_ s: String) throws -> Int {
            let u = s.uppercased()
            let (digits, mult) = u.hasSuffix("K") ? (u.dropLast(), 1024) : u.hasSuffix("M") ? (u.dropLast(), 1 << 20) : (Substring(u), 1)
            guard let n = Int(digits) else { throw VaultlineError(.invalidArgument, "bad size \(s)") }
            return n * mult
        }
    }

    struct IndexMemory: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "index-memory",
            abstract: "Measure the in-memory index: bytes per blob for N synthetic blobs (RSS and accounted).")

        @Option(help: "Number of blobs.") var blobs = 1_000_000
        @Option(help: "Blobs per pack (mail-sized blobs in 16 MiB packs: ~200).") var perPack = 200

        struct Output: Encodable {
            var blobs: Int
            var packs: Int
            var accountedEntryBytesPerBlob: Double
            var accountedTotalBytesPerBlob: Double
            var residentGrowthBytesPerBlob: Double
        }

        func run() throws {
            var rng = SplitMix64(seed: 1)
            let before = Memory.residentBytes()
            let index = BlobIndex()
            var entries: [PackEntry] = []
            entries.reserveCapacity(perPack)
            var made = 0, pack: UInt64 = 0
            while made < blobs {
                entries.removeAll(keepingCapacity: true)
                for i in 0..<min(perPack, blobs - made) {
                    entries.append(PackEntry(type: .data, codec: .zstd, id: Bytes32(a: rng.next(), b: rng.next(), c: rng.next(), d: rng.next()),
                                             offset: UInt32(i * 1000), storedLength: 900, rawLength: 1000))
                }
                made += entries.count
                index.add(pack: Bytes32(a: pack, b: 1, c: 2, d: 3), salt: Bytes32(a: pack, b: 0, c: 0, d: 0), entries: entries)
                pack += 1
            }
            index.compact()
            entries = []
            Memory.returnFreedToSystem()
            let after = Memory.residentBytes()
            let m = index.memoryFootprint
            let out = Output(
                blobs: index.count, packs: index.packCount,
                accountedEntryBytesPerBlob: Double(m.entries) / Double(index.count),
                accountedTotalBytesPerBlob: Double(m.entries + m.packs) / Double(index.count),
                residentGrowthBytesPerBlob: Double(after - before) / Double(index.count))
            try printJSON(out)
            withExtendedLifetime(index) {}
        }
    }
}
