#!/usr/bin/env bash
# Builds the DocC documentation of every library target as one combined archive
# (swift-docc-plugin's experimental combined mode, so the MPQ catalog can link the layers'
# symbols) into .build/docs/; fails when DocC reports any warning.
#
#   scripts/docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(MPQ MPQGraph MPQRuntime MPQQuantization MPQSearch MPQReports MPQLLM MPQGGUF)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift package --allow-writing-to-directory .build/docs generate-documentation \
    --enable-experimental-combined-documentation --output-path .build/docs \
    $(printf -- '--target %s ' "${targets[@]}") 2>&1 | tee "$log"
# Every warning counts except SwiftPM's note about a file in the ZIPFoundation dependency.
warnings=$(grep "warning:" "$log" | grep -vc "'zipfoundation': found 1 file(s) which are unhandled" || true)
if [ "$warnings" -gt 0 ]; then
    echo "docs.sh: $warnings DocC warnings" >&2
    exit 1
fi
echo "docs.sh: documentation in .build/docs, no warnings"
