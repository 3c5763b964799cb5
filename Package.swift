// swift-tools-version: 6.1
import PackageDescription

/// Every Swift target declares the modules it uses: without this, a member of a module imported by
/// any other file of the target (or only transitively) resolves silently.
let swiftSettings: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "Bordergate",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "bordergate", targets: ["BordergateCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        // The session recording store (SQLite; on Linux the system library, Debian: libsqlite3-dev).
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        // TLS interception: the tool's TLS terminated and the destination's originated (BoringSSL),
        // and the local CA and its leaves built as X.509 in Swift.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // The fleet export: every event shipped to a central PostgreSQL.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // `/metrics` (Prometheus text format): swift-metrics' API, swift-prometheus' registry.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // libbpf, found through pkg-config (Debian: libbpf-dev).
        .systemLibrary(
            name: "CLibBPF",
            path: "Sources/CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]
        ),
        // zlib (Debian: zlib1g-dev), for gzip and deflate bodies the HTTP handler masks. Used
        // directly rather than through compress-nio, whose streaming inflate cannot drain output
        // zlib still holds once the input is used up.
        // libpg_query, PostgreSQL's own parser as a C library (Debian: libpg-query-dev, a static
        // library without a pkg-config file): SQL guardrails and normalisation.
        .systemLibrary(name: "CPgQuery", path: "Sources/CPgQuery", providers: [.apt(["libpg-query-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The kernel/user contract: bpf/include/bordergate_abi.h, shared verbatim by the BPF programs
        // and by Swift. The .bpf.c files (and their helpers in bpf/lib) are compiled for the BPF target by the plugin, not here.
        .target(
            name: "CBordergateABI",
            path: "bpf",
            exclude: ["bordergate.bpf.c", "lib"], // lib/: the BPF programs' helpers, not part of the ABI
            sources: ["abi_check.c"],
            publicHeadersPath: "include"
        ),
        // Small C helpers: spawning into a cgroup with clone3 (must not run Swift code), epoll's packed event.
        .target(name: "CBordergateSys", path: "Sources/CBordergateSys"),
        .plugin(name: "BPFObjectPlugin", capability: .buildTool(), path: "Plugins/BPFObjectPlugin"),
        // Data files (cloud regions, jurisdictions) embedded as Swift strings: no bundle to find at run time.
        .plugin(name: "EmbedDataPlugin", capability: .buildTool(), path: "Plugins/EmbedDataPlugin"),
        .target(name: "BordergateRegions", exclude: ["Data"], swiftSettings: swiftSettings, plugins: ["EmbedDataPlugin"]),
        .target(
            name: "BordergateKernel",
            dependencies: ["CLibBPF", "CBordergateABI", "CBordergateSys",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings,
            plugins: ["BPFObjectPlugin"]
        ),
        .target(name: "BordergateAudit", dependencies: ["CBordergateSys", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        .target(name: "BordergatePolicy", dependencies: ["BordergateRegions", "BordergateMasking", .product(name: "Yams", package: "Yams")],
                swiftSettings: swiftSettings),
        .target(
            name: "BordergateProxy",
            dependencies: ["BordergateAudit", "CBordergateSys",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // Sessions of proxied connections: the seam handlers record through, and the store.
        .target(name: "BordergateRecording", dependencies: ["BordergateAudit",
                                                            .product(name: "GRDB", package: "GRDB.swift"),
                                                            .product(name: "Crypto", package: "swift-crypto"),
                                                            .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        // The local CA and the leaves it signs (swift-certificates, P-256 from swift-crypto); no NIO
        // and no BoringSSL, so the CLI's `ca` commands and the policy checker link it cheaply.
        .target(name: "BordergateCertificates", dependencies: [.product(name: "X509", package: "swift-certificates"),
                                                               .product(name: "SwiftASN1", package: "swift-asn1"),
                                                               .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        // The fleet: the audit log shipped to a central PostgreSQL from a cursor, and read back.
        .target(name: "BordergateFleet", dependencies: ["BordergateAudit",
                                                        .product(name: "PostgresNIO", package: "postgres-nio"),
                                                        .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        // The protocol handlers the proxy runs on inspected connections (HTTP, TLS, PostgreSQL,
        // recording); NIOHTTP1 and NIOSSL belong here, never in BordergateProxy.
        .target(
            name: "BordergateInspection",
            dependencies: ["BordergateProxy", "BordergateAudit", "BordergateRecording", "BordergateMasking", "CZlib", "CPgQuery",
                           "BordergateCertificates",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOTLS", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BordergateService",
            dependencies: ["BordergateKernel", "BordergateAudit", "BordergateProxy", "BordergateInspection", "BordergatePolicy", "BordergateRegions",
                           "BordergateCertificates", "BordergateFleet",
                           "BordergateMasking", "BordergateRecording", "CBordergateSys",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "BordergateCLI",
            dependencies: ["BordergateService", "BordergateAudit", "BordergatePolicy", "BordergateRegions", "BordergateRecording",
                           "BordergateCertificates", "BordergateFleet",
                           .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "BordergateAuditTests", dependencies: ["BordergateAudit", .product(name: "Crypto", package: "swift-crypto")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BordergateRecordingTests", dependencies: ["BordergateRecording", "BordergateAudit",
                                                                    .product(name: "GRDB", package: "GRDB.swift"),
                                                                    .product(name: "Logging", package: "swift-log")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BordergateFleetTests", dependencies: ["BordergateFleet"], swiftSettings: swiftSettings),
        .testTarget(name: "BordergateCertificatesTests", dependencies: ["BordergateCertificates",
                                                                       .product(name: "X509", package: "swift-certificates"),
                                                                       .product(name: "SwiftASN1", package: "swift-asn1")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BordergateRegionsTests", dependencies: ["BordergateRegions"], swiftSettings: swiftSettings),
        .testTarget(name: "BordergatePolicyTests", dependencies: ["BordergatePolicy", "BordergateRegions"], swiftSettings: swiftSettings),
        .testTarget(name: "BordergateKernelTests", dependencies: ["BordergateKernel"], swiftSettings: swiftSettings),
        // Without MemberImportVisibility: its sockaddr_in resolves to NIO's internal C module (which
        // includes the glibc headers first), and no product of swift-nio lets a target import that.
        .testTarget(name: "BordergateProxyTests", dependencies: ["BordergateProxy", "BordergateInspection", "BordergateAudit",
                                                                .product(name: "NIOCore", package: "swift-nio"),
                                                                .product(name: "NIOPosix", package: "swift-nio"),
                                                                .product(name: "NIOEmbedded", package: "swift-nio"),
                                                                .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "BordergateServiceTests", dependencies: ["BordergateService", "BordergateKernel", "BordergateRecording",
                                                          "BordergatePolicy",
                                                          .product(name: "NIOCore", package: "swift-nio"),
                                                          .product(name: "Logging", package: "swift-log")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "BordergateCLITests", dependencies: ["BordergateCLI", "BordergateAudit", "BordergateService", "BordergateRecording",
                                                              "BordergatePolicy",
                                                              .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                                              .product(name: "Logging", package: "swift-log")],
                    swiftSettings: swiftSettings),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["BordergateAudit", "BordergateCLI"],
            swiftSettings: swiftSettings
        ),
        // Detectors and masking strategies for the L7 path; no NIO, no kernel (HMAC from swift-crypto).
        .target(name: "BordergateMasking", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        .executableTarget(name: "AuditBench", dependencies: ["BordergateAudit"], swiftSettings: swiftSettings),
        .executableTarget(name: "MaskingBench", dependencies: ["BordergateMasking"], swiftSettings: swiftSettings),
        .testTarget(name: "BordergateMaskingTests", dependencies: ["BordergateMasking"], resources: [.copy("Fixtures")],
                    swiftSettings: swiftSettings),
    ]
)
