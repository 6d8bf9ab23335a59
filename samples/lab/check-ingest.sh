#!/usr/bin/env bash
# Checks with tshark/capinfos that the captures in samples/ingest/ show what they
# are meant to show, and that converted files decode like their source.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../ingest"

fail() { echo "check-ingest: FAIL: $*" >&2; exit 1; }
ok() { echo "check-ingest: ok: $*" >&2; }
count() { tshark -r "$1" -Y "$2" -T fields -e frame.number 2>/dev/null | wc -l; }
ts() { tshark "$@" 2>/dev/null; }

for f in http-v4.pcap http-v4-nano.pcap http-any-sll2.pcap http-any-sll.pcap http-v6.pcap snaplen96.pcap; do
    n=$(ts -r "$f" -q -z conv,tcp | grep -c '<->' || true)
    [ "$n" -eq 3 ] || fail "$f has $n TCP conversations, expected 3"
    [ "$(count "$f" 'udp && !icmp && !icmpv6')" -ge 2 ] || fail "$f: no UDP"
    [ "$(count "$f" 'icmp || icmpv6')" -ge 4 ] || fail "$f: no ICMP"
done
ok "3 TCP conversations, UDP and ICMP in the base recordings"

capinfos -a "http-v4-nano.pcap" >/dev/null
capinfos http-v4-nano.pcap 2>/dev/null | grep -q 'nanoseconds' || fail "http-v4-nano.pcap is not nanosecond"
capinfos http-v4.pcap 2>/dev/null | grep -q 'microseconds' || fail "http-v4.pcap is not microsecond"
capinfos big-endian-nano.pcap 2>/dev/null | grep -q 'nanoseconds' || fail "big-endian-nano.pcap is not nanosecond"
ok "time stamp precisions"

n=$(capinfos two-interfaces.pcapng 2>/dev/null | sed -n 's/^Number of interfaces in file: *//p')
[ "$n" = 2 ] || fail "two-interfaces.pcapng has $n interfaces"
n=$(ts -r two-interfaces.pcapng -T fields -e frame.interface_id | sort -u | wc -l)
[ "$n" = 2 ] || fail "two-interfaces.pcapng packets come from $n interfaces"
ok "two-interfaces.pcapng has 2 interfaces with packets"

m=$(ts -r snaplen96.pcap -T fields -e frame.cap_len | sort -n | tail -1)
[ "$m" -le 96 ] || fail "snaplen96.pcap has a $m byte record"
[ "$(count snaplen96.pcap 'frame.cap_len < frame.len')" -gt 0 ] || fail "snaplen96.pcap: nothing truncated"
ok "snaplen96.pcap truncated at 96 bytes"

[ "$(count ipv4-options.pcap 'tcp && ip.hdr_len > 20')" -gt 0 ] || fail "ipv4-options.pcap: no IPv4 options on TCP"
ok "ipv4-options.pcap: $(count ipv4-options.pcap 'tcp && ip.hdr_len > 20') TCP packets with IPv4 options"

[ "$(count ipv6-ext-headers.pcap 'tcp && ipv6.dstopts')" -gt 0 ] || fail "ipv6-ext-headers.pcap: no destination options on TCP"
[ "$(count ipv6-ext-headers.pcap 'tcp && ipv6.hopopts')" -gt 0 ] || fail "ipv6-ext-headers.pcap: no hop-by-hop options on TCP"
ok "ipv6-ext-headers.pcap: $(count ipv6-ext-headers.pcap 'tcp && ipv6.dstopts') TCP packets with dst opts, $(count ipv6-ext-headers.pcap 'tcp && ipv6.hopopts') with hop-by-hop"

nf=$(count ipv4-fragments.pcap 'ip.flags.mf==1 || ip.frag_offset>0')
[ "$nf" -gt 0 ] || fail "ipv4-fragments.pcap: no fragments"
ok "ipv4-fragments.pcap: $nf fragment frames"

# Converted files must decode to the same packets as their source.
sig() { tshark -r "$1" -T fields -e frame.time_epoch -e frame.len -e ip.id -e ipv6.plen -e tcp.srcport -e tcp.seq_raw -e tcp.len -e udp.length -e icmp.type -e icmpv6.type 2>/dev/null; }
same() { # same SRC DST
    diff <(sig "$1") <(sig "$2") >/dev/null && return 0
    # frame.len differs by the link header size; compare without it
    diff <(sig "$1" | cut -f1,3-) <(sig "$2" | cut -f1,3-) >/dev/null || fail "$2 does not decode like $1"
}
for f in vlan.pcap qinq.pcap big-endian.pcap null-le.pcap null-be.pcap loop.pcap raw-101.pcap raw-228.pcap raw-12.pcap raw-14.pcap http-v4.pcap.gz http-v4.pcap.zst compressed-capture.bin; do
    same http-v4.pcap "$f"
done
same http-v4-nano.pcap big-endian-nano.pcap
same http-v6.pcap raw-229.pcap
[ "$(count vlan.pcap 'vlan.id == 100')" = "$(count http-v4.pcap frame)" ] || fail "vlan.pcap tags"
[ "$(count qinq.pcap 'ieee8021ad.id == 200 && vlan.id == 100 && vlan.etype == 0x0800')" = "$(count http-v4.pcap frame)" ] || fail "qinq.pcap tags"
diff <(tshark -r two-interfaces.pcapng -x -T fields -e frame.time_epoch -e frame.interface_id -e frame.interface_name -e frame.len -e frame.cap_len 2>/dev/null) \
     <(tshark -r big-endian.pcapng -x -T fields -e frame.time_epoch -e frame.interface_id -e frame.interface_name -e frame.len -e frame.cap_len 2>/dev/null) >/dev/null \
     || fail "big-endian.pcapng differs from two-interfaces.pcapng"
diff <(capinfos -M two-interfaces.pcapng 2>/dev/null | grep -v -e '^File name' -e '^SHA' -e '^RIPEMD' -e '^SHA1' -e 'File size' -e 'Data byte rate' -e 'Data bit rate') \
     <(capinfos -M big-endian.pcapng 2>/dev/null | grep -v -e '^File name' -e '^SHA' -e '^RIPEMD' -e '^SHA1' -e 'File size' -e 'Data byte rate' -e 'Data bit rate') >&2 \
     || fail "capinfos differs between two-interfaces.pcapng and big-endian.pcapng"
ok "converted files decode like their sources"

total=0
for f in *; do
    [ -f "$f" ] || continue
    s=$(stat -c %s "$f")
    [ "$s" -lt 153600 ] || fail "$f is $s bytes (limit 150 KB)"
    total=$((total + s))
done
[ "$total" -lt 1572864 ] || fail "samples/ingest totals $total bytes (limit 1.5 MB)"
ok "sizes: total $total bytes"
