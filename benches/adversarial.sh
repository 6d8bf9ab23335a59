#!/usr/bin/env bash
# Adversarial load: three captures shaped like hostile or broken networks, generated (never
# committed) by benches/adversarial.py into OUTDIR (default /var/tmp/rstscope-adversarial),
# then `rstscope flows` and the default analysis on each, under GNU time.
#
#   bash benches/adversarial.sh [OUTDIR]
#
#   halfopen.pcap  1,000,000 SYNs from distinct clients, never answered (90 MB)
#   reorder.pcap   one connection, a 1 GiB response in 2 MiB windows sent back to front
#                  (1.1 GB; every window overflows the 1 MiB out-of-order buffer)
#   strayrst.pcap  1,000,000 RSTs for connections never seen (70 MB)
#   halfopen-250k.pcap, strayrst-250k.pcap: the same with 250,000 connections, to check that
#                  the time grows linearly
#
# Prints, per shape and command: input size, packets, wall time, peak RSS, packets/s, and
# what the report says about the connections the caps cut short (live-connection cap
# evictions, out-of-order buffer cap hits). Exits non-zero when a report does not mention a
# cap that the shape must hit. Needs python3 and GNU time (/usr/bin/time, Debian package
# time). Honours CARGO_TARGET_DIR. Regenerate the captures with REGENERATE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-/var/tmp/rstscope-adversarial}
mkdir -p "$OUT"
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/rstscope
for shape in halfopen reorder strayrst; do
    if [ "${REGENERATE:-0}" = 1 ] || [ ! -s "$OUT/$shape.pcap" ]; then
        python3 benches/adversarial.py "$OUT" "$shape"
    fi
done
# A quarter of the connections, to check that the time grows linearly with them.
for shape in halfopen strayrst; do
    if [ "${REGENERATE:-0}" = 1 ] || [ ! -s "$OUT/$shape-250k.pcap" ]; then
        ADVERSARIAL_CONNECTIONS=250000 ADVERSARIAL_SUFFIX=-250k \
            python3 benches/adversarial.py "$OUT" "$shape"
    fi
done

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
status=0

# run NAME FILE ARGS...: one timed run; the report goes to $WORK/NAME.out.
run() {
    local name=$1 file=$2
    shift 2
    cat "$file" >/dev/null # into the page cache: time the tool, not the disk
    local code=0
    /usr/bin/time -v -o "$WORK/$name.time" "$BIN" "$@" -o "$WORK/$name.out" "$file" \
        2>"$WORK/$name.err" || code=$?
    # 0 and 1 are results; 2 means the input had faults, which none of these has.
    if [ "$code" -gt 1 ]; then
        echo "$name: exit status $code" >&2
        cat "$WORK/$name.err" >&2
        status=1
    fi
    local wall cpu rss size packets
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/$name.time")
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {print s}' "$WORK/$name.time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
    size=$(stat -c %s "$file")
    packets=$(PACKETS_OF "$file")
    python3 - "$name" "$wall" "$cpu" "$rss" "$size" "$packets" <<'PY'
import sys
name, wall, cpu, rss_kb, size, packets = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
print(f"{name:<24}{size / 1e6:>8.1f}{packets:>9}{secs:>8.2f}{cpu:>8.2f}{rss_kb / 1024:>9.1f}{packets / secs / 1e6:>8.2f}")
PY
}

# Packets in a legacy pcap: walk the record headers (the generator writes little-endian).
PACKETS_OF() {
    python3 - "$1" <<'PY'
import struct, sys
n = 0
with open(sys.argv[1], "rb") as f:
    f.seek(24)
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        f.seek(struct.unpack("<I", h[8:12])[0], 1)
        n += 1
print(n)
PY
}

# expect NAME PATTERN WHAT: the report of NAME must contain PATTERN.
expect() {
    local n
    n=$(grep -c -- "$2" "$WORK/$1.out" || true)
    if [ "$n" -gt 0 ]; then
        echo "  $1: $3: $n lines match '$2'"
    else
        echo "  $1: MISSING: $3 (no line matches '$2')" >&2
        status=1
    fi
}

# cpu s is user + system time: on a shared machine it tells the work done better than the
# wall time does. Mpkt/s is per wall second.
printf '%-24s%8s%9s%8s%8s%9s%8s\n' run "MB" packets "wall s" "cpu s" "RSS MiB" "Mpkt/s"
run halfopen-250k-flows "$OUT/halfopen-250k.pcap" flows
run halfopen-flows "$OUT/halfopen.pcap" flows
run halfopen-analysis "$OUT/halfopen.pcap"
run reorder-flows "$OUT/reorder.pcap" flows
run reorder-analysis "$OUT/reorder.pcap"
run strayrst-250k-flows "$OUT/strayrst-250k.pcap" flows
run strayrst-flows "$OUT/strayrst.pcap" flows
run strayrst-analysis "$OUT/strayrst.pcap"

echo
echo "What the reports say about the caps:"
# 1,000,000 live half-open connections against a cap of 262,144: most are evicted, each
# record says so, and the footer counts them.
expect halfopen-flows "evicted (connection cap)" "connections evicted by the live-connection cap"
expect halfopen-flows "closed early by the live-connection cap" "the footer's eviction count"
expect halfopen-analysis "live-connection cap" "verdicts naming the live-connection cap"
# Every 2 MiB window overflows the 1 MiB out-of-order buffer.
expect reorder-flows "out-of-order buffer cap reached" "the buffer cap hits of the connection"
expect reorder-analysis "out-of-order buffer" "the analysis naming the buffer cap"
# Stray RSTs close at once and linger 2 s: whether the cap is reached depends on the rate.
grep -h "connections" "$WORK/strayrst-flows.out" | tail -n 3 | sed 's/^/  strayrst-flows footer: /'
for name in halfopen-flows reorder-flows strayrst-flows; do
    tail -n 2 "$WORK/$name.out" | sed "s/^/  $name: /"
done
for name in halfopen-analysis reorder-analysis strayrst-analysis; do
    sed -n '1,6p' "$WORK/$name.out" | sed "s/^/  $name: /"
done
exit $status
