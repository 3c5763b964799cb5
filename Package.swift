// swift-tools-version: 6.1
import PackageDescription

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
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        // libbpf, found through pkg-config (Debian: libbpf-dev).
        .systemLibrary(
            name: "CLibBPF",
            path: "Sources/CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]
        ),
        // The kernel/user contract: bpf/include/bordergate_abi.h, shared verbatim by the BPF programs
        // and by Swift. The .bpf.c files are compiled for the BPF target by the plugin, not here.
        .target(
            name: "CBordergateABI",
            path: "bpf",
            exclude: ["bordergate.bpf.c"],
            sources: ["abi_check.c"],
            publicHeadersPath: "include"
        ),
        // Small C helpers: spawning into a cgroup with clone3 (must not run Swift code), epoll's packed event.
        .target(name: "CBordergateSys", path: "Sources/CBordergateSys"),
        .plugin(name: "BPFObjectPlugin", capability: .buildTool(), path: "Plugins/BPFObjectPlugin"),
        // Data files (cloud regions, jurisdictions) embedded as Swift strings: no bundle to find at run time.
        .plugin(name: "EmbedDataPlugin", capability: .buildTool(), path: "Plugins/EmbedDataPlugin"),
        .target(name: "BordergateRegions", exclude: ["Data"], plugins: ["EmbedDataPlugin"]),
        .target(
            name: "BordergateKernel",
            dependencies: ["CLibBPF", "CBordergateABI", "CBordergateSys",
                           .product(name: "Logging", package: "swift-log")],
            plugins: ["BPFObjectPlugin"]
        ),
        .target(name: "BordergateAudit", dependencies: ["CBordergateSys", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "BordergatePolicy", dependencies: ["BordergateRegions", .product(name: "Yams", package: "Yams")]),
        .target(
            name: "BordergateProxy",
            dependencies: ["BordergateAudit", "CBordergateSys",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "BordergateService",
            dependencies: ["BordergateKernel", "BordergateAudit", "BordergateProxy", "BordergatePolicy", "BordergateRegions", "CBordergateSys",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "BordergateCLI",
            dependencies: ["BordergateService", "BordergatePolicy", "BordergateRegions",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "BordergateAuditTests", dependencies: ["BordergateAudit"]),
        .testTarget(name: "BordergateRegionsTests", dependencies: ["BordergateRegions"]),
        .testTarget(name: "BordergatePolicyTests", dependencies: ["BordergatePolicy", "BordergateRegions"]),
        .testTarget(name: "BordergateKernelTests", dependencies: ["BordergateKernel"]),
        .testTarget(name: "BordergateProxyTests", dependencies: ["BordergateProxy",
                                                                .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "BordergateServiceTests", dependencies: ["BordergateService", "BordergateKernel",
                                                          .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "BordergateCLITests", dependencies: ["BordergateCLI"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["BordergateAudit", "BordergateCLI"]
        ),
    ]
)
