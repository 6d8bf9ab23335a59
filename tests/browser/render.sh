#!/usr/bin/env bash
# Renders the html report of some captures in headless Chromium (Debian package chromium) and
# keeps what it made, to look at: the page, the DOM after its script ran, and a screenshot.
# tests/html_browser.rs makes the same checks automatically.
#
#   tests/browser/render.sh [OUT_DIR] [INPUT...]     (defaults: a new temporary directory,
#                                                     samples/scenarios)
#
# Run from anywhere; inputs are taken relative to the crate root. Needs a built rstscope
# (target/release, or $RSTSCOPE).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$(mktemp -d)}"
shift || true
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=(samples/scenarios)
rstscope="${RSTSCOPE:-${CARGO_TARGET_DIR:-$root/target}/release/rstscope}"
chromium=/usr/bin/chromium

[ -x "$rstscope" ] || { echo "no rstscope at $rstscope: cargo build --release first" >&2; exit 2; }
[ -x "$chromium" ] || { echo "no $chromium: apt-get install chromium" >&2; exit 2; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Exit status 1 means failing connections were found, which is what the samples hold.
status=0
(cd "$root" && "$rstscope" --format html -o "$out/report.html" "${inputs[@]}") || status=$?
[ "$status" -le 1 ] || { echo "rstscope failed with status $status" >&2; exit 2; }

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
browser=(timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic
    --no-first-run --disable-background-networking --disable-component-update --disable-sync
    --hide-scrollbars --user-data-dir="$profile")
"${browser[@]}" --dump-dom "file://$out/report.html" >"$out/dom.html" 2>/dev/null
"${browser[@]}" --window-size=1280,2400 --screenshot="$out/report.png" \
    "file://$out/report.html" >/dev/null 2>&1

grep -q 'data-ready="1"' "$out/dom.html" || { echo "the page's script did not finish" >&2; exit 1; }
if grep -Eq '(src|href)="https?:' "$out/report.html"; then
    echo "the page references something outside itself" >&2
    exit 1
fi
echo "page:       $out/report.html ($(wc -c <"$out/report.html") bytes)"
echo "DOM:        $out/dom.html: $(grep -o '<tr class="conn' "$out/dom.html" | wc -l) table rows," \
    "$(grep -o '<svg class="ladder"' "$out/dom.html" | wc -l) ladders," \
    "$(grep -o '<rect class="bar"' "$out/dom.html" | wc -l) chart bars"
echo "screenshot: $out/report.png ($(wc -c <"$out/report.png") bytes)"
