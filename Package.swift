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
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
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
        // The layers, each depending only on the ones before it (docs/DESIGN.md, "Architecture"):
        // the graph IR and ONNX/NPZ files; the runtime that executes and differentiates it;
        // quantization (simulation, calibration, export); the two searches; reports; LLMs in GGUF.
        .target(
            name: "MPQGraph",
            dependencies: [
                "ONNXProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        .target(name: "MPQRuntime", dependencies: ["MPQGraph", "CDNNL"]),
        .target(name: "MPQQuantization", dependencies: ["MPQRuntime"]),
        .target(
            name: "MPQSearch",
            dependencies: ["MPQQuantization", "CCBC", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(name: "MPQReports", dependencies: ["MPQSearch"]),
        .target(
            name: "MPQLLM",
            dependencies: ["MPQSearch", "MPQReports", "MPQGGUF", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The umbrella: the workflows behind the CLI (quantize, evaluate, export, both searches),
        // re-exporting every layer.
        .target(
            name: "MPQ",
            dependencies: ["MPQGraph", "MPQRuntime", "MPQQuantization", "MPQSearch", "MPQReports", "MPQLLM", "MPQGGUF"]
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
