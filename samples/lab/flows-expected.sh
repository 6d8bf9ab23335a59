#!/usr/bin/env bash
# Writes samples/flows/expected.tsv: one row per TCP conversation (tshark's
# tcp.stream) per capture, from tshark; the frame and byte counts per direction are
# checked against tshark's own `-q -z conv,tcp` table. Rerun any time:
#   bash samples/lab/flows-expected.sh
# Columns: see samples/flows/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/../flows"
python3 "$HERE/flows_facts.py" expected "$OUT" >"$OUT/expected.tsv.new"
mv "$OUT/expected.tsv.new" "$OUT/expected.tsv"
echo "flows-expected: wrote $(cd "$OUT" && pwd)/expected.tsv" >&2
