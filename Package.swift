// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "vaultline",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vaultline", targets: ["vaultline"]),
        .library(name: "VaultlineCore", targets: ["VaultlineCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries, wrapped only by VaultlineCore (nothing else sees a C type).
        .systemLibrary(
            name: "CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(
            name: "CLZ4", pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(
            name: "CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .target(
            name: "VaultlineCore",
            dependencies: [
                "CZstd", "CLZ4", "CCrypto",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "vaultline",
            dependencies: [
                "VaultlineCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]
        ),
        .testTarget(
            name: "VaultlineCoreTests",
            // The CLI is a dependency so that it is built: crash tests run it as a subprocess.
            dependencies: ["VaultlineCore", "vaultline"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
