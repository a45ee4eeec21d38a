// swift-tools-version:6.1
import PackageDescription

// BLAKE3 is optimized in every configuration (a debug build's unoptimized hash would make the
// test suite crawl). Its 16- and 8-lane modules are compiled for AVX-512 and AVX2 on x86-64 and
// run only where the CPU has them (BLAKE3Hashing checks CPUID first); elsewhere they are plain
// portable SIMD code that is never called.
let hashSettings: [SwiftSetting] = [.unsafeFlags(["-O"])]
#if arch(x86_64)
let lanes16Settings: [SwiftSetting] = [.unsafeFlags(["-O", "-target-cpu", "skylake-avx512"])]
let lanes8Settings: [SwiftSetting] = [.unsafeFlags(["-O", "-target-cpu", "haswell"])]
#else
let lanes16Settings = hashSettings
let lanes8Settings = hashSettings
#endif

// Linux only (Debian, with the system libraries tools/setup.sh installs): no other platform is
// built or tested, so none is claimed.
let package = Package(
    name: "vaultline",
    products: [
        .executable(name: "vaultline", targets: ["vaultline"]),
        .library(name: "VaultlineCore", targets: ["VaultlineCore"]),
        .library(name: "VaultlineReplication", targets: ["VaultlineReplication"]),
        .library(name: "VaultlineGraph", targets: ["VaultlineGraph"]),
        .library(name: "GraphSimulator", targets: ["GraphSimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // 1.16: LogHandler.log(event:), which the tests' log capture implements.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        // Issues the site CA and certificates and reads the role from a peer's certificate:
        // a maintained X.509 library beats hand-driving libcrypto's X509 API.
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.10.0"),
        // Hummingbird's request and response types, which the simulator names (HTTPFields).
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        // The continuous service: its Prometheus text format (counters, gauges, histograms with
        // the format's escaping) and its SIGTERM-driven shutdown of several loops in order.
        // Both small, maintained by the Swift Server Workgroup; lifecycle already comes with
        // Hummingbird.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // The coordinator of many `m365 serve` workers on one tenant (PostgreSQL's protocol).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
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
        // An on-disk B-tree for collections too large to hold in memory during a Graph backup
        // (SpillTable): SQLite beats writing one.
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        // CPUID probe for the BLAKE3 lanes (a header, no library).
        .systemLibrary(name: "CCPUFeatures"),
        // BLAKE3 keyed hashes (blob ids): the compression written once for any lane count, its
        // AVX-512 and AVX2 builds, and the hasher that picks one.
        .target(name: "BLAKE3Rounds", exclude: ["README.md"], swiftSettings: hashSettings),
        .target(name: "BLAKE3Lanes16", dependencies: ["BLAKE3Rounds"], exclude: ["README.md"], swiftSettings: lanes16Settings),
        .target(name: "BLAKE3Lanes8", dependencies: ["BLAKE3Rounds"], exclude: ["README.md"], swiftSettings: lanes8Settings),
        .target(
            name: "BLAKE3Hashing", dependencies: ["BLAKE3Rounds", "BLAKE3Lanes16", "BLAKE3Lanes8", "CCPUFeatures"],
            exclude: ["README.md"], swiftSettings: hashSettings),
        .target(
            name: "VaultlineCore",
            dependencies: [
                "CZstd", "CLZ4", "CCrypto", "CSQLite", "BLAKE3Hashing",
            ],
            exclude: ["README.md"]
        ),
        .target(
            name: "VaultlineReplication",
            dependencies: [
                "VaultlineCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // An in-memory channel for the fuzzing entry point (ReceiverFuzzing).
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]
        ),
        // Microsoft's file hash, shared by the Graph client and the simulator (which never
        // import each other).
        .target(name: "QuickXorHash", exclude: ["README.md"]),
        .target(
            name: "VaultlineS3",
            dependencies: [
                "VaultlineCore", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            exclude: ["README.md"]
        ),
        .target(
            name: "VaultlineGraph",
            dependencies: [
                "VaultlineCore", "QuickXorHash",
                // RS256 client assertions for certificate sign-in (RSA from swift-crypto).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]
        ),
        .target(
            name: "GraphSimulator",
            dependencies: [
                // Checks certificate client assertions as the identity platform does.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                // Posts validation requests and change notifications to webhooks, as Graph does.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                "QuickXorHash",
            ],
            exclude: ["README.md"]
        ),
        // `vaultline m365 serve`: the pass loop, replication to site B, metrics and health.
        .target(
            name: "VaultlineService",
            dependencies: [
                "VaultlineCore", "VaultlineGraph", "VaultlineReplication",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"]
        ),
        .executableTarget(
            name: "vaultline",
            dependencies: [
                "VaultlineCore", "VaultlineReplication", "VaultlineGraph", "GraphSimulator", "VaultlineS3", "VaultlineService",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["README.md"]
        ),
        .testTarget(
            name: "VaultlineTests",
            // The CLI is a dependency so that it is built: crash tests run it as a subprocess.
            dependencies: [
                "VaultlineCore", "VaultlineReplication", "VaultlineGraph", "GraphSimulator", "vaultline", "QuickXorHash", "VaultlineS3",
                "VaultlineService",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                // The S3 fault proxy (Tests/VaultlineTests/Support/S3FaultProxy.swift).
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
