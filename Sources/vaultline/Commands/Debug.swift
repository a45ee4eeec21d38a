import ArgumentParser
import Foundation
import VaultlineCore

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tools for debugging.", subcommands: [Chunk.self])

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
}
