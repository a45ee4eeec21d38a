// swift-tools-version:6.1
// libFuzzer targets: bytes from a hostile peer into the replica receiver, and hostile files
// into the pack and index readers. A nested package, so that `swift test` at the root does not
// build it; it only links with libFuzzer's main. Run: `tools/fuzz receiver|formats SECONDS`.
import PackageDescription

let package = Package(
    name: "VaultlineFuzz",
    dependencies: [.package(name: "vaultline", path: "..")],
    targets: [
        .executableTarget(
            name: "fuzz-receiver",
            dependencies: [.product(name: "VaultlineReplication", package: "vaultline")],
            path: "Sources/fuzz-receiver"),
        .executableTarget(
            name: "fuzz-formats",
            dependencies: [.product(name: "VaultlineCore", package: "vaultline")],
            path: "Sources/fuzz-formats"),
    ],
    swiftLanguageModes: [.v6]
)
