#!/usr/bin/env bash
# Writes samples/ingest/expected-counts.tsv: what Wireshark's tools (capinfos,
# tshark, default preferences) see in every capture in samples/ingest/.
# Rerun any time: bash samples/lab/expected-counts.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../ingest"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

files=()
for f in *; do
    case "$f" in *.tsv|*.md) continue;; esac
    [ -f "$f" ] && files+=("$f")
done

for f in "${files[@]}"; do
    tshark -r "$f" -T fields -E separator=/t -e frame.number -e frame.time_epoch -e frame.protocols \
        >"$TMP/$f.fields" 2>/dev/null
    tshark -r "$f" -o ip.defragment:FALSE -Y 'ip.flags.mf == 1 || ip.frag_offset > 0' -T fields -e frame.number \
        >"$TMP/$f.frags" 2>/dev/null
    tshark -r "$f" -q -z conv,tcp >"$TMP/$f.conv" 2>/dev/null
    capinfos "$f" >"$TMP/$f.capinfos" 2>/dev/null
done

python3 - "$TMP" "${files[@]}" >expected-counts.tsv <<'PY'
import gzip, re, struct, sys, os, subprocess
tmp, files = sys.argv[1], sys.argv[2:]

def container(raw):
    """-> (format, inner bytes)"""
    if raw[:2] == b"\x1f\x8b":
        return "gz", gzip.decompress(raw)
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        inner = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=True).stdout
        return "zst", inner
    return "", raw

def describe(raw):
    """-> (format, byte_order, ts_precision, [linktypes])"""
    m = raw[:4]
    for e, order in (("<", "le"), (">", "be")):
        magic = struct.unpack(e + "I", m)[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            lt = struct.unpack(e + "I", raw[20:24])[0] & 0x0FFFFFFF
            return "pcap", order, "nsec" if magic == 0xA1B23C4D else "usec", [lt]
    if m == b"\x0a\x0d\x0d\x0a":
        e = "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        order = "le" if e == "<" else "be"
        off, lts, res = 0, [], []
        while off + 12 <= len(raw):
            bt, bl = struct.unpack(e + "II", raw[off:off + 8])
            if bt == 1:
                lts.append(struct.unpack(e + "H", raw[off + 8:off + 10])[0])
                # if_tsresol option (code 9)
                o, r = off + 16, 6
                while o + 4 <= off + bl - 4:
                    code, ln = struct.unpack(e + "HH", raw[o:o + 4])
                    if code == 0:
                        break
                    if code == 9:
                        v = raw[o + 4]
                        r = v if v < 128 else None
                    o += 4 + ln + (-ln) % 4
                res.append({6: "usec", 9: "nsec"}.get(r, "other"))
            off += bl
        return "pcapng", order, ",".join(sorted(set(res))) or "-", lts
    return "unknown", "-", "-", []

print("\t".join(["file", "format", "byte_order", "ts_precision", "link_types", "encapsulations",
                 "interfaces", "packets", "ipv4_packets", "ipv6_packets", "tcp_packets", "udp_packets",
                 "icmp_packets", "ip_fragment_frames", "tcp_conversations", "first_time", "last_time"]))
for f in files:
    raw = open(f, "rb").read()
    comp, inner = container(raw)
    fmt, order, prec, lts = describe(inner)
    if comp:
        fmt += "." + comp
    cap = open(os.path.join(tmp, f + ".capinfos")).read()
    encs = re.findall(r"Encapsulation = [^(]*\(\d+ - ([^)]+)\)", cap)
    packets = int(re.search(r"Number of packets:\s*(\d+)", cap).group(1))
    nifs = len(encs)
    c = dict(ip=0, ipv6=0, tcp=0, udp=0, icmp=0)
    times = []
    for line in open(os.path.join(tmp, f + ".fields")):
        num, t, protos = line.rstrip("\n").split("\t")
        times.append(t)
        p = protos.split(":")
        net = next((x for x in p if x in ("ip", "ipv6")), None)
        if net:
            c[net] += 1
        # first transport-level protocol; ICMP errors quoting TCP/UDP count as ICMP
        tr = next((x for x in p if x in ("tcp", "udp", "icmp", "icmpv6")), None)
        if tr in ("icmp", "icmpv6"):
            c["icmp"] += 1
        elif tr:
            c[tr] += 1
    if len(times) != packets:
        sys.exit("%s: capinfos says %d packets, tshark printed %d" % (f, packets, len(times)))
    frags = sum(1 for _ in open(os.path.join(tmp, f + ".frags")))
    convs = sum(1 for l in open(os.path.join(tmp, f + ".conv")) if "<->" in l)
    print("\t".join(map(str, [f, fmt, order, prec, ",".join(map(str, lts)) or "-", ",".join(encs) or "-", nifs,
                              packets, c["ip"], c["ipv6"], c["tcp"], c["udp"], c["icmp"], frags, convs,
                              times[0] if times else "-", times[-1] if times else "-"])))
PY
echo "expected-counts: wrote $(pwd)/expected-counts.tsv" >&2
