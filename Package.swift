// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "mpq",
    products: [
        .library(name: "MPQ", targets: ["MPQ"]),
        .library(name: "MPQGGUF", targets: ["MPQGGUF"]),
        .executable(name: "mpq", targets: ["mpq"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", exact: "0.9.20"),
        // `swift package generate-documentation` for the DocC catalog in Sources/MPQ/Documentation.docc.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // oneDNN 2.6 C API (Debian libdnnl-dev) and the OpenMP runtime it is built against.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        // CBC mixed-integer solver, C API (Debian coinor-libcbc-dev).
        .systemLibrary(name: "CCBC", path: "Sources/CCBC", pkgConfig: "cbc"),
        // Generated from onnx.proto by scripts/generate-onnx-proto.sh; do not edit.
        .target(
            name: "ONNXProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "MPQ",
            dependencies: [
                "CCBC", "CDNNL", "ONNXProto", "MPQGGUF",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        // GGUF files and ggml's tensor types (llama.cpp's formats); depends on nothing else in mpq.
        .target(name: "MPQGGUF"),
        .executableTarget(
            name: "mpq",
            dependencies: ["MPQ", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The README's "Use from Swift" example; a test builds and runs it.
        .executableTarget(name: "QuickStart", dependencies: ["MPQ"], path: "examples/quick-start"),
        // libFuzzer harness (scripts/fuzz.sh); a plain build is a replay driver for its inputs.
        .executableTarget(name: "MPQFuzz", dependencies: ["MPQ"]),
        .testTarget(name: "MPQTests", dependencies: ["MPQ", "mpq", "QuickStart"]),
        .testTarget(name: "MPQGGUFTests", dependencies: ["MPQGGUF"]),
    ],
    swiftLanguageModes: [.v5]
)
