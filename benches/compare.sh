#!/usr/bin/env bash
# Whole-command timings on one large capture, page-cached, in one run: `rstscope stats`
# (capture and decode stages), `rstscope flows` (plus the connection engine) and the default
# analysis (plus the protocol detectors and a verdict for every connection, the report
# written to a file), each with one thread and with the default, against `capinfos` and
# `tshark -q -z conv,tcp` on the same file. Prints the median wall time of several runs, the
# mean CPU time (user + system, all threads), MB/s, packets/s, peak RSS and the speed ratio
# to tshark.
#
#   bash benches/compare.sh FILE [RUNS] [TSHARK_RUNS]
#
# Needs hyperfine, capinfos and tshark (Debian packages hyperfine, tshark) and GNU time
# (/usr/bin/time, package time). Record a large capture first with benches/record-large.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

FILE=${1:?usage: bash benches/compare.sh FILE [RUNS] [TSHARK_RUNS]}
RUNS=${2:-7}
TSHARK_RUNS=${3:-3}
cargo build --release --quiet
BIN=$PWD/target/release/rstscope
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat "$FILE" >/dev/null # into the page cache
SIZE=$(stat -c %s "$FILE")
PACKETS=$(capinfos -c -M -T -r "$FILE" | awk 'END {print $NF}')

measure() { # name runs command...
    local name=$1 runs=$2
    shift 2
    # --ignore-failure: the analysis exits 1 when it found failing connections.
    hyperfine --style none --ignore-failure --warmup 1 --runs "$runs" \
        --export-json "$WORK/$name.json" "$* > $WORK/$name.out" >/dev/null
    # Status 1 is the analysis finding failing connections: a result, not an error.
    /usr/bin/time -f %M -o "$WORK/$name.rss" bash -c "$* > /dev/null" || [ $? -eq 1 ]
}

measure stats_j1 "$RUNS" "$BIN" stats -j1 "$FILE"
measure stats "$RUNS" "$BIN" stats "$FILE"
measure flows_j1 "$RUNS" "$BIN" flows -j1 "$FILE"
measure flows "$RUNS" "$BIN" flows "$FILE"
measure analysis_j1 "$RUNS" "$BIN" -j1 -o "$WORK/report-j1.txt" "$FILE"
measure analysis "$RUNS" "$BIN" -o "$WORK/report.txt" "$FILE"
cmp -s "$WORK/report-j1.txt" "$WORK/report.txt" || echo "warning: -j1 and default reports differ" >&2
# The -j1 / default ratio again, the two runs alternating: this machine's speed drifts, and
# hyperfine runs each command's series in one go.
for _ in $(seq "$RUNS"); do
    for jobs in j1 default; do
        flag=()
        [ "$jobs" = j1 ] && flag=(-j1)
        /usr/bin/time -f %e -a -o "$WORK/alternating-$jobs" \
            "$BIN" "${flag[@]}" -q -o /dev/null "$FILE" || [ $? -eq 1 ]
    done
done
measure capinfos "$RUNS" capinfos "$FILE"
measure tshark "$TSHARK_RUNS" tshark -n -q -z conv,tcp -r "$FILE"

python3 - "$WORK" "$SIZE" "$PACKETS" "$FILE" <<'PY'
import json, re, statistics, sys
work, size, packets, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = {}
for name in ["stats_j1", "stats", "flows_j1", "flows", "analysis_j1", "analysis", "capinfos", "tshark"]:
    times = json.load(open(f"{work}/{name}.json"))["results"][0]["times"]
    rss_kb = int(open(f"{work}/{name}.rss").read().split()[-1])
    result = json.load(open(f"{work}/{name}.json"))["results"][0]
    cpu = result["user"] + result["system"]  # hyperfine gives their means
    rows[name] = (statistics.median(times), len(times), rss_kb, cpu)
print(f"# {path}: {size / 1e6:.0f} MB, {packets} packets")
print(f"{'command':<22}{'median s':>10}{'CPU s':>8}{'runs':>6}{'MB/s':>10}{'Mpkt/s':>9}{'peak RSS MiB':>14}{'x tshark':>10}")
names = {"stats_j1": "rstscope stats -j1", "stats": "rstscope stats", "flows_j1": "rstscope flows -j1",
         "flows": "rstscope flows", "analysis_j1": "rstscope -j1", "analysis": "rstscope",
         "capinfos": "capinfos", "tshark": "tshark conv,tcp"}
for name, (t, n, rss, cpu) in rows.items():
    print(f"{names[name]:<22}{t:>10.3f}{cpu:>8.3f}{n:>6}{size / 1e6 / t:>10.0f}{packets / 1e6 / t:>9.2f}"
          f"{rss / 1024:>14.1f}{rows['tshark'][0] / t:>10.1f}")
for what in ["stats", "flows", "analysis"]:
    print(f"default -j against -j1, {what}: {rows[what + '_j1'][0] / rows[what][0]:.2f}x")
alternating = {}
for jobs in ["j1", "default"]:
    # GNU time also notes "Command exited with non-zero status 1": only the times count.
    lines = open(f"{work}/alternating-{jobs}").read().splitlines()
    alternating[jobs] = statistics.median(float(t) for t in lines if re.fullmatch(r"[0-9.]+", t))
print(f"default -j against -j1, analysis, runs alternating: {alternating['j1']:.3f} s / "
      f"{alternating['default']:.3f} s = {alternating['j1'] / alternating['default']:.2f}x")
PY
