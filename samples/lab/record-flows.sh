#!/usr/bin/env bash
# Records the TCP connection-tracking samples in samples/flows/.
#
#   bash samples/lab/install-deps.sh && bash samples/lab/record-flows.sh
#
# All traffic is real (nginx, curl, python3 sockets, the kernel's own TCP) and stays
# on loopback (127.0.0.1) inside a private network namespace made with `unshare -n`.
# Needs root (unshare, tcpdump, ip, ethtool, iptables).
#
# Shaping: this machine's kernel has no sch_netem (CONFIG_NET_SCH_NETEM is not set
# and it cannot load modules), so delay and reordering come from
# samples/lab/flows_nfqueue.py, which takes chosen packets from an iptables NFQUEUE
# rule in the OUTPUT chain (before lo, so before the capture) and accepts them after
# a delay; dropped SYNs and "network" losses are iptables DROP rules in the raw
# PREROUTING chain, which runs after lo has handed the packet to the capture, so
# the capture holds the packet that the receiver never got.
#
# Every check of what a recording must show is in samples/lab/flows_facts.py; a
# recording that does not show it (or where tcpdump dropped packets) is redone,
# a bounded number of times.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$ROOT/samples/flows"

if [ "$(id -u)" -ne 0 ]; then
    echo "record-flows: re-running as root via sudo" >&2
    exec sudo -E bash "$0" "$@"
fi

# Re-exec inside a fresh network namespace: only its own loopback device exists.
if [ "${RSTSCOPE_LAB_NETNS:-}" != "1" ]; then
    exec env RSTSCOPE_LAB_NETNS=1 unshare -n bash "$0" "$@"
fi

log() { echo "record-flows: $*" >&2; }
die() { echo "record-flows: ERROR: $*" >&2; exit 1; }

for t in tcpdump tshark editcap capinfos nginx curl python3 ip ethtool iptables; do
    command -v "$t" >/dev/null || die "$t not found: run samples/lab/install-deps.sh"
