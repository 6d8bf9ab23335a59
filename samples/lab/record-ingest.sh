#!/usr/bin/env bash
# Records the real sample captures in samples/ingest/ and derives the converted ones.
#
#   bash samples/lab/install-deps.sh && bash samples/lab/record-ingest.sh
#
# All traffic is real (nginx, curl, python3 sockets, ping) and stays on loopback
# (127.0.0.0/8 and ::1) inside a private network namespace made with `unshare -n`,
# so nothing ever leaves the machine. Needs root (for unshare, tcpdump, ip, ethtool).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$ROOT/samples/ingest"

if [ "$(id -u)" -ne 0 ]; then
    echo "record-ingest: re-running as root via sudo" >&2
    exec sudo -E bash "$0" "$@"
fi

# Re-exec inside a fresh network namespace: only its own loopback device exists.
if [ "${RSTSCOPE_LAB_NETNS:-}" != "1" ]; then
    exec env RSTSCOPE_LAB_NETNS=1 unshare -n bash "$0" "$@"
fi

log() { echo "record-ingest: $*" >&2; }
die() { echo "record-ingest: ERROR: $*" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/rstscope-lab.XXXXXX)
PIDS_TO_STOP=()
cleanup() {
    local p
    for p in "${PIDS_TO_STOP[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- network setup
ip link set lo up mtu 1500
# Make loopback behave like a real NIC: no TSO/GSO/GRO super-packets.
if ! ethtool -K lo tso off gso off gro off; then
    log "warning: ethtool could not turn off every offload flag (see above), continuing"
fi
ethtool -k lo | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' >&2 || true
# Note: lo keeps tx-checksum-ip-generic on (it is [fixed]-like on lo), so outgoing
# TCP/UDP checksums in these captures are partial ("incorrect" in tshark), as on a
# real NIC with checksum offload.

# ------------------------------------------------------------------ web content
WWW="$WORK/www"
mkdir -p "$WWW" "$WORK/logs" "$WORK/tmp"
python3 - "$WWW" <<'PY'
import sys, os
www = sys.argv[1]
def make(name, size):
    out, i = [], 0
    while sum(map(len, out)) < size:
        out.append("rstscope sample %s line %05d: the quick brown fox jumps over the lazy dog\n" % (name, i))
        i += 1
    data = "".join(out)[:size]
    with open(os.path.join(www, name), "w") as f:
        f.write(data)
make("1k.txt", 1024)
make("60k.txt", 60 * 1024)
PY

cat > "$WORK/nginx.conf" <<EOC
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/logs/error.log;
pid $WORK/nginx.pid;
events { worker_connections 64; }
http {
    access_log $WORK/logs/access.log;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    keepalive_timeout 30s;
    default_type text/plain;
    server {
        listen 127.0.0.1:8080;
        listen [::1]:8080;
        root $WWW;
    }
}
EOC
nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS_TO_STOP+=("$NGINX_PID")
for i in $(seq 1 50); do
    curl -s -o /dev/null --max-time 2 http://127.0.0.1:8080/1k.txt && break
    [ "$i" -lt 50 ] || die "nginx did not come up"
    sleep 0.1
done
log "nginx running as pid $NGINX_PID"

# ------------------------------------------------------------------- capturing
CAP_PID=""
CAP_ERR=""
CAP_KIND=""
# cap_start KIND OUTFILE ARGS... ; KIND is tcpdump or dumpcap.
# Kernel buffer: 8 MiB on lo. On the "any" device libpcap cannot size ring frames
# by an MTU and uses snaplen-sized (256 KiB) frames, so an 8 MiB ring has only 32
# frames and immediate mode drops packets in a 60 KB burst: use 64 MiB there.
cap_start() {
    CAP_KIND=$1; local out=$2; shift 2
    CAP_ERR="$WORK/$(basename "$out").stderr"
    local bufsize=8192
    case " $* " in *" any "*) bufsize=65536;; esac
    rm -f "$out"
    if [ "$CAP_KIND" = tcpdump ]; then
        tcpdump --immediate-mode -B "$bufsize" -w "$out" "$@" 2>"$CAP_ERR" &
    else
        dumpcap -q -B $((bufsize / 1024)) -w "$out" "$@" 2>"$CAP_ERR" &
    fi
    CAP_PID=$!
    PIDS_TO_STOP+=("$CAP_PID")
    sleep 1
    kill -0 "$CAP_PID" 2>/dev/null || { cat "$CAP_ERR" >&2; die "$CAP_KIND did not start"; }
    log "capturing to $(basename "$out") with $CAP_KIND -B $bufsize $* (pid $CAP_PID)"
}
# cap_stop: stops the capture; returns 1 if the capture tool reported drops.
cap_stop() {
    sleep 1
    kill -INT "$CAP_PID"
    wait "$CAP_PID" || true
    CAP_PID=""
    cat "$CAP_ERR" >&2
    if [ "$CAP_KIND" = tcpdump ]; then
        grep -q '^0 packets dropped by kernel$' "$CAP_ERR" && return 0
        log "WARNING: tcpdump reported dropped packets (see above)"
        return 1
    fi
    # dumpcap: "Packets received/dropped on interface 'lo': 30/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0) (100.0%)"
    local n_if n_ok
    n_if=$(grep -c "received/dropped on interface" "$CAP_ERR" || true)
    n_ok=$(grep -Ec "received/dropped on interface '[^']*': [0-9]+/0 \(pcap:0/dumpcap:0/flushed:0" "$CAP_ERR" || true)
    [ "$n_if" -gt 0 ] && [ "$n_if" = "$n_ok" ] && return 0
    log "WARNING: dumpcap reported dropped packets (see above)"
    return 1
}
# record OUTFILE KIND "TRAFFIC COMMAND" CAPTURE-ARGS...: capture while the traffic
# command runs; a recording with drops is thrown away and redone (3 tries at most).
record() {
    local out=$1 kind=$2 traffic=$3; shift 3
    local try
    for try in 1 2 3; do
        cap_start "$kind" "$OUT/$out" "$@"
        eval "$traffic"
        cap_stop && return 0
        log "recording $out again (try $((try + 1)) of 3)"
    done
    die "$out: the capture tool kept dropping packets"
}

