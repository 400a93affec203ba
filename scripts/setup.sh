#!/usr/bin/env bash
# Installs what mpq needs on Debian/Ubuntu: oneDNN, CBC, zlib (system) and the
# Python packages the tests and examples use as an independent reference.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  libdnnl-dev coinor-libcbc-dev zlib1g-dev pkg-config python3-pip >/dev/null
python3 -m pip install --quiet --disable-pip-version-check \
  "onnxruntime==1.32.*" "onnx==1.23.*" numpy pillow tokenizers 2>&1 | grep -v "Running pip as the 'root' user" || true
python3 -c "import onnxruntime, onnx, numpy, PIL, tokenizers" 
