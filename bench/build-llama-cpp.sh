#!/usr/bin/env bash
# Builds the llama.cpp tools mpq is compared against (llama-quantize, llama-perplexity, llama-imatrix,
# llama-bench), CPU only, from the llama.cpp vendored in the llama-cpp-python 0.3.36 sdist.
#
#   bench/build-llama-cpp.sh            (prints the bin folder on its last line)
#
# Env: LLAMA_CPP_DIR  where the source and build go (default .bench/llama.cpp in the repository);
#                     sources in $LLAMA_CPP_DIR/src, tools in $LLAMA_CPP_DIR/build/bin.
#      JOBS           parallel compile jobs (default nproc).
#
# The sdist is fetched from a pinned URL and checked against its sha256 (PyPI's JSON API is not
# reachable everywhere; pip download would try to build the package's build dependencies). The
# sdist carries the llama.cpp submodule's .git, so the exact llama.cpp commit is known: it is
# printed, and written to $LLAMA_CPP_DIR/VERSION. Safe to run again: finished steps are skipped.
# Takes ~25 min on 2 busy cores. cmake comes from apt-get when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${LLAMA_CPP_DIR:-$ROOT/.bench/llama.cpp}"
case $DIR in /*) ;; *) DIR="$PWD/$DIR" ;; esac
JOBS="${JOBS:-$(nproc)}"

URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
TOOLS=(llama-quantize llama-perplexity llama-imatrix llama-bench)

mkdir -p "$DIR"
SRC="$DIR/src/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    tgz="$DIR/llama_cpp_python-0.3.36.tar.gz"
    if ! echo "$SHA256  $tgz" | sha256sum -c --status 2>/dev/null; then
        curl -fsSL "$URL" -o "$tgz.part"
        echo "$SHA256  $tgz.part" | sha256sum -c --quiet || { echo "build-llama-cpp: sha256 mismatch" >&2; exit 1; }
        mv "$tgz.part" "$tgz"
    fi
    rm -rf "$DIR/src" && mkdir -p "$DIR/src"
    tar -xzf "$tgz" -C "$DIR/src"
fi

# The vendored commit (the sdist keeps the submodule's git folder; the clone is shallow, so
# llama.cpp's own build number reads 1: the commit hash is what identifies it).
COMMIT="$(git -C "$SRC" rev-parse HEAD 2>/dev/null || cat "$DIR/src/llama_cpp_python-0.3.36/.git/modules/vendor/llama.cpp/HEAD")"
DATE="$(git -C "$SRC" log -1 --format=%cs 2>/dev/null || echo unknown)"
GGML="$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$SRC/ggml/CMakeLists.txt" | paste -sd.)"
VERSION="llama.cpp ${COMMIT:0:7} ($COMMIT, $DATE, ggml $GGML) from llama-cpp-python 0.3.36"
echo "$VERSION" > "$DIR/VERSION"
echo "build-llama-cpp: $VERSION"

command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }

BIN="$DIR/build/bin"
missing=()
for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
    # Static libraries so the tools in build/bin stand alone; GGML_NATIVE stays at its default (on).
    cmake -S "$SRC" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_METAL=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF
    cmake --build "$DIR/build" --config Release -j "$JOBS" --target "${missing[@]}"
fi
for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || { echo "build-llama-cpp: $t not built" >&2; exit 1; }; done
echo "build-llama-cpp: tools in $BIN"
echo "$BIN"
