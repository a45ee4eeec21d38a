import ArgumentParser
import VaultlineCore

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new repository.")

    @OptionGroup var repository: RepositoryOptions

    @Option(help: "Compression: zstd, lz4 or none.")
    var compression = "zstd"
    @Option(help: "zstd level (1-19).")
    var compressionLevel = 3
    @Option(name: .customLong("pack-size-mib"), help: "Target pack size in MiB.")
    var packSizeMiB = RepositoryConfig.defaultPackSize >> 20
    @Option(name: .customLong("chunk-min-kib"), help: "Minimum chunk size in KiB.")
    var chunkMinKiB = FastCDC.Parameters.default.minSize >> 10
    @Option(name: .customLong("chunk-avg-kib"), help: "Average chunk size in KiB.")
    var chunkAvgKiB = FastCDC.Parameters.default.avgSize >> 10
    @Option(name: .customLong("chunk-max-kib"), help: "Maximum chunk size in KiB.")
    var chunkMaxKiB = FastCDC.Parameters.default.maxSize >> 10
    @Option(help: """
        Blob-id function, fixed for the repository's life: blake3-keyed (format 2) or hmac-sha256 \
        (format 1, also readable by builds before BLAKE3). Default: blake3-keyed where this CPU has \
        AVX2 or AVX-512, else hmac-sha256 (whichever hashes faster here).
        """)
    var blobIds = BlobIDFunction.fastestHere.rawValue

    func run() throws {
        try reporting {
            guard let codec = Codec(name: compression) else {
                throw VaultlineError(.invalidArgument, "unknown compression \(compression) (zstd, lz4, none)")
            }
            guard let blobIDs = BlobIDFunction(rawValue: blobIds) else {
                throw VaultlineError(.invalidArgument, "unknown blob-id function \(blobIds) (blake3-keyed, hmac-sha256)")
            }
            var options = Repository.InitOptions()
            options.blobIDs = blobIDs
            options.compression = codec
            options.compressionLevel = compressionLevel
            options.packSize = packSizeMiB << 20
            options.chunker = .init(minSize: chunkMinKiB << 10, avgSize: chunkAvgKiB << 10, maxSize: chunkMaxKiB << 10)
            let path = try repository.repositoryPath
            let repo: Repository
            if let backend = try repository.s3Backend() {
                try backend.prepareForInitialize()
                repo = try Repository.initialize(backend: backend, name: path, password: try repository.password(), options: options)
            } else {
                repo = try Repository.initialize(path: path, password: try repository.password(), options: options)
            }
            if repository.json {
                try printJSON(["id": repo.config.id, "path": path, "keySlot": repo.keySlot])
            } else {
                print("created repository \(repo.config.id.prefix(8)) at \(path) (format \(repo.config.version), \(blobIDs.rawValue) blob ids)")
                print("keep the password safe: without it the data cannot be read")
            }
        }
    }
}
