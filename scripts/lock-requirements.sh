#!/usr/bin/env bash
# Maintainer tool: resolves scripts/requirements.in in a scratch virtual environment and writes
# scripts/requirements.lock with the sha256 of every wheel for CPython 3.11 and 3.12 on x86_64 Linux
# (Debian 12 and Ubuntu 24.04), so scripts/setup.sh installs with --require-hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.in
"$work/venv/bin/pip" freeze --all --exclude pip --exclude setuptools --exclude wheel > "$work/closure.txt"
for version in 3.11 3.12; do
  "$work/venv/bin/pip" download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$version" --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 \
    -d "$work/wheels" -r "$work/closure.txt"
done
"$work/venv/bin/python" - "$work/wheels" > scripts/requirements.lock <<'PY'
import collections, hashlib, os, sys
folder = sys.argv[1]
hashes = collections.defaultdict(list)
for name in sorted(os.listdir(folder)):
    project, version = name.split("-")[:2]
    digest = hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
    hashes[(project.replace("_", "-").lower(), version)].append(digest)
print("# The Python packages the tests, benchmarks and examples use as an independent reference,")
print("# with every dependency pinned and sha256-checked (wheels for CPython 3.11 and 3.12, x86_64 Linux).")
print("# Made by scripts/lock-requirements.sh from the top-level pins in scripts/requirements.in; do not edit.")
for (project, version), digests in sorted(hashes.items()):
    print(f"{project}=={version} \\")
    print(" \\\n".join(f"    --hash=sha256:{d}" for d in sorted(set(digests))))
PY
echo "wrote scripts/requirements.lock"