# --------------------------------------------------------------------- traffic
# http_traffic HOST [small]: 3 curl invocations = 3 keep-alive connections with 2
# requests each (one of them for the 60 KB file); "small" = one connection, 2 x 1 KB.
http_traffic() {
    local h=$1 size=${2:-full}
    local u="http://$h:8080"
    if [ "$size" = small ]; then
        curl -sS --max-time 10 -o /dev/null -o /dev/null "$u/1k.txt" "$u/1k.txt"
        return
    fi
    curl -sS --max-time 10 -o /dev/null -o /dev/null "$u/1k.txt" "$u/1k.txt"
    sleep 0.1
    curl -sS --max-time 10 -o /dev/null -o /dev/null "$u/1k.txt" "$u/60k.txt"
    sleep 0.1
    curl -sS --max-time 10 -o /dev/null -o /dev/null "$u/1k.txt" "$u/1k.txt"
}
# udp_traffic ADDR COUNT: datagrams to the discard port where nobody listens ->
# the kernel answers each with an ICMP port unreachable (quoting IP+UDP headers).
udp_traffic() {
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
addr, count = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
for i in range(count):
    s.sendto(b"rstscope udp datagram %d" % i, (addr, 9))
    time.sleep(0.05)
s.close()
PY
}
v4_traffic() {   # $1 = full|small
    http_traffic 127.0.0.1 "${1:-full}"
    if [ "${1:-full}" = small ]; then
        udp_traffic 127.0.0.1 1
        ping -q -c 1 -W 1 127.0.0.1 >/dev/null
    else
        udp_traffic 127.0.0.1 2
        ping -q -c 2 -i 0.2 -W 1 127.0.0.1 >/dev/null
    fi
}
v6_traffic() {
    http_traffic '[::1]'
    udp_traffic ::1 2
    ping -6 -q -c 2 -i 0.2 -W 1 ::1 >/dev/null
}

