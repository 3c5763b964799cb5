// swift-tools-version: 6.1
// libFuzzer harnesses for Bordergate's parsers; built and run by scripts/fuzz, not by the main
// package. The parser sources are the main package's own, through the symlinks in Sources/.
import PackageDescription

let package = Package(
    name: "BordergateFuzz",
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .plugin(name: "EmbedDataPlugin", capability: .buildTool(), path: "Plugins/EmbedDataPlugin"),
        .target(name: "BordergateRegions", exclude: ["Data"], plugins: ["EmbedDataPlugin"]),
        .target(name: "BordergateMasking", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "BordergatePolicy", dependencies: ["BordergateRegions", "BordergateMasking", .product(name: "Yams", package: "Yams")]),
        // The proxy's sniffers: plain Swift, no NIO (see ProtocolSniffer.swift).
        .target(name: "BordergateSniffing"),
        // The PostgreSQL framer alone (one file of BordergateInspection; ByteBuffer from NIOCore),
        // built for testing so the harness reaches its internal types.
        .target(name: "BordergatePGFraming", dependencies: [.product(name: "NIOCore", package: "swift-nio")],
                swiftSettings: [.unsafeFlags(["-enable-testing"])]),
        // One binary for every target (one link); FUZZ_TARGET picks the parser. libFuzzer brings main().
        .executableTarget(
            name: "bordergate-fuzz",
            dependencies: ["BordergateRegions", "BordergatePolicy", "BordergateSniffing", "BordergateMasking", "BordergatePGFraming",
                           .product(name: "NIOCore", package: "swift-nio")],
            path: "Harness",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