done

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/rstscope-flows.XXXXXX)
PIDS_TO_STOP=()
cleanup() {
    local p
    for p in "${PIDS_TO_STOP[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
PEERS="python3 $HERE/flows_peers.py"
FACTS="python3 $HERE/flows_facts.py"

# ---------------------------------------------------------------- network setup
ip link set lo up mtu 1500
if ! ethtool -K lo tso off gso off gro off; then
    log "warning: ethtool could not turn off every offload flag (see above), continuing"
fi
ethtool -k lo | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' >&2 || true
log "tcp_syn_retries=$(sysctl -n net.ipv4.tcp_syn_retries)" \
    "tcp_syn_linear_timeouts=$(sysctl -n net.ipv4.tcp_syn_linear_timeouts 2>/dev/null || echo n/a)" \
    "ip_local_port_range=$(sysctl -n net.ipv4.ip_local_port_range | tr '\t' ' ')"

fw_reset() {
    iptables -t raw -F
    iptables -t filter -F
}

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
    with open(os.path.join(www, name), "w") as f:
        f.write("".join(out)[:size])
make("small.txt", 256)
make("1k.txt", 1024)
make("40k.txt", 40 * 1024)
make("48k.txt", 48 * 1024)
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
sleep 0.5

# ------------------------------------------------------------------- capturing
CAP_PID=""
CAP_ERR=""
cap_start() {
    local out=$1; shift
    CAP_ERR="$WORK/$(basename "$out").stderr"
    rm -f "$out"
    tcpdump --immediate-mode -B 8192 -i lo -w "$out" "$@" 2>"$CAP_ERR" &
    CAP_PID=$!
    PIDS_TO_STOP+=("$CAP_PID")
    for i in $(seq 1 50); do
        grep -q "listening on" "$CAP_ERR" 2>/dev/null && break
        kill -0 "$CAP_PID" 2>/dev/null || { cat "$CAP_ERR" >&2; die "tcpdump did not start"; }
        sleep 0.05
    done
    grep -q "listening on" "$CAP_ERR" || { cat "$CAP_ERR" >&2; die "tcpdump did not say it is listening"; }
    log "capturing to $(basename "$out") (tcpdump pid $CAP_PID)"
}
# cap_stop: stops the capture; returns 1 if tcpdump reported drops.
cap_stop() {
    sleep 1
    kill -INT "$CAP_PID"
    wait "$CAP_PID" || true
    CAP_PID=""
    cat "$CAP_ERR" >&2
    grep -q '^0 packets dropped by kernel$' "$CAP_ERR" && return 0
    log "WARNING: tcpdump reported dropped packets (see above)"
    return 1
}
# record OUTFILE TRIES PRE TRAFFIC CHECK: runs PRE (may start things in the
# background), starts the capture, runs TRAFFIC, stops the capture, then CHECK
# OUTFILE must succeed. A try with dropped packets or a failed check is redone,
# TRIES times at most.
record() {
    local out=$1 tries=$2 pre=$3 traffic=$4 check=$5
    local try
    for try in $(seq 1 "$tries"); do
        fw_reset
        eval "$pre"
        cap_start "$WORK/$out"
        eval "$traffic"
        if cap_stop; then
            local size
            size=$(stat -c %s "$WORK/$out")
            if [ "$size" -ge 100000 ]; then
                log "$out: $size bytes, over the 100 KB limit"
            elif $check "$WORK/$out"; then
                cp "$WORK/$out" "$OUT/$out"
                log "$out: kept try $try"
                fw_reset
                return 0
            fi
            log "$out: try $try does not show what it should"
        fi
        [ "$try" -lt "$tries" ] && log "recording $out again (try $((try + 1)) of $tries)"
        sleep 1
    done
    die "$out: no good recording in $tries tries"
}
check() { $FACTS check "$(basename "$1")" "$1"; }

# nfq_start QUEUE ARGS...: starts flows_nfqueue.py on QUEUE and waits until bound.
NFQ_PID=""
nfq_start() {
    local q=$1; shift
    rm -f "$WORK/nfq.ready"
    python3 "$HERE/flows_nfqueue.py" --queue "$q" --max-seconds 60 --ready-file "$WORK/nfq.ready" "$@" &
    NFQ_PID=$!
    PIDS_TO_STOP+=("$NFQ_PID")
    for i in $(seq 1 50); do
        [ -e "$WORK/nfq.ready" ] && return 0
        kill -0 "$NFQ_PID" 2>/dev/null || die "flows_nfqueue.py did not start"
        sleep 0.1
    done
    die "flows_nfqueue.py did not bind queue $q"
}
nfq_stop() {
    kill "$NFQ_PID"
    wait "$NFQ_PID" || true
    NFQ_PID=""
}

# ------------------------------------------------------------------ 1 port reuse
# Five connections from 127.0.0.1:41000 to nginx; HTTP/1.0 without keep-alive, so
# nginx closes first and its side (not the client's) goes to TIME_WAIT; the
# client's port is free at once, and nginx's kernel accepts a new SYN on a
# TIME_WAIT 5-tuple.
reuse_traffic() { $PEERS reuse-client 127.0.0.1 8080 41000 5; }
record port-reuse.pcap 3 : reuse_traffic check

# ---------------------------------------------------------- 2 mid-connection start
# The keep-alive connection is opened about 1 s before tcpdump starts.
mid_pre() {
    rm -f "$WORK/mid.ready"
    $PEERS mid-client 127.0.0.1 8080 "$WORK/mid.ready" &
    MID_PID=$!
    PIDS_TO_STOP+=("$MID_PID")
    for i in $(seq 1 50); do
        [ -e "$WORK/mid.ready" ] && break
        [ "$i" -lt 50 ] || die "mid-client did not connect"
        sleep 0.05
    done
    sleep 0.95
}
mid_traffic() {
    wait "$MID_PID" || die "mid-client failed"
    sleep 0.3
    curl -sS --max-time 10 -o /dev/null http://127.0.0.1:8080/1k.txt
}
record mid-connection.pcap 3 mid_pre mid_traffic check

# ------------------------------------------------------------ 3 SYN retransmission
# The SYNs are dropped after the capture has seen them (raw PREROUTING), for the
# first 2.5 s; the kernel retransmits the SYN until one gets through.
syn_drop_on() { iptables -t raw -A PREROUTING -i lo -p tcp --dport 8080 --syn -j DROP; }
synretx_traffic() {
    syn_drop_on
    curl -sS --connect-timeout 10 --max-time 20 -o /dev/null http://127.0.0.1:8080/1k.txt &
    local cpid=$!
    PIDS_TO_STOP+=("$cpid")
    sleep 2.5
    iptables -t raw -D PREROUTING -i lo -p tcp --dport 8080 --syn -j DROP
    log "SYN drop rule deleted at $(date +%s.%N)"
    wait "$cpid" || die "curl failed in syn-retransmit"
}
record syn-retransmit.pcap 3 : synretx_traffic check

# The SYN is never answered; curl gives up after 4 s.
syntimeout_traffic() {
    syn_drop_on
    local rc=0
    curl -sS --connect-timeout 4 --max-time 20 -o /dev/null http://127.0.0.1:8080/1k.txt || rc=$?
    log "curl --connect-timeout 4 exited with $rc (28 = timeout expected)"
    [ "$rc" -eq 28 ] || die "curl in syn-timeout did not time out (exit $rc)"
    iptables -t raw -F
}
record syn-timeout.pcap 3 : syntimeout_traffic check

# ---------------------------------------------------------- 4 simultaneous close
# Every packet to or from port 8081 is held 20 ms by flows_nfqueue.py, so the two
# FINs, sent at the same instant, cross.
simclose_traffic() {
    iptables -A OUTPUT -o lo -p tcp --sport 8081 -j NFQUEUE --queue-num 1 --queue-bypass
    iptables -A OUTPUT -o lo -p tcp --dport 8081 -j NFQUEUE --queue-num 1 --queue-bypass
    nfq_start 1 --delay-ms 20
    $PEERS simclose-server 8081 &
    local spid=$!
    PIDS_TO_STOP+=("$spid")
    sleep 0.3
    $PEERS simclose-client 127.0.0.1 8081 || die "simclose-client failed"
    wait "$spid" || die "simclose-server failed"
    sleep 0.3
    nfq_stop
    iptables -F OUTPUT
}
record simultaneous-close.pcap 3 : simclose_traffic check

# ------------------------------------------------------------------ 5 RST
rst_traffic() {
    $PEERS rst-server 8082 &
    local spid=$!
    PIDS_TO_STOP+=("$spid")
    sleep 0.3
    $PEERS rst-client 127.0.0.1 8082 || die "rst-client failed"
    wait "$spid" || die "rst-server failed"
}
record rst-after-fin.pcap 3 : rst_traffic check

# ------------------------------------------------------- 6 reordering and loss
# nginx's packets (sport 8080) are held 5 ms, but 25 % of them are sent at once
# (overtaking the held ones), like netem's "delay 5ms reorder 25%", and 3 % of
# nginx's data segments are dropped after the capture saw them, so the kernel must
# retransmit them. The file is 48 KB rather than 60 KB: the many retransmissions
# would take a 60 KB download over the 100 KB limit for one capture.
reorder_traffic() {
    iptables -A OUTPUT -o lo -p tcp --sport 8080 -j NFQUEUE --queue-num 2 --queue-bypass
    iptables -t raw -A PREROUTING -i lo -p tcp --sport 8080 -m length --length 200:65535 \
        -m statistic --mode random --probability 0.03 -j DROP
    nfq_start 2 --delay-ms 5 --reorder-pct 25
    curl -sS --max-time 20 -o /dev/null http://127.0.0.1:8080/48k.txt || die "curl failed in reorder-loss"
    sleep 0.3
    nfq_stop
    iptables -t raw -L PREROUTING -v -n -x | awk '$3 == "DROP" {print $1}' >"$WORK/reorder.drops"
    log "reorder-loss: $(cat "$WORK/reorder.drops") data segment(s) dropped after the capture"
    fw_reset
}
reorder_check() {
    [ "$(cat "$WORK/reorder.drops")" -ge 1 ] || { log "reorder-loss: the loss rule dropped nothing"; return 1; }
    check "$1"
}
record reorder-loss.pcap 5 : reorder_traffic reorder_check
REORDER_DROPS=$(cat "$WORK/reorder.drops")

# ---------------------------------------------------------- 7 capture loss
# A plain download, then two of nginx's data segments are cut out of the file
# (editcap): the bytes were delivered (the client ACKs them) but the capture lacks them.
caploss_traffic() { curl -sS --max-time 20 -o /dev/null http://127.0.0.1:8080/60k.txt; }
caploss_check() {
    local full=$1 cut
    cut=$($FACTS pick-capture-loss "$full") || return 1
    log "capture-loss: removing frames $cut of $(capinfos -c -M "$full" | awk '/Number of packets/ {print $NF}')"
    echo "$cut" >"$WORK/capture-loss.removed"
    # shellcheck disable=SC2086
    editcap "$full" "$WORK/capture-loss.cut" $cut
    cp "$WORK/capture-loss.cut" "$full"
    $FACTS check capture-loss.pcap "$full"
}
record capture-loss.pcap 3 : caploss_traffic caploss_check
REMOVED=$(cat "$WORK/capture-loss.removed")

# -------------------------------------------------------- 8 keep-alive probes
keepalive_traffic() { $PEERS keepalive-client 127.0.0.1 8080 3.5; }
record keepalive-probes.pcap 3 : keepalive_traffic check

kill "$NGINX_PID"
wait "$NGINX_PID" || true

# ---------------------------------------------------------------- finishing
chown --reference="$ROOT" -- "$OUT"/*.pcap
chmod 644 -- "$OUT"/*.pcap
for f in "$OUT"/*.pcap; do
    capinfos "$f" >/dev/null 2>"$WORK/capinfos.err" || { cat "$WORK/capinfos.err" >&2; die "capinfos cannot read $f"; }
done
bash "$HERE/flows-expected.sh"
$FACTS readme "$OUT" "removed=$REMOVED" "reorder_drops=$REORDER_DROPS"
chown --reference="$ROOT" -- "$OUT"/*
chmod 644 -- "$OUT"/*
log "done"
ls -l "$OUT" >&2
