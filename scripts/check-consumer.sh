#!/usr/bin/env bash
# Checks that another package can depend on mpq by version, as a user's Package.swift would:
# clones this repository (its committed state), tags it with the release version, and builds and
# runs a small consumer package that declares `.package(url: ..., from: VERSION)`.
# Usage: scripts/check-consumer.sh [VERSION]   (default 0.2.0)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-0.2.0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/mpq"
git -C "$work/mpq" tag -f "$version" >/dev/null
mkdir -p "$work/consumer/Sources/Consumer"
cat > "$work/consumer/Package.swift" <<EOF
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "consumer",
    dependencies: [.package(url: "file://$work/mpq", from: "$version")],
    targets: [.executableTarget(name: "Consumer", dependencies: [.product(name: "MPQ", package: "mpq")])]
)
EOF
cat > "$work/consumer/Sources/Consumer/main.swift" <<'EOF'
import MPQ

let config = try QuantizationConfig(preset: "w8a8")
print("consumer: mpq \(config.weights.name) weights, \(config.activations.name) activations; deploy target \(DeploymentTarget.host.rawValue)")
EOF
swift build --package-path "$work/consumer" > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
"$work/consumer/.build/debug/Consumer"
echo "check-consumer: a package depending on mpq from: \"$version\" builds and runs"
