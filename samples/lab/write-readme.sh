#!/usr/bin/env bash
# Writes samples/ingest/README.md (called at the end of record-ingest.sh, so the
# software versions listed are the ones the captures were recorded with).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/../ingest"

first() { "$@" 2>/dev/null | head -n 1; }   # tshark/dumpcap warn about root on stderr
TCPDUMP_V=$(tcpdump --version 2>&1 | head -n 2 | paste -sd ';' | sed 's/;/; /')
NGINX_V=$(nginx -v 2>&1 | head -n 1)   # nginx -v prints on stderr
CURL_V=$(first curl --version)
TSHARK_V=$(first tshark --version)
DUMPCAP_V=$(first dumpcap --version)
PY_V=$(first python3 --version)
PING_V=$(first ping -V)
ZSTD_V=$(first zstd --version | tr -d "*" | sed "s/^ *//; s/ *$//")
KERNEL=$(uname -r)
OS=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || echo unknown)

cat >"$OUT/README.md" <<MD
# Sample captures for capture ingestion and decoding

Everything here is written by \`samples/lab/record-ingest.sh\`. To redo it all (as root,
on Debian 12):

    bash samples/lab/install-deps.sh && bash samples/lab/record-ingest.sh

The recorded files hold real traffic from real software (nginx, curl, python3
sockets, ping) on loopback (127.0.0.0/8, ::1) inside a private network namespace
(\`unshare -n\`), with TSO/GSO/GRO off on \`lo\` so segments are at most one MTU, as on
a real NIC. tcpdump ran with \`--immediate-mode\` and reported 0 packets dropped
by kernel for every file kept. The converted files are made from those recordings by
\`samples/lab/convert.py\` (standard library only), which changes only the framing
(file format, byte order, link-layer header); IP packets are byte-for-byte as recorded.
\`samples/lab/check-ingest.sh\` checks with tshark that every file shows what it should
and that every converted file decodes to the same packets as its source.
\`expected-counts.tsv\` (from \`samples/lab/expected-counts.sh\`) lists what capinfos
and tshark count in each file; time stamps change with every recording.

Base traffic ("the HTTP traffic" below): nginx on 127.0.0.1:8080 / [::1]:8080 serving
\`1k.txt\` (1024 bytes) and \`60k.txt\` (61440 bytes); three curl runs = three keep-alive
TCP connections with two requests each (1k+1k, 1k+60k, 1k+1k); two UDP datagrams from
python3 to port 9 (nobody listens: each draws an ICMP port unreachable that quotes the
IP and UDP headers); \`ping -c 2\`. Checksums of loopback packets are partial
(the kernel leaves them to "offload"), so tshark calls TCP/UDP checksums incorrect,
as in captures taken on a sending host with checksum offload.

## Files

Recorded:

| file | what it is | link type | exercises |
| --- | --- | --- | --- |
| http-v4.pcap | \`tcpdump -i lo\`, the HTTP traffic over IPv4 | 1 EN10MB (Ethernet) | little-endian microsecond pcap, Ethernet, IPv4, TCP, UDP, ICMP |
| http-v4-nano.pcap | same traffic, recorded again with \`--time-stamp-precision=nano\` | 1 Ethernet | nanosecond pcap (magic a1b23c4d) |
| http-any-sll2.pcap | same traffic, \`tcpdump -i any -y LINUX_SLL2\` | 276 LINUX_SLL2 | Linux cooked v2 header (20 bytes) |
| http-any-sll.pcap | same traffic, \`tcpdump -i any -y LINUX_SLL\` | 113 LINUX_SLL | Linux cooked v1 header (16 bytes) |
| http-v6.pcap | the HTTP traffic over IPv6 to [::1]:8080, UDP to ::1, \`ping -6\` | 1 Ethernet | IPv6, ICMPv6 (echo, port unreachable) |
| two-interfaces.pcapng | \`dumpcap -i lo -i any\`, 1 connection with 2 x 1 KB, 1 UDP datagram, 1 ping | IDB 0: 1 Ethernet, IDB 1: 113 LINUX_SLL | pcapng with two interfaces of different link types; each packet appears once per interface; interface statistics blocks |
| snaplen96.pcap | the HTTP traffic, \`tcpdump -s 96\` | 1 Ethernet | records cut by the snapshot length (caplen 96 < original length) |
| ipv4-options.pcap | python3 client, \`setsockopt(IP_OPTIONS)\`: one connection with NOP,NOP,NOP,EOL, one with Record Route (2 slots); 2 requests of 1 KB each | 1 Ethernet | IPv4 header length 24 / 32 bytes on the client's packets (the server's replies carry no options) |
| ipv6-ext-headers.pcap | python3 client to [::1]:8080: one connection with a sticky Destination Options header (\`IPV6_DSTOPTS\`, one PadN option), one with a Hop-by-Hop Options header (\`IPV6_HOPOPTS\`, PadN); 2 requests of 1 KB each | 1 Ethernet | TCP behind IPv6 extension headers (only the client's packets carry them) |
| ipv4-fragments.pcap | curl downloading 1 KB and 60 KB on one connection from a python3 server on 127.0.0.2:8081 whose socket is in \`IP_PMTUDISC_PROBE\` mode, with lo at MTU 576 and routes at MTU 1500 (so MSS 1460) | 1 Ethernet | real IPv4 fragmentation of TCP segments: 1500-byte segments sent without DF, split by the kernel into 3 fragments (offsets 0, 552, 1104) |

Converted by \`samples/lab/convert.py\` (function in brackets) from the recordings above:

| file | made from | link type | exercises |
| --- | --- | --- | --- |
| vlan.pcap | http-v4.pcap (\`vlan --vlan 100\`): an 802.1Q tag (0x8100, VLAN 100) inserted after the MAC addresses | 1 Ethernet | 802.1Q |
| qinq.pcap | http-v4.pcap (\`qinq\`): outer 802.1ad tag (0x88a8, VLAN 200), inner 802.1Q tag (0x8100, VLAN 100) | 1 Ethernet | stacked VLAN tags |
| big-endian.pcap | http-v4.pcap (\`bigendian\`): file header and record headers written big-endian (magic bytes a1 b2 c3 d4) | 1 Ethernet | big-endian microsecond pcap |
| big-endian-nano.pcap | http-v4-nano.pcap (\`bigendian\`) | 1 Ethernet | big-endian nanosecond pcap (bytes a1 b2 3c 4d) |
| big-endian.pcapng | two-interfaces.pcapng (\`bigendian-pcapng\`): every block, field and option big-endian (byte-order magic 1a2b3c4d) | 1 and 113 | big-endian pcapng; tshark and capinfos read it identically to the source |
| null-le.pcap | http-v4.pcap (\`null --linktype 0 --family-order le\`): Ethernet header replaced by a 4-byte address family, little-endian (2 = IPv4) | 0 NULL | BSD loopback, host byte order written little-endian |
| null-be.pcap | http-v4.pcap (\`null --linktype 0 --family-order be\`) | 0 NULL | BSD loopback, family written big-endian |
| loop.pcap | http-v4.pcap (\`null --linktype 108 --family-order be\`) | 108 LOOP | OpenBSD loopback, family always big-endian |
| raw-101.pcap | http-v4.pcap (\`raw --linktype 101\`): Ethernet header removed | 101 RAW | raw IP |
| raw-228.pcap | http-v4.pcap (\`raw --linktype 228\`) | 228 IPV4 | raw IPv4 |
| raw-229.pcap | http-v6.pcap (\`raw --linktype 229\`) | 229 IPV6 | raw IPv6 |
| raw-12.pcap | http-v4.pcap (\`raw --linktype 12\`) | 12 (DLT_RAW on most BSDs) | raw IP under the old BSD number |
| raw-14.pcap | http-v4.pcap (\`raw --linktype 14\`) | 14 (DLT_RAW on OpenBSD) | raw IP under the OpenBSD number |
| http-v4.pcap.gz | http-v4.pcap (\`gzip-multi\`): the file's bytes cut in two halves, each gzipped, the two members concatenated | 1 Ethernet | gzip with two members (a reader must go on after the first member) |
| http-v4.pcap.zst | http-v4.pcap, \`zstd -19\` | 1 Ethernet | zstd-compressed pcap |
| compressed-capture.bin | a copy of http-v4.pcap.gz under a name without .gz | 1 Ethernet | format detection by magic bytes, not by file name |

## Notes

- Linux TCP keeps its segments within the route MTU (the MSS follows it), so the usual
  recipe (small locked route MTU, \`ip_no_pmtu_disc=1\`) gives small segments and no
  fragments. ipv4-fragments.pcap uses a socket in \`IP_PMTUDISC_PROBE\` mode instead: TCP
  sizes segments by the route MTU (1500) while IP fragments by the device MTU (576).
  tshark reassembles fragments by default: in \`expected-counts.tsv\` \`tcp_packets\` counts
  a fragmented segment once (in the frame of its last fragment), and
  \`ip_fragment_frames\` counts the frames that are fragments
  (\`ip.flags.mf == 1 || ip.frag_offset > 0\`, with reassembly off).
- On \`-i any\` libpcap sizes ring frames by the snapshot length, so an 8 MiB buffer holds
  only 32 frames and immediate mode dropped packets; the \`any\` recordings use 64 MiB.
- In \`expected-counts.tsv\`, \`tcp_packets\`/\`udp_packets\` count frames whose first transport
  header is TCP/UDP; ICMP errors that quote a UDP header count as \`icmp_packets\` only
  (\`tshark -Y udp\` would count them as UDP too). \`tcp_conversations\` is the number of rows
  of \`tshark -q -z conv,tcp\`. In two-interfaces.pcapng each packet appears twice (once
  per interface), but tshark still shows one TCP conversation for it.
- A BPF filter like \`port 8080\` does not match TCP behind IPv6 extension headers, so
  ipv6-ext-headers.pcap is recorded unfiltered.

## Software used for the recordings

- OS: $OS, kernel $KERNEL
- $TCPDUMP_V
- $NGINX_V
- $CURL_V
- $TSHARK_V
- $DUMPCAP_V
- $PY_V
- $PING_V
- $ZSTD_V
MD
echo "write-readme: wrote $OUT/README.md" >&2