# python3 TCP client doing 2 requests on one connection, with socket options set
# before connect. $1 = v4|v6, $2 = option kind, $3 $4 = paths.
py_client() {
    python3 - "$@" <<'PY'
import socket, sys
fam, kind, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
if fam == "v4":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    addr = ("127.0.0.1", 8080)
    if kind == "nop":
        opt = bytes([1, 1, 1, 0])                      # NOP NOP NOP EOL
    elif kind == "rr":
        opt = bytes([7, 11, 4]) + bytes(8) + bytes([0])  # Record Route, 2 slots, EOL
    else:
        raise SystemExit("unknown option kind " + kind)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, opt)
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    addr = ("::1", 8080)
    # 8-byte options header: next header (filled by kernel), hdr ext len 0,
    # then one PadN option carrying 4 zero bytes (type 1, length 4).
    opt = bytes([0, 0, 1, 4, 0, 0, 0, 0])
    name = {"dstopts": socket.IPV6_DSTOPTS, "hopopts": socket.IPV6_HOPOPTS}[kind]
    s.setsockopt(socket.IPPROTO_IPV6, name, opt)
s.settimeout(10)
s.connect(addr)
for i, p in enumerate(paths):
    last = i == len(paths) - 1
    req = "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: rstscope-lab\r\n%s\r\n" % (
        p, "Connection: close\r\n" if last else "")
    s.sendall(req.encode())
    # read headers, then exactly Content-Length bytes
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c: raise SystemExit("connection closed early")
        buf += c
    head, body = buf.split(b"\r\n\r\n", 1)
    clen = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < clen:
        c = s.recv(65536)
        if not c: raise SystemExit("connection closed early")
        body += c
    print("py_client %s %s %s: %s, %d body bytes" % (fam, kind, p, head.split(b"\r\n")[0].decode(), len(body)), file=sys.stderr)
while s.recv(65536):
    pass
s.close()
PY
}

# ------------------------------------------------------------------ recordings
record http-v4.pcap tcpdump "v4_traffic full" -i lo
record http-v4-nano.pcap tcpdump "v4_traffic full" -i lo --time-stamp-precision=nano
record http-any-sll2.pcap tcpdump "v4_traffic full" -i any -y LINUX_SLL2
record http-any-sll.pcap tcpdump "v4_traffic full" -i any -y LINUX_SLL
record http-v6.pcap tcpdump "v6_traffic" -i lo
# Two interfaces in one pcapng: lo (Ethernet) and any (Linux cooked v1). Every
# packet appears once per interface. Smaller traffic to keep the file small.
record two-interfaces.pcapng dumpcap "v4_traffic small" -i lo -i any
record snaplen96.pcap tcpdump "v4_traffic full" -i lo -s 96
record ipv4-options.pcap tcpdump "py_client v4 nop /1k.txt /1k.txt; py_client v4 rr /1k.txt /1k.txt" -i lo
# No BPF filter here: a filter like "port 8080" would not see TCP behind IPv6
# extension headers.
record ipv6-ext-headers.pcap tcpdump "py_client v6 dstopts /1k.txt /1k.txt; py_client v6 hopopts /1k.txt /1k.txt" -i lo

