#!/usr/bin/env bash
# Runs each fuzz target for a bounded time, one after the other, and appends what they did
# (executions, corpus size, crashes, out-of-memory and timeouts found) to fuzz/RESULTS.md.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  defaults to 300
#   TARGET              defaults to every target
#
# Installs what it needs: the nightly toolchain (rustup, minimal profile) and cargo-fuzz.
# When nightly cannot be fetched it builds with the stable toolchain and RUSTC_BOOTSTRAP=1.
# Honours CARGO_TARGET_DIR (default: fuzz/target).
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$fuzz_dir")
all_targets=(capture_reader decode_packet detect_tls detect_http1 detect_http2 reassembly pipeline)

seconds=${1:-300}
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
    echo "run.sh: SECONDS_PER_TARGET must be a positive whole number, not '$seconds'" >&2
    exit 2
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
    if ! printf '%s\n' "${all_targets[@]}" | grep -qx -- "$t"; then
        echo "run.sh: unknown target '$t' (known: ${all_targets[*]})" >&2
        exit 2
    fi
done

# The toolchain: cargo-fuzz needs nightly flags (-Zsanitizer, sancov).
toolchain=nightly
toolchain_note=nightly
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "run.sh: installing the nightly toolchain" >&2
    if ! rustup toolchain install nightly --profile minimal; then
        echo "run.sh: nightly could not be fetched: building with stable and RUSTC_BOOTSTRAP=1" >&2
        toolchain=stable
        toolchain_note="stable with RUSTC_BOOTSTRAP=1 (nightly could not be fetched)"
        export RUSTC_BOOTSTRAP=1
    fi
fi
toolchain_note="$toolchain_note, $(rustup run "$toolchain" rustc --version)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

target_dir=${CARGO_TARGET_DIR:-$fuzz_dir/target}
host=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$host/release

cd "$root"
# Built once, then run directly: no rebuild between targets, one log per run.
# -a: overflow checks and debug assertions stay on in the optimised build.
cargo "+$toolchain" fuzz build -O -a --fuzz-dir "$fuzz_dir"

# Seeds from samples/, regenerated on every run (the fuzzer's own corpus is kept apart).
rm -rf "$fuzz_dir/seeds"
cargo "+$toolchain" run --quiet --release --manifest-path "$fuzz_dir/Cargo.toml" \
    --example seed_corpora -- "$root/samples" "$fuzz_dir/seeds"

stamp=$(date -u +%Y-%m-%dT%H:%MZ)
log_dir=$fuzz_dir/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$log_dir"
rows=()
for t in "${targets[@]}"; do
    corpus=$fuzz_dir/corpus/$t
    artifacts=$fuzz_dir/artifacts/$t
    work=$log_dir/$t
    mkdir -p "$corpus" "$artifacts" "$work" "$fuzz_dir/seeds/$t"
    before=$(ls "$artifacts")
    echo "run.sh: $t for ${seconds}s (log: $work/fuzz-0.log)" >&2
    started=$(date +%s)
    # -jobs=1: one worker process, whose output libFuzzer writes to fuzz-0.log in the
    # working directory. The first corpus directory takes the new inputs; the seeds are
    # only read.
    (cd "$work" && "$bin_dir/$t" -jobs=1 -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" "$fuzz_dir/seeds/$t" >"$work/parent.log" 2>&1) || true
    elapsed=$(($(date +%s) - started))
    log=$work/fuzz-0.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -n1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" 2>/dev/null | tail -n1)
    corpus_size=$(find "$corpus" -type f | wc -l)
    new=$(comm -13 <(printf '%s\n' "$before" | sort) <(ls "$artifacts" | sort))
    count() { printf '%s\n' "$new" | grep -c "^$1-" || true; }
    crashes=$(count crash)
    ooms=$(count oom)
    timeouts=$(count timeout)
    leaks=$(count leak)
    found=$(printf '%s\n' "$new" | grep -E '^(crash|oom|timeout|leak)-' | sed "s|^|fuzz/artifacts/$t/|" | paste -sd ' ' - || true)
    rows+=("| $t | $elapsed | ${execs:-?} | $corpus_size | ${rss:-?} | $crashes | $ooms | $timeouts | $leaks | ${found:--} |")
    echo "run.sh: $t: ${execs:-?} executions, corpus $corpus_size, crashes $crashes, ooms $ooms, timeouts $timeouts" >&2
done

results=$fuzz_dir/RESULTS.md
if [[ ! -f $results ]]; then
    printf '# Fuzzing results\n\nAppended by `fuzz/run.sh`, newest last. See README.md for the targets.\n' >"$results"
fi
{
    printf '\n## %s: %s s per target\n\n' "$stamp" "$seconds"
    printf 'Machine: %s cores (%s), %s.\n\n' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" "$toolchain_note"
    printf '| target | seconds | executions | corpus | peak RSS MB | crashes | ooms | timeouts | leaks | artifacts |\n'
    printf '|---|---|---|---|---|---|---|---|---|---|\n'
    printf '%s\n' "${rows[@]}"
} >>"$results"
echo "run.sh: results appended to $results; logs in $log_dir" >&2
