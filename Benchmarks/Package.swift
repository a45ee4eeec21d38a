// swift-tools-version:6.1
// Micro-benchmarks of the engine's hot paths (ordo-one/benchmark). A nested package, so that
// `swift test` at the root does not build it. Run: `swift package benchmark` in this folder.
import PackageDescription

let package = Package(
    name: "VaultlineBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "vaultline", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "EngineBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "VaultlineCore", package: "vaultline"),
            ],
            path: "Benchmarks/EngineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
