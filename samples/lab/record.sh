#!/usr/bin/env bash
# Records the failure-scenario captures in samples/scenarios/.
#
#   bash samples/lab/install-deps.sh && bash samples/lab/record.sh [SCENARIO...]
#
# No argument records every scenario; named scenarios are recorded again and the
# others are left as they are. `bash samples/lab/record.sh --list` lists the names.
#
# All traffic is real (nginx, Node.js, curl, nghttp, openssl s_client, the kernel's
# own TCP) and stays on loopback (127.0.0.1, ::1) inside a private network namespace
# made with `unshare -n` (lo at mtu 1500 with offloads off, like a real NIC).
# Needs root (unshare, tcpdump, ip, ethtool, iptables).
#
# For each scenario: samples/scenarios/<scenario>.pcap, <scenario>.expected.tsv
# (written by samples/lab/scenarios_facts.py from what tshark sees, with the class
# given per server port below; a recording whose first close is not from the side and
# of the kind stated is recorded again, a bounded number of times) and, when nginx
# is a proxy in the path, <scenario>.error.log (nginx's error log of that recording).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$ROOT/samples/scenarios"

ALL_SCENARIOS=(
    connect-refused h2c-to-tls-node http1-to-tls-nginx http1-to-tls-node tls-to-h2c tls-to-http
    upstream-fin-after-request upstream-rst-after-request partial-response-header
    truncated-chunked-body short-content-length keepalive-race idle-close
    h2-goaway-graceful h2-goaway-error h2-rst-stream
    healthy-h1-keepalive healthy-h2c healthy-tls-h2 healthy-tls-h1 healthy-large-download
    syn-blackhole h2-preface-to-http1 http1-to-h2-only alpn-mismatch
    cert-rejected-tls12 cert-rejected-tls13 response-timeout variants
    healthy-h2c-upgrade healthy-h1-chunked
)
if [ "${1:-}" = "--list" ]; then printf '%s\n' "${ALL_SCENARIOS[@]}"; exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
    echo "record: re-running as root via sudo" >&2
    exec sudo -E bash "$0" "$@"
fi
# Re-exec inside a fresh network namespace: only its own loopback device exists.
if [ "${RSTSCOPE_LAB_NETNS:-}" != "1" ]; then
    exec env RSTSCOPE_LAB_NETNS=1 unshare -n bash "$0" "$@"
fi

log() { echo "record: $*" >&2; }
die() { echo "record: ERROR: $*" >&2; exit 1; }

for t in tcpdump dumpcap tshark capinfos nginx curl node nghttp h2o openssl python3 ip ethtool iptables gzip; do
    command -v "$t" >/dev/null || die "$t not found: run samples/lab/install-deps.sh"
done

SCENARIOS=("$@")
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SCENARIOS[@]}"; do
    printf '%s\n' "${ALL_SCENARIOS[@]}" | grep -qx -- "$s" || die "unknown scenario $s (see --list)"
