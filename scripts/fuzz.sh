#!/usr/bin/env bash
# Fuzzes mpq's readers of untrusted files with libFuzzer (Swift's -sanitize=fuzzer) under ASan.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60; 0 only replays the seeds and regressions, no mutation); TARGETs
# among onnx npy npz gguf (default: all, one after the other).
# Builds the MPQFuzz product into .build-fuzz (debug, -sanitize=fuzzer,address, -D MPQ_FUZZING), then
# runs each target seeded from Fuzz/corpus/<target> and Fuzz/regressions/<target>, with
# Fuzz/dict/<target>.dict. Exits non-zero when any target crashes, leaks, times out or runs out of
# memory; the reproducer is saved under $FUZZ_ARTIFACTS/<target>/ (default .build-fuzz/artifacts) and
# its replay command printed. New coverage-increasing inputs accumulate in .build-fuzz/corpus/<target>
# (not committed; copy good ones to Fuzz/corpus/<target> by hand, after `MPQFuzz -merge=1`).
#
# Environment: FUZZ_MAX_LEN (default 8192 bytes per input), FUZZ_RSS_MB (default 2048: the run fails
# on an input that makes the process hold more), FUZZ_TIMEOUT (default 30 s per input),
# FUZZ_ARTIFACTS, FUZZ_SKIP_BUILD=1 (reuse the last build), FUZZ_FLAGS (more libFuzzer flags).
#
# Reproduce a crash without the sanitizer build: `swift run MPQFuzz <file>` (the plain build of the
# target is a replay driver), or with it: `MPQ_FUZZ_TARGET=<target> .build-fuzz/debug/MPQFuzz <file>`.
# A fixed crash's input goes into Fuzz/regressions/<target>/; FuzzRegressionTests replays it in `swift test`.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(onnx npy npz gguf)
for t in "${targets[@]}"; do
    case $t in onnx|npy|npz|gguf) ;; *) echo "fuzz.sh: unknown target '$t' (onnx, npy, npz, gguf)" >&2; exit 2 ;; esac
done
case $seconds in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;; esac

scratch=.build-fuzz
artifacts=${FUZZ_ARTIFACTS:-$scratch/artifacts}
max_len=${FUZZ_MAX_LEN:-8192}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-30}
build=(swift build -c debug --scratch-path "$scratch" --product MPQFuzz
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -D -Xswiftc MPQ_FUZZING
       -Xswiftc -enable-experimental-feature -Xswiftc Extern)

start=$SECONDS
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
    echo "== building MPQFuzz (libFuzzer + ASan) in $scratch"
    mkdir -p "$scratch"
    # The linker warns once per ASan helper symbol: keep those out of the output.
    if ! "${build[@]}" > "$scratch/build.log" 2>&1; then
        grep -v "warning: Cannot export local symbol" "$scratch/build.log" | tail -60 >&2
        echo "fuzz.sh: build failed (log: $scratch/build.log)" >&2
        exit 1
    fi
    grep -v "warning: Cannot export local symbol" "$scratch/build.log" | tail -2
fi
bin="$("${build[@]}" --show-bin-path)/MPQFuzz"
[ -x "$bin" ] || { echo "fuzz.sh: $bin not built" >&2; exit 1; }
echo "== build: $((SECONDS - start)) s"

# Swift's own crash handler would race libFuzzer's; leaks of Swift runtime caches are not findings.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:handle_abort=1:handle_sigill=1:handle_sigtrap=1}

# libFuzzer reads -max_total_time=0 as "no limit": 0 here means one pass over the inputs instead.
if [ "$seconds" -eq 0 ]; then duration=(-runs=0); else duration=(-max_total_time="$seconds"); fi
failed=()
summary=()
for t in "${targets[@]}"; do
    work="$scratch/corpus/$t"
    out="$artifacts/$t"
    log="$scratch/logs/$t.log"
    mkdir -p "$work" "$out" "$(dirname "$log")"
    seeds=("Fuzz/corpus/$t")
    [ -d "Fuzz/regressions/$t" ] && seeds+=("Fuzz/regressions/$t")
    dict=()
    [ -f "Fuzz/dict/$t.dict" ] && dict=("-dict=Fuzz/dict/$t.dict")
    echo "== fuzzing $t for ${seconds}s (log: $log)"
    t0=$SECONDS
    set +e
    # shellcheck disable=SC2086
    MPQ_FUZZ_TARGET=$t "$bin" "${duration[@]}" -max_len="$max_len" -rss_limit_mb="$rss_mb" \
        -malloc_limit_mb="$rss_mb" -timeout="$timeout" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$out/" ${FUZZ_FLAGS:-} "$work" "${seeds[@]}" > "$log" 2>&1
    rc=$?
    set -e
    final=$(grep -E '^#[0-9]+\s+(DONE|INITED|NEW|REDUCE|pulse)' "$log" | tail -1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    line="$t: rc=$rc, $((SECONDS - t0)) s, ${execs:-?} execs (${rate:-?}/s), peak RSS ${rss:-?} MB | ${final:-no stats}"
    summary+=("$line")
    echo "   $line"
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        grep -E '^==[0-9]+==ERROR|^(SUMMARY|Fatal error|Swift runtime failure)|deadly signal|out-of-memory|timeout after' "$log" | head -5 | sed 's/^/   /' || true
        for f in $(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log"); do
            echo "   reproducer: $f"
            echo "   replay:     MPQ_FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no $bin $f"
        done
        tail -60 "$log" | sed 's/^/   | /'
    fi
done

echo "== summary ($((SECONDS - start)) s in all)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: FAILED targets: ${failed[*]} (reproducers in $artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crashes"