# ---------------------------------------------------------- real IPv4 fragments
# Linux TCP never sends segments larger than its route MTU allows (the MSS
# follows the route MTU, even with ip_no_pmtu_disc=1 and "mtu lock"), so a small
# route MTU gives small segments, not fragments. What does fragment for real:
# a route MTU of 1500 (MSS 1460) over a device MTU of 576, with a sending socket
# in IP_PMTUDISC_PROBE mode: it sends without DF and ip_finish_output fragments
# by the device MTU. nginx cannot set that socket option, so the server here is a
# small python3 HTTP server; the client is curl. This changes lo's MTU, so it runs last.
sysctl -w net.ipv4.ip_no_pmtu_disc=1 >/dev/null
ip link set lo mtu 576
ip route replace local 127.0.0.1 dev lo table local src 127.0.0.1 mtu lock 1500
ip route add local 127.0.0.2/32 dev lo table local src 127.0.0.1 mtu lock 1500
ip route show table local >&2
frag_traffic() {
python3 - "$WWW" <<'PY' &
import socket, sys, os
www = sys.argv[1]
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_PROBE = 3
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
l.bind(("127.0.0.2", 8081))
l.listen(1)
l.settimeout(20)
c, _ = l.accept()           # exactly one connection, then exit
c.settimeout(10)
c.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
buf = b""
for _ in range(10):         # bounded number of requests
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            break
        buf += d
    if b"\r\n\r\n" not in buf:
        break
    req, buf = buf.split(b"\r\n\r\n", 1)
    path = req.split(b" ")[1].decode().lstrip("/")
    body = open(os.path.join(www, os.path.basename(path)), "rb").read()
    c.sendall(b"HTTP/1.1 200 OK\r\nServer: rstscope-lab-python\r\nContent-Type: text/plain\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
c.close()
l.close()
PY
PYSRV_PID=$!
PIDS_TO_STOP+=("$PYSRV_PID")
sleep 0.5
curl -sS --max-time 10 -o /dev/null -o /dev/null http://127.0.0.2:8081/1k.txt http://127.0.0.2:8081/60k.txt
wait "$PYSRV_PID" || die "python fragment server failed"
}
record ipv4-fragments.pcap tcpdump frag_traffic -i lo
ip link set lo mtu 1500

kill "$NGINX_PID"
wait "$NGINX_PID" || true

# ------------------------------------------------------------------ conversions
CONV="python3 $HERE/convert.py"
cd "$OUT"
$CONV vlan      http-v4.pcap vlan.pcap --vlan 100
$CONV qinq      http-v4.pcap qinq.pcap --outer-vlan 200 --inner-vlan 100
$CONV bigendian http-v4.pcap big-endian.pcap
$CONV bigendian http-v4-nano.pcap big-endian-nano.pcap
$CONV bigendian-pcapng two-interfaces.pcapng big-endian.pcapng
$CONV null      http-v4.pcap null-le.pcap --linktype 0 --family-order le
$CONV null      http-v4.pcap null-be.pcap --linktype 0 --family-order be
$CONV null      http-v4.pcap loop.pcap --linktype 108 --family-order be
$CONV raw       http-v4.pcap raw-101.pcap --linktype 101
$CONV raw       http-v4.pcap raw-228.pcap --linktype 228
$CONV raw       http-v6.pcap raw-229.pcap --linktype 229
$CONV raw       http-v4.pcap raw-12.pcap --linktype 12
$CONV raw       http-v4.pcap raw-14.pcap --linktype 14
$CONV gzip-multi http-v4.pcap http-v4.pcap.gz
rm -f http-v4.pcap.zst
zstd -q -19 http-v4.pcap -o http-v4.pcap.zst
cp http-v4.pcap.gz compressed-capture.bin
# tcpdump writes its files as user tcpdump and dumpcap with mode 600: hand them
# to the owner of the work tree, readable by all.
chown --reference="$ROOT" -- *
chmod 644 -- *

# --------------------------------------------------------------------- checks
for f in *.pcap *.pcapng *.gz *.zst *.bin; do
    capinfos "$f" >/dev/null 2>"$WORK/capinfos.err" || { cat "$WORK/capinfos.err" >&2; die "capinfos cannot read $f"; }
    tshark -r "$f" -q -z conv,tcp >/dev/null 2>"$WORK/tshark.err" || { cat "$WORK/tshark.err" >&2; die "tshark cannot read $f"; }
done
bash "$HERE/check-ingest.sh"
bash "$HERE/expected-counts.sh"
bash "$HERE/write-readme.sh"
log "done"
ls -l "$OUT" >&2