done

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/rstscope-scenarios.XXXXXX)
# Facts (tshark's view of each kept recording) and client/server logs are kept here
# for writing the README; set LAB_NOTES to keep them after the run.
NOTES=${LAB_NOTES:-$WORK/notes}
mkdir -p "$NOTES"
PIDS_TO_STOP=()
cleanup() {
    local p
    for p in "${PIDS_TO_STOP[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    iptables -t raw -F 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PEERS="node $HERE/scenarios_peers.js"
FACTS="python3 $HERE/scenarios_facts.py"

# ---------------------------------------------------------------- network setup
ip link set lo up mtu 1500
if ! ethtool -K lo tso off gso off gro off; then
    log "warning: ethtool could not turn off every offload flag (see above), continuing"
fi
ip addr show lo | grep -q 'inet6 ::1' || log "warning: no ::1 on lo, the IPv6 variant will fail"

# ---------------------------------------------------------------- certificates
# CA (trusted by the clients) -> server cert for 127.0.0.1/localhost/::1;
# OTHER CA (trusted by nobody) -> server cert for the cert-rejected scenarios.
PKI="$WORK/pki"
mkdir -p "$PKI"
mkcert() { # NAME CA_NAME
    local n=$1 ca=$2
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=rstscope lab $ca" \
        -keyout "$PKI/$ca.key" -out "$PKI/$ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$PKI/$n.key" -out "$PKI/$n.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$PKI/$n.ext"
    openssl x509 -req -in "$PKI/$n.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
        -days 30 -extfile "$PKI/$n.ext" -out "$PKI/$n.crt" 2>/dev/null
}
mkcert server ca
mkcert untrusted otherca
CA="$PKI/ca.crt"

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
make("400k.txt", 400 * 1024)
PY

# ------------------------------------------------------------------------ nginx
# 8080 plain HTTP/1.1, 8443 TLS (h2 + http/1.1, trusted cert), 8444 TLS (untrusted
# cert), 8081 (and [::1]:8081) reverse proxy to the Node upstreams on 91xx.
cat >"$WORK/nginx.conf" <<EOC
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
    server {
        listen 127.0.0.1:8443 ssl http2;
        ssl_protocols TLSv1.2 TLSv1.3; # nginx 1.22's default has no TLSv1.3
        ssl_certificate $PKI/server.crt;
        ssl_certificate_key $PKI/server.key;
        root $WWW;
    }
    server {
        listen 127.0.0.1:8444 ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $PKI/untrusted.crt;
        ssl_certificate_key $PKI/untrusted.key;
        root $WWW;
    }
    upstream ka_upstream {
        server 127.0.0.1:9110;
        keepalive 4;
    }
    server {
        listen 127.0.0.1:8081;
        listen [::1]:8081;
        location /fin6 { proxy_pass http://[::1]:9101; }
        location /fin { proxy_pass http://127.0.0.1:9101; }
        location /rst { proxy_pass http://127.0.0.1:9102; }
        location /partial { proxy_pass http://127.0.0.1:9103; }
        location /chunked { proxy_pass http://127.0.0.1:9104; }
        location /shortcl { proxy_pass http://127.0.0.1:9105; }
        location /slow {
            proxy_pass http://127.0.0.1:9106;
            proxy_read_timeout 2s;
        }
        location /ka {
            proxy_pass http://ka_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOC
nginx -p "$WORK" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS_TO_STOP+=("$NGINX_PID")
for i in $(seq 1 50); do
    curl -s -o /dev/null --max-time 2 http://127.0.0.1:8080/small.txt && break
    [ "$i" -lt 50 ] || die "nginx did not come up"
    sleep 0.1
done
log "nginx running as pid $NGINX_PID"

# ------------------------------------------------------------------- peers
# peer_start NAME MODE ARGS...: starts a Node server, waits until it listens;
# its pid is in PEER_PID. LAB_HOST (env) chooses the address (default 127.0.0.1).
PEER_PID=""
peer_start() {
    local name=$1; shift
    local out="$WORK/$name.out"
    rm -f "$out"
    $PEERS "$@" >"$out" 2>>"$WORK/peers.log" &
    PEER_PID=$!
    PIDS_TO_STOP+=("$PEER_PID")
    for i in $(seq 1 100); do
        grep -q listening "$out" 2>/dev/null && return 0
        kill -0 "$PEER_PID" 2>/dev/null || die "peer $name ($*) did not start: $(tail -5 "$WORK/peers.log")"
        sleep 0.05
    done
    die "peer $name did not listen"
}
peer_stop() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ------------------------------------------------------------------- capturing
# cap_start FILE [TCPDUMP ARGS...]: one more tcpdump (default -i lo) writing FILE.
# cap_start FILE --dumpcap: dumpcap (pcapng) on lo instead.
CAP_PIDS=()
CAP_ERRS=()
cap_start() {
    local out=$1; shift
    local err="$WORK/$(basename "$out").stderr"
    rm -f "$out"
    if [ "${1:-}" = "--dumpcap" ]; then
        dumpcap -i lo -B 8 -w "$out" 2>"$err" &
    else
        local iface=(-i lo)
        if [ "${1:-}" = "-i" ]; then iface=(-i "$2"); shift 2; fi
        tcpdump "${iface[@]}" --immediate-mode -B 8192 -w "$out" "$@" 2>"$err" &
    fi
    local pid=$!
    PIDS_TO_STOP+=("$pid")
    CAP_PIDS+=("$pid")
    CAP_ERRS+=("$err")
    for i in $(seq 1 50); do
        grep -qE "listening on|Capturing on" "$err" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$err" >&2; die "capture did not start"; }
        sleep 0.05
    done
    cat "$err" >&2
    die "capture did not say it is listening"
}
# cap_stop: stops every running capture; returns 1 if any reported dropped packets.
cap_stop() {
    local i rc=0
    sleep 1
    for i in "${!CAP_PIDS[@]}"; do kill -INT "${CAP_PIDS[$i]}" 2>/dev/null || true; done
    for i in "${!CAP_PIDS[@]}"; do
        wait "${CAP_PIDS[$i]}" || true
        grep -E 'packets (captured|dropped)|dropped on interface' "${CAP_ERRS[$i]}" | tr '\n' ' ' >&2; echo >&2
        if grep -q '^0 packets dropped by kernel$' "${CAP_ERRS[$i]}" \
            || grep -qE "dropped on interface .*: [0-9]+/0 \(pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0\)" "${CAP_ERRS[$i]}"; then
            :
        else
            log "WARNING: dropped packets in ${CAP_ERRS[$i]}"; rc=1
        fi
    done
    CAP_PIDS=()
    CAP_ERRS=()
    return $rc
}

# record SCENARIO TRIES PROXY TRAFFIC RULE...: captures TRAFFIC (a function) on lo,
# writes the expected rows from RULEs (see scenarios_facts.py), keeps nginx's error
# log when PROXY is "proxy". A try with dropped packets, a capture over the size limit
# or a failed rule is redone, TRIES times at most. TRY holds the try number.
SIZE_LIMIT=61440
TRY=0
record() {
    local name=$1 tries=$2 proxy=$3 traffic=$4; shift 4
    local pcap="$WORK/$name.pcap"
    for TRY in $(seq 1 "$tries"); do
        iptables -t raw -F
        : >"$WORK/logs/error.log"
        : >"$WORK/peers.log"
        cap_start "$pcap"
        sleep 0.2
        $traffic
        if cap_stop; then
            local size
            size=$(stat -c %s "$pcap")
            if [ "$size" -gt "$SIZE_LIMIT" ]; then
                log "$name: $size bytes, over the $SIZE_LIMIT byte limit"
            elif [ "${KA_CHECK:-0}" = 1 ] && ! $FACTS race "$pcap"; then
                log "$name: no keep-alive race in this try"
            elif $FACTS expected "$pcap" "$@" >"$WORK/$name.expected.tsv"; then
                cp "$pcap" "$OUT/$name.pcap"
                cp "$WORK/$name.expected.tsv" "$OUT/$name.expected.tsv"
                if [ "$proxy" = proxy ]; then
                    cp "$WORK/logs/error.log" "$OUT/$name.error.log"
                else
                    rm -f "$OUT/$name.error.log"
                fi
                $FACTS facts "$pcap" >"$NOTES/$name.facts.txt"
                cp "$WORK/peers.log" "$NOTES/$name.peers.log"
                cp "$WORK/logs/error.log" "$NOTES/$name.nginx-error.log"
                log "$name: kept try $TRY ($size bytes)"
                column -t -s $'\t' "$OUT/$name.expected.tsv" >&2 || cat "$OUT/$name.expected.tsv" >&2
                return 0
            fi
            log "$name: try $TRY does not show what it should"
        fi
        [ "$TRY" -lt "$tries" ] && log "recording $name again (try $((TRY + 1)) of $tries)"
        sleep 1
    done
    die "$name: no good recording in $tries tries"
}
# client commands: their output goes to the notes, their exit status is logged
run_client() { # NAME CMD...
    local name=$1; shift
    local rc=0
    timeout 20 "$@" >>"$WORK/peers.log" 2>&1 || rc=$?
    echo "[client $name] exit status $rc: $*" >>"$WORK/peers.log"
    log "client $name: exit $rc"
}

# ============================================================== the scenarios
s_connect_refused() {
    t() { run_client curl curl -sS --max-time 5 -o /dev/null http://127.0.0.1:9/; }
    record connect-refused 3 none t '9=connect_refused@server/rst'
}

s_syn_blackhole() {
    t() {
        iptables -t raw -A PREROUTING -i lo -p tcp --dport 9080 --syn -j DROP
        run_client curl curl -sS --connect-timeout 3 --max-time 10 -o /dev/null http://127.0.0.1:9080/
        iptables -t raw -F
    }
    record syn-blackhole 3 none t '9080=connect_timeout@none/none'
}

s_h2c_to_tls_node() {
    peer_start tls-h2 tls-h2-server 9443 "$PKI/server.key" "$PKI/server.crt"
    local p=$PEER_PID
    t() { run_client nghttp nghttp -v -t 5 http://127.0.0.1:9443/; }
    record h2c-to-tls-node 3 none t '9443=plaintext_to_tls_port@server/fin'
    peer_stop "$p"
}

s_http1_to_tls_nginx() {
    t() { run_client curl curl -sS -v --max-time 5 -o /dev/null http://127.0.0.1:8443/small.txt; }
    record http1-to-tls-nginx 3 none t '8443=plaintext_to_tls_port@server/fin'
}

s_http1_to_tls_node() {
    peer_start https https-server 9444 "$PKI/server.key" "$PKI/server.crt"
    local p=$PEER_PID
    t() { run_client curl curl -sS -v --max-time 5 -o /dev/null http://127.0.0.1:9444/; }
    record http1-to-tls-node 3 none t '9444=closed_before_response@server/fin'
    peer_stop "$p"
}

s_tls_to_h2c() {
    peer_start h2c h2c-server 9002 ok
    local p=$PEER_PID
    t() { run_client curl curl -sS -v --max-time 5 --cacert "$CA" -o /dev/null https://127.0.0.1:9002/; }
    record tls-to-h2c 3 none t '9002=tls_to_plaintext_port@server/fin|client/rst'
    peer_stop "$p"
}

s_tls_to_http() {
    t() { run_client curl curl -sS -v --max-time 5 --cacert "$CA" -o /dev/null https://127.0.0.1:8080/small.txt; }
    record tls-to-http 3 none t '8080=tls_to_plaintext_port@server/fin'
}

s_h2_preface_to_http1() {
    t() { run_client nghttp nghttp -v -t 5 http://127.0.0.1:8080/small.txt; }
    record h2-preface-to-http1 3 none t '8080=h2_preface_to_http1@server/fin'
}

s_http1_to_h2_only() {
    peer_start h2c h2c-server 9002 ok
    local p=$PEER_PID
    t() { run_client curl curl -sS -v --http1.1 --max-time 5 -o /dev/null http://127.0.0.1:9002/; }
    record http1-to-h2-only 3 none t '9002=http1_to_h2_only@server/fin'
    peer_stop "$p"
}

s_alpn_mismatch() {
    peer_start alpn alpn-server 9445 "$PKI/server.key" "$PKI/server.crt"
    local p=$PEER_PID
    t() { run_client s_client openssl s_client -connect 127.0.0.1:9445 -alpn h2 -CAfile "$CA" </dev/null; }
    record alpn-mismatch 3 none t '9445=alpn_mismatch'
    peer_stop "$p"
}

s_cert_rejected_tls12() {
    t() { run_client curl curl -sS -v --max-time 5 --cacert "$CA" --tlsv1.2 --tls-max 1.2 -o /dev/null https://127.0.0.1:8444/small.txt; }
    record cert-rejected-tls12 3 none t '8444=tls_alert@server/fin|client/fin'
}

s_cert_rejected_tls13() {
    t() { run_client curl curl -sS -v --max-time 5 --cacert "$CA" --tlsv1.3 -o /dev/null https://127.0.0.1:8444/small.txt; }
    record cert-rejected-tls13 3 none t '8444=tls_alert@server/fin|client/fin'
}

s_upstream_fin() {
    peer_start up-fin raw-upstream 9101 fin
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/fin; }
    record upstream-fin-after-request 3 proxy t '8081=ok@client/fin' '9101=closed_before_response@server/fin'
    peer_stop "$p"
}

s_upstream_rst() {
    peer_start up-rst raw-upstream 9102 rst
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/rst; }
    record upstream-rst-after-request 3 proxy t '8081=ok@client/fin' '9102=reset_before_response@server/rst'
    peer_stop "$p"
}

s_partial() {
    peer_start up-partial raw-upstream 9103 partial
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/partial; }
    record partial-response-header 3 proxy t '8081=ok@client/fin' '9103=partial_response_headers@server/fin'
    peer_stop "$p"
}

s_truncated_chunked() {
    peer_start up-chunked raw-upstream 9104 chunked-trunc
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/chunked; }
    record truncated-chunked-body 3 proxy t '8081=truncated_response_body@server/fin' '9104=truncated_response_body@server/fin'
    peer_stop "$p"
}

s_short_cl() {
    peer_start up-shortcl raw-upstream 9105 short-cl
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/shortcl; }
    record short-content-length 3 proxy t '8081=truncated_response_body@server/fin' '9105=truncated_response_body@server/fin'
    peer_stop "$p"
}

s_response_timeout() {
    peer_start up-slow slow-server 9106 5000
    local p=$PEER_PID
    t() {
        run_client curl curl -sS --max-time 10 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/slow
        sleep 3.5 # the upstream answers at 5 s: record what happens to its late response
    }
    record response-timeout 3 proxy t '8081=ok@client/fin' '9106=response_timeout@client/fin'
    peer_stop "$p"
}

# keep-alive race: Node keepAliveTimeout 1000 ms (Node 20 closes idle keep-alive
# connections at keepAliveTimeout + 1000 ms: HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER in
# lib/_http_server.js, so at ~2000 ms); the client reuses the connection
# DELAY ms after the first response; the delays are tried in order until the capture
# shows the second request after the server's FIN (or a RST answering it).
s_keepalive_race() {
    peer_start ka http-server 9110 1000
    local p=$PEER_PID
    local delays=(2010 2020 2030 2040 2060 2080 2120)
    t() {
        local d=${delays[$((TRY - 1))]}
        log "keepalive-race: second request ${d} ms after the first response"
        $PEERS ka-client 9110 "$d" >>"$WORK/peers.log" 2>&1 || true
    }
    KA_CHECK=1 record keepalive-race ${#delays[@]} none t '9110=keepalive_race@server/fin'
    peer_stop "$p"
}

s_idle_close() {
    peer_start idle http-server 9111 2000
    local p=$PEER_PID
    t() { $PEERS idle-client 9111 6000 >>"$WORK/peers.log" 2>&1 || true; }
    record idle-close 3 none t '9111=idle_close@server/fin'
    peer_stop "$p"
}

s_h2_goaway_graceful() {
    peer_start goaway h2c-server 9005 goaway-graceful
    local p=$PEER_PID
    t() { $PEERS h2-client 9005 6 >>"$WORK/peers.log" 2>&1 || true; }
    record h2-goaway-graceful 3 none t '9005=h2_goaway'
    peer_stop "$p"
}

s_h2_goaway_error() {
    peer_start goaway h2c-server 9007 goaway-error
    local p=$PEER_PID
    t() { $PEERS h2-client 9007 6 >>"$WORK/peers.log" 2>&1 || true; }
    record h2-goaway-error 3 none t '9007=h2_goaway'
    peer_stop "$p"
}

s_h2_rst_stream() {
    peer_start rst h2c-server 9008 rst-odd
    local p=$PEER_PID
    t() { $PEERS h2-client 9008 6 >>"$WORK/peers.log" 2>&1 || true; }
    record h2-rst-stream 3 none t '9008=h2_stream_reset'
    peer_stop "$p"
}

s_healthy_h1() {
    t() {
        run_client curl curl -sS --max-time 5 -o /dev/null -o /dev/null -o /dev/null \
            http://127.0.0.1:8080/small.txt http://127.0.0.1:8080/1k.txt http://127.0.0.1:8080/small.txt
    }
    record healthy-h1-keepalive 3 none t '8080=ok@client/fin'
}

s_healthy_h2c() {
    peer_start h2c h2c-server 9006 ok
    local p=$PEER_PID
    t() { run_client nghttp nghttp -n --no-dep -m 5 -t 5 http://127.0.0.1:9006/; }
    record healthy-h2c 3 none t '9006=ok@client/fin'
    peer_stop "$p"
}

s_healthy_tls_h2() {
    t() { run_client curl curl -sS --max-time 5 --cacert "$CA" --http2 -o /dev/null -o /dev/null https://127.0.0.1:8443/small.txt https://127.0.0.1:8443/1k.txt; }
    record healthy-tls-h2 3 none t '8443=ok@client/fin|server/fin'
}

s_healthy_tls_h1() {
    t() { run_client curl curl -sS --max-time 5 --cacert "$CA" --http1.1 -o /dev/null -o /dev/null https://127.0.0.1:8443/small.txt https://127.0.0.1:8443/1k.txt; }
    record healthy-tls-h1 3 none t '8443=ok@client/fin|server/fin'
}

s_healthy_large() {
    t() { run_client curl curl -sS --max-time 10 -o /dev/null http://127.0.0.1:8080/400k.txt; }
    SIZE_LIMIT=600000 record healthy-large-download 3 none t '8080=ok@client/fin'
}

# HTTP/1.1 "Upgrade: h2c" (RFC 7540 §3.2): curl --http2 on http:// URLs asks for it;
# h2o answers 101 and HTTP/2 follows (the response to the upgrading request is stream
# 1); the second URL reuses the connection as HTTP/2 stream 3. nghttpd cannot be used:
# nghttpd 1.52 answers an upgrade request with a bare SETTINGS frame (prior knowledge
# only), and curl fails with "Received HTTP/0.9". h2o prints nothing when ready: poll it
# (before the capture starts).
s_healthy_h2c_upgrade() {
    cat >"$WORK/h2o.conf" <<EOC
user: root
error-log: $WORK/logs/h2o-error.log
access-log: $WORK/logs/h2o-access.log
listen:
  host: 127.0.0.1
  port: 9009
hosts:
  default:
    paths:
      /:
        file.dir: $WWW
EOC
    h2o -c "$WORK/h2o.conf" >"$WORK/h2o.out" 2>&1 &
    local p=$!
    PIDS_TO_STOP+=("$p")
    local i
    for i in $(seq 1 50); do
        curl -s -o /dev/null --max-time 2 http://127.0.0.1:9009/small.txt && break
        kill -0 "$p" 2>/dev/null || die "h2o did not start: $(tail -5 "$WORK/h2o.out")"
        [ "$i" -lt 50 ] || die "h2o did not come up"
        sleep 0.1
    done
    t() { run_client curl curl -sS -v --max-time 5 --http2 -o /dev/null -o /dev/null http://127.0.0.1:9009/small.txt http://127.0.0.1:9009/1k.txt; }
    record healthy-h2c-upgrade 3 none t '9009=ok@client/fin'
    peer_stop "$p"
}

# A complete chunked response, twice on one keep-alive connection (Node http server,
# three res.write()s 20 ms apart then res.end()).
s_healthy_h1_chunked() {
    peer_start chunked chunked-server 9112 3
    local p=$PEER_PID
    t() { run_client curl curl -sS --max-time 5 -o /dev/null -o /dev/null http://127.0.0.1:9112/a http://127.0.0.1:9112/b; }
    record healthy-h1-chunked 3 none t '9112=ok@client/fin'
    peer_stop "$p"
}

# Capture-format variants of upstream-fin-after-request: one run recorded at once by
# four tcpdumps and a dumpcap (pcap as the reference, pcapng from dumpcap, nanosecond
# pcap, snaplen 96, -i any as LINUX_SLL2), a gzip copy of the reference, and a second run over ::1.
s_variants() {
    local base=upstream-fin-after-request
    peer_start up-fin raw-upstream 9101 fin
    local p=$PEER_PID
    local try
    for try in 1 2 3; do
        : >"$WORK/logs/error.log"
        cap_start "$WORK/v.pcap"
        cap_start "$WORK/v.pcapng" --dumpcap
        cap_start "$WORK/v-ns.pcap" --time-stamp-precision nano
        cap_start "$WORK/v-snap96.pcap" -s 96
        cap_start "$WORK/v-sll2.pcap" -i any -y LINUX_SLL2
        sleep 0.2
        run_client curl curl -sS --max-time 5 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8081/fin
        cap_stop || continue
        $FACTS expected "$WORK/v.pcap" '8081=ok@client/fin' '9101=closed_before_response@server/fin' \
            >"$WORK/v.expected.tsv" || continue
        $FACTS expected "$WORK/v-sll2.pcap" '8081=ok@client/fin' '9101=closed_before_response@server/fin' \
            >"$WORK/v-sll2.expected.tsv" || continue
        break
    done
    [ -s "$WORK/v.expected.tsv" ] || die "variants: no good recording"
    cp "$WORK/v.pcap" "$OUT/$base-variant.pcap"
    gzip -9 -n -c "$WORK/v.pcap" >"$OUT/$base-variant-gz.pcap.gz"
    cp "$WORK/v.pcapng" "$OUT/$base-variant-pcapng.pcapng"
    cp "$WORK/v-ns.pcap" "$OUT/$base-variant-ns.pcap"
    cp "$WORK/v-snap96.pcap" "$OUT/$base-variant-snap96.pcap"
    cp "$WORK/v-sll2.pcap" "$OUT/$base-variant-sll2.pcap"
    local v
    for v in "$base-variant" "$base-variant-gz" "$base-variant-pcapng" "$base-variant-ns" "$base-variant-snap96"; do
        cp "$WORK/v.expected.tsv" "$OUT/$v.expected.tsv"
    done
    cp "$WORK/v-sll2.expected.tsv" "$OUT/$base-variant-sll2.expected.tsv"
    cp "$WORK/logs/error.log" "$OUT/$base-variant.error.log"
    $FACTS facts "$WORK/v.pcap" >"$NOTES/$base-variant.facts.txt"
    $FACTS facts "$WORK/v-sll2.pcap" >"$NOTES/$base-variant-sll2.facts.txt"
    $FACTS facts "$WORK/v-snap96.pcap" >"$NOTES/$base-variant-snap96.facts.txt"
    cp "$WORK/logs/error.log" "$NOTES/$base-variant.nginx-error.log"
    peer_stop "$p"

    # IPv6: curl -> nginx [::1]:8081 -> Node upstream [::1]:9101
    LAB_HOST=::1 peer_start up-fin6 raw-upstream 9101 fin
    p=$PEER_PID
    t() { run_client curl curl -sS -g --max-time 5 -o /dev/null -w '%{http_code}\n' 'http://[::1]:8081/fin6'; }
    record "$base-variant-ipv6" 3 proxy t '8081=ok@client/fin' '9101=closed_before_response@server/fin'
    peer_stop "$p"
}

# --------------------------------------------------------------- dispatch
declare -A FN=(
    [connect-refused]=s_connect_refused [syn-blackhole]=s_syn_blackhole
    [h2c-to-tls-node]=s_h2c_to_tls_node [http1-to-tls-nginx]=s_http1_to_tls_nginx
    [http1-to-tls-node]=s_http1_to_tls_node [tls-to-h2c]=s_tls_to_h2c [tls-to-http]=s_tls_to_http
    [h2-preface-to-http1]=s_h2_preface_to_http1 [http1-to-h2-only]=s_http1_to_h2_only
    [alpn-mismatch]=s_alpn_mismatch [cert-rejected-tls12]=s_cert_rejected_tls12
    [cert-rejected-tls13]=s_cert_rejected_tls13
    [upstream-fin-after-request]=s_upstream_fin [upstream-rst-after-request]=s_upstream_rst
    [partial-response-header]=s_partial [truncated-chunked-body]=s_truncated_chunked
    [short-content-length]=s_short_cl [response-timeout]=s_response_timeout
    [keepalive-race]=s_keepalive_race [idle-close]=s_idle_close
    [h2-goaway-graceful]=s_h2_goaway_graceful [h2-goaway-error]=s_h2_goaway_error
    [h2-rst-stream]=s_h2_rst_stream [healthy-h1-keepalive]=s_healthy_h1 [healthy-h2c]=s_healthy_h2c
    [healthy-tls-h2]=s_healthy_tls_h2 [healthy-tls-h1]=s_healthy_tls_h1
    [healthy-large-download]=s_healthy_large [variants]=s_variants
    [healthy-h2c-upgrade]=s_healthy_h2c_upgrade [healthy-h1-chunked]=s_healthy_h1_chunked
)
for s in "${SCENARIOS[@]}"; do
    log "=== $s"
    "${FN[$s]}"
done

kill "$NGINX_PID"
wait "$NGINX_PID" || true
chown --reference="$ROOT" -- "$OUT"/* 2>/dev/null || true
chmod 644 -- "$OUT"/*
log "done"
