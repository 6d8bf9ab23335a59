#!/usr/bin/env bash
# Record LARGE real packet captures for rstscope benchmarks.
#
#   bash benches/record-large.sh [mixed|manyflows|all|timings] [OUTDIR]
#
# OUTDIR defaults to /var/tmp/rstscope-bench (keep it outside the repo: the
# captures are never committed).  Needs root on Debian 12; installs its own
# packages (set SKIP_INSTALL=1 to skip apt when everything is present).
#
#   mixed      -> OUTDIR/mixed.pcap, about MIXED_MB MB (default 2000): nginx
#                 traffic of several kinds one after another and then all at
#                 once: HTTP/1.1 keep-alive (1 KB/16 KB/256 KB/2 MB bodies),
#                 HTTP/1.1 Connection: close, h2c prior knowledge, TLS h2,
#                 TLS HTTP/1.1, HTTP/1.1 over ::1, plus refused connects to a
#                 closed port and requests nginx drops with `return 444`.
#   manyflows  -> OUTDIR/manyflows.pcap: >= MANYFLOWS_CONNS (default 250000)
#                 short HTTP/1.1 Connection: close connections to a tiny file
#                 (~8 packets each: ~2 million packets, ~245 MB).
#   all        -> both (default).
#   timings    -> times capinfos and `tshark -q -z conv,tcp` on the recorded
#                 files (page-cached: 1 warm-up + TIMING_RUNS runs each, with
#                 /usr/bin/time -v) into OUTDIR/reference-timings.txt.
#
# All traffic stays on loopback, inside a private network namespace (the
# script re-execs itself under `unshare -n`), where lo gets MTU 1500 and
# TSO/GSO/GRO off so that frames are at most 1514 bytes like on a real NIC.
# Every loop is bounded in count and time; every process started is stopped
# by its pid.  Facts about each recording go to OUTDIR/RECORDED.txt.
#
# Tunables (environment): MIXED_MB, MANYFLOWS_CONNS, PHASE_MAX_S (upper bound
# of one traffic phase, default 300), MANYFLOWS_MAX_S (default 900),
# RATE_PER_CONN (nginx limit_rate per connection, default 0 = unlimited),
# LO_RATE (a tbf qdisc on lo, like a link's line rate, default 200mbit: mixed
# then records at ~23 MB/s, ~53 s for 1.2 GB, so each phase lasts seconds and
# bulk flows meet a full queue (~1,400 qdisc drops, ~130 retransmitted
# segments; the qdisc tells local TCP of most drops, so few show as
# retransmissions); 0 = no qdisc: loopback then runs at ~130 MB/s and
# mixed.pcap is recorded in ~10 s),
# TCPDUMP_BUF_KB (tcpdump -B, default 262144), TIMING_RUNS (default 3),
# TIMING_TIMEOUT_S (default 1200), SKIP_INSTALL.
set -euo pipefail

MODE=${1:-all}
OUTDIR=${2:-/var/tmp/rstscope-bench}
MIXED_MB=${MIXED_MB:-2000}
MANYFLOWS_CONNS=${MANYFLOWS_CONNS:-250000}
PHASE_MAX_S=${PHASE_MAX_S:-300}
MANYFLOWS_MAX_S=${MANYFLOWS_MAX_S:-900}
RATE_PER_CONN=${RATE_PER_CONN:-0}
LO_RATE=${LO_RATE:-200mbit}
TCPDUMP_BUF_KB=${TCPDUMP_BUF_KB:-262144}
TIMING_RUNS=${TIMING_RUNS:-3}
TIMING_TIMEOUT_S=${TIMING_TIMEOUT_S:-1200}

CLOSED_PORT=9          # nothing listens here: connects are refused
H1_PORT=8080           # HTTP/1.1 cleartext, 127.0.0.1 and ::1
H2C_PORT=8081          # h2c prior knowledge only
TLS_H2_PORT=8443       # TLS, ALPN h2 + http/1.1
TLS_H1_PORT=8444       # TLS, http/1.1 only

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $MODE in
  mixed|manyflows|all|timings) ;;
  *) echo "usage: bash $0 [mixed|manyflows|all|timings] [OUTDIR]" >&2; exit 2 ;;
esac
case $OUTDIR in /*) ;; *) OUTDIR=$PWD/$OUTDIR ;; esac

# --------------------------------------------------------------------------
# Outside the namespace: packages, then re-exec under unshare -n.
# --------------------------------------------------------------------------
install_packages() {
  local cmds=(tcpdump tshark capinfos nginx wrk h2load curl openssl ethtool ip tc hyperfine unshare)
  local missing=0 c
  for c in "${cmds[@]}"; do command -v "$c" >/dev/null || missing=1; done
  [[ -x /usr/bin/time ]] || missing=1
  if [[ ${SKIP_INSTALL:-} == 1 && $missing == 0 ]]; then return; fi
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  local pkgs=(tcpdump tshark nginx wrk nghttp2-client curl openssl ethtool iproute2 hyperfine time util-linux procps)
  local try
  for try in 1 2 3; do
    log "apt-get update + install (try $try): ${pkgs[*]}"
    if apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
       apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; then
      return
    fi
    sleep 5
  done
  die "apt-get install failed"
}

if [[ -z ${RSTSCOPE_IN_NETNS:-} ]]; then
  [[ $(id -u) == 0 ]] || die "run as root (needs unshare -n, tcpdump, ethtool, apt-get)"
  install_packages
  mkdir -p "$OUTDIR"
  if [[ $MODE == timings ]]; then
    RSTSCOPE_IN_NETNS=timings exec bash "$(readlink -f "$0")" "$MODE" "$OUTDIR"
  fi
  log "re-exec in a private network namespace"
  RSTSCOPE_IN_NETNS=1 exec unshare -n bash "$(readlink -f "$0")" "$MODE" "$OUTDIR"
fi

# --------------------------------------------------------------------------
# Reference timings (no namespace needed; reads the recorded files only).
# --------------------------------------------------------------------------
if [[ $MODE == timings ]]; then
  out=$OUTDIR/reference-timings.txt
  {
    echo "# reference timings, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -r), $(nproc) cores"
    echo "# page-cached: 1 warm-up run, then $TIMING_RUNS runs of /usr/bin/time -v each; timeout ${TIMING_TIMEOUT_S}s per run"
    tshark --version | head -1
  } > "$out"
  for f in manyflows mixed; do
    p=$OUTDIR/$f.pcap
    [[ -f $p ]] || { log "skip $p (missing)"; continue; }
    size=$(stat -c %s "$p")
    for tool in capinfos tshark; do
      if [[ $tool == capinfos ]]; then cmd=(capinfos "$p"); else cmd=(tshark -q -z conv,tcp -r "$p"); fi
      log "warm-up: ${cmd[*]}"
      timeout "$TIMING_TIMEOUT_S" "${cmd[@]}" >/dev/null 2>&1 || log "warm-up rc=$?"
      for ((run = 1; run <= TIMING_RUNS; run++)); do
        log "run $run: ${cmd[*]}"
        tf=$(mktemp)
        rc=0
        timeout "$TIMING_TIMEOUT_S" /usr/bin/time -v -o "$tf" "${cmd[@]}" >/dev/null 2>&1 || rc=$?
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$tf")
        secs=$(awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else if (NF==2) print $1*60+$2; else print $1 }' <<<"${wall:-0}")
        rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$tf")
        mbs=$(awk -v b="$size" -v s="$secs" 'BEGIN{ if (s>0) printf "%.1f", b/1e6/s; else print "n/a" }')
        {
          echo "## file=$f.pcap bytes=$size tool=$tool run=$run rc=$rc wall_s=$secs MB_per_s=$mbs max_rss_kb=${rss:-n/a}"
          echo "\$ ${cmd[*]}"
          cat "$tf"
        } >> "$out"
        rm -f "$tf"
        log "  wall=${secs}s ${mbs} MB/s maxrss=${rss:-n/a} KB rc=$rc"
      done
    done
  done
  echo >> "$out"
  echo "# summary" >> "$out"
  grep '^## ' "$out" | sed 's/^## /# /' >> "$out"
  log "wrote $out"
  exit 0
fi

# --------------------------------------------------------------------------
# Inside the private network namespace.
# --------------------------------------------------------------------------
[[ $RSTSCOPE_IN_NETNS == 1 ]] || die "unexpected RSTSCOPE_IN_NETNS"
ip -o link show | grep -qv ': lo:' && die "not in a private namespace (found non-lo links)"
ip link set lo up mtu 1500
ethtool -K lo tso off gso off gro off
sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
sysctl -q -w net.ipv4.tcp_tw_reuse=1
sysctl -q -w net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
if [[ $LO_RATE != 0 ]]; then
  # captured packets pass the qdisc first: what tbf drops is never captured,
  # its retransmission is (as behind a congested link)
  tc qdisc replace dev lo root tbf rate "$LO_RATE" burst 256kb latency 20ms
fi
ulimit -n 16384 2>/dev/null || ulimit -n 8192 2>/dev/null || true

WORK=$(mktemp -d "/var/tmp/rstscope-lab.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/tmp" "$WORK/logs"
PIDS=()            # every process we started, stopped by pid
NGINX_PID=

stop_pid() {       # stop_pid PID: SIGTERM, bounded wait, then SIGKILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- content, certificate, nginx -------------------------------------------
head -c 1024      /dev/urandom > "$WORK/www/1k.bin"
head -c 16384     /dev/urandom > "$WORK/www/16k.bin"
head -c 262144    /dev/urandom > "$WORK/www/256k.bin"
head -c 2097152   /dev/urandom > "$WORK/www/2m.bin"
printf 'ok\n'                  > "$WORK/www/tiny.txt"
chmod 644 "$WORK/www/"*
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"

cat > "$WORK/nginx.conf" <<EOF
user www-data;
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/logs/nginx-error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/body;
  proxy_temp_path $WORK/tmp/proxy;
  fastcgi_temp_path $WORK/tmp/fastcgi;
  uwsgi_temp_path $WORK/tmp/uwsgi;
  scgi_temp_path $WORK/tmp/scgi;
  types { application/octet-stream bin; text/plain txt; }
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000;
  keepalive_timeout 65s;
  limit_rate $RATE_PER_CONN;
  ssl_certificate $WORK/cert.pem;
  ssl_certificate_key $WORK/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  root $WORK/www;
  server {
    listen 127.0.0.1:$H1_PORT backlog=8192;
    listen [::1]:$H1_PORT backlog=8192;
    location = /drop { return 444; }
  }
  server {
    listen 127.0.0.1:$H2C_PORT http2;
    location = /drop { return 444; }
  }
  server {
    listen 127.0.0.1:$TLS_H2_PORT ssl http2;
  }
  server {
    listen 127.0.0.1:$TLS_H1_PORT ssl;
  }
}
EOF
nginx -t -q -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;'
nice -n 5 nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' 2>>"$WORK/logs/nginx-error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for ((i = 0; i < 100; i++)); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$H1_PORT/tiny.txt" && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$WORK/logs/nginx-error.log")"
  sleep 0.1
done
# smoke test of every listener (before any capture starts)
curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$H1_PORT/1k.bin"          || die "h1 smoke test"
curl -sf -o /dev/null --max-time 5 "http://[::1]:$H1_PORT/1k.bin"              || die "h1 ::1 smoke test"
curl -sf -o /dev/null --max-time 5 --http2-prior-knowledge "http://127.0.0.1:$H2C_PORT/1k.bin" || die "h2c smoke test"
curl -sfk -o /dev/null --max-time 5 --http2 "https://127.0.0.1:$TLS_H2_PORT/1k.bin" || die "tls h2 smoke test"
curl -sfk -o /dev/null --max-time 5 --http1.1 "https://127.0.0.1:$TLS_H1_PORT/1k.bin" || die "tls h1 smoke test"
log "nginx up (pid $NGINX_PID), work dir $WORK"

# wrk scripts: rotate over paths; "bulk" has large bodies, "small" mostly small.
mkwrk() {  # mkwrk NAME path...
  local name=$1; shift
  { printf 'local paths = {'; printf '"%s",' "$@"; printf '}\n'
    cat <<'EOF'
local i = math.random(0, #paths - 1)
request = function()
  i = i + 1
  return wrk.format(nil, paths[(i % #paths) + 1])
end
EOF
  } > "$WORK/$name.lua"
}
BULK=(/1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /16k.bin /16k.bin /16k.bin /16k.bin /256k.bin /256k.bin /2m.bin)
SMALL=(/1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /1k.bin /16k.bin /16k.bin /16k.bin /256k.bin)
mkwrk bulk "${BULK[@]}"
mkwrk small "${SMALL[@]}"
urls() { local base=$1 p; shift; for p in "$@"; do printf '%s%s\n' "$base" "$p"; done; }

# --- capture helpers ---------------------------------------------------------
TCPDUMP_PID=
start_capture() {  # start_capture FILE
  local file=$1 i
  rm -f "$file"
  find "$WORK/logs" -name '*.log' ! -name nginx-error.log -delete
  tcpdump -i lo -n -Z root --immediate-mode -B "$TCPDUMP_BUF_KB" -s 262144 -w "$file" 'tcp or udp' \
    2> "$WORK/logs/tcpdump.log" &
  TCPDUMP_PID=$!
  PIDS+=("$TCPDUMP_PID")
  for ((i = 0; i < 100; i++)); do
    grep -q 'listening on' "$WORK/logs/tcpdump.log" && break
    kill -0 "$TCPDUMP_PID" 2>/dev/null || die "tcpdump exited: $(cat "$WORK/logs/tcpdump.log")"
    sleep 0.1
  done
  sleep 0.3
  CAPFILE=$file
  RETR_BASE=$(snmp Tcp RetransSegs)
  TBF_BASE=$(tbf_drops); TBF_BASE=${TBF_BASE:-0}
  log "tcpdump (pid $TCPDUMP_PID) writing $file"
}
DROPS=
stop_capture() {
  sleep 0.5                      # let the last packets (FINs) through
  # let tcpdump drain its ring buffer (file size stable), bounded
  local i last=-1 cur
  for ((i = 0; i < 600; i++)); do
    cur=$(fsize "$CAPFILE"); (( cur == last )) && break; last=$cur; sleep 0.5
  done
  kill "$TCPDUMP_PID"; wait "$TCPDUMP_PID" || true
  local tbf; tbf=$(tbf_drops)
  NETNS_FACTS="lo qdisc: tbf rate $LO_RATE (0 = none); packets it dropped (never captured): $(( ${tbf:-0} - TBF_BASE )); TCP segments retransmitted (netns RetransSegs): $(( $(snmp Tcp RetransSegs) - RETR_BASE ))"
  local p; local keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$TCPDUMP_PID" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  cat "$WORK/logs/tcpdump.log" >&2
  DROPS=$(awk '/packets dropped by kernel/{print $1}' "$WORK/logs/tcpdump.log")
  [[ -n $DROPS ]] || DROPS=unknown
  [[ $DROPS == 0 ]] || log "WARNING: tcpdump dropped $DROPS packets (raise TCPDUMP_BUF_KB or set RATE_PER_CONN)"
}
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }
snmp() {  # snmp Tcp ActiveOpens: a counter of this namespace
  awk -v p="$1:" -v k="$2" '$1 == p { if (!h) { for (i = 1; i <= NF; i++) if ($i == k) c = i; h = 1 } else print $c }' /proc/net/snmp
}
tbf_drops() { tc -s qdisc show dev lo | awk '/dropped/ { sub(",", "", $7); print $7; exit }'; }

# Capture progress without tcpdump's lag: bytes that crossed lo since the
# capture started, as pcap bytes (16-byte record header per packet).
# How far the recording got: the capture file's size. (lo's byte counters in
# /proc/net/dev were tried first; in the phase with six generators at once they
# stalled while tcpdump went on writing, and mixed.pcap grew to 9 GB.)
progress() { fsize "$CAPFILE"; }

# run_phase NAME END_BYTES CMD...|| CMD... : start the commands (separated by a
# lone '||'), poll until progress() reaches END_BYTES, every command exits, or
# PHASE_MAX_S passes; then stop what is still running.
run_phase() {
  local name=$1 end=$2; shift 2
  local pids=() cmd=() n=0 a t alive start_size
  start_size=$(progress)
  log "phase $name: $(( start_size / 1000000 )) MB -> $(( end / 1000000 )) MB (tcpdump has written $(( $(fsize "$CAPFILE") / 1000000 )) MB)"
  for a in "$@" '||'; do
    if [[ $a == '||' ]]; then
      n=$((n + 1))
      nice -n 10 "${cmd[@]}" > "$WORK/logs/$name.$n.log" 2>&1 &
      pids+=($!); PIDS+=($!)
      cmd=()
    else
      cmd+=("$a")
    fi
  done
  for ((t = 0; t < PHASE_MAX_S * 10; t++)); do
    (( $(progress) >= end )) && break
    alive=0
    for a in "${pids[@]}"; do kill -0 "$a" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  for a in "${pids[@]}"; do kill "$a" 2>/dev/null || true; done
  for a in "${pids[@]}"; do stop_pid "$a"; done
  local keep=() p q drop
  for p in "${PIDS[@]}"; do drop=0; for q in "${pids[@]}"; do [[ $p == "$q" ]] && drop=1; done; (( drop )) || keep+=("$p"); done
  PIDS=("${keep[@]}")
  log "phase $name done after $((t / 10)) s at $(( $(progress) / 1000000 )) MB"
  PHASE_SUMMARY+="  $name: $(( ($(progress) - start_size) / 1000000 )) MB in ~$((t / 10)) s, $n generator(s)"$'\n'
}

REFUSED_DONE=0 DROPPED_DONE=0
failures() {  # failures N_REFUSED N_444: connects to a closed port, 444 answers
  local i
  for ((i = 0; i < $1; i++)); do
    if (( i % 10 == 9 )); then
      ( exec 3<>"/dev/tcp/::1/$CLOSED_PORT" ) 2>/dev/null && log "WARNING: port $CLOSED_PORT open?"
    else
      ( exec 3<>"/dev/tcp/127.0.0.1/$CLOSED_PORT" ) 2>/dev/null && log "WARNING: port $CLOSED_PORT open?"
    fi
    REFUSED_DONE=$((REFUSED_DONE + 1))
  done
  for ((i = 0; i < $2; i++)); do
    if (( i % 4 == 3 )); then
      curl -s -o /dev/null --max-time 5 --http2-prior-knowledge "http://127.0.0.1:$H2C_PORT/drop" || true
    else
      curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$H1_PORT/drop" || true
    fi
    DROPPED_DONE=$((DROPPED_DONE + 1))
    sleep 0.02
  done
}

# --- flow statistics ---------------------------------------------------------
# SYNs without ACK (IPv4 and IPv6 without extension headers), one line per
# connection attempt keyed by 5-tuple + ISN (retransmitted SYNs collapse).
syn_stats() {  # prints: "attempts tuples reused_tuples"
  tcpdump -nn -r "$1" '(ip and (tcp[tcpflags] & (tcp-syn|tcp-ack)) == tcp-syn) or (ip6 and ip6[6] == 6 and (ip6[53] & 0x12) == 0x02)' 2>/dev/null |
    awk '{ seq = ""; for (i = 6; i <= NF; i++) if ($i == "seq") { seq = $(i + 1); break }
           print $3, $5, seq }' | sort -u |
    awk '{ n[$1 " " $2]++; a++ } END { t = 0; r = 0; for (k in n) { t++; if (n[k] > 1) r++ } print a + 0, t, r }'
}
count_bpf() { tcpdump -nn -r "$1" "$2" 2>/dev/null | wc -l; }

versions() {
  echo "nginx: $(nginx -v 2>&1)"
  echo "wrk: $(wrk --version 2>&1 | head -1)"
  echo "h2load: $(h2load --version 2>&1 | head -1)"
  echo "tcpdump: $(tcpdump --version 2>&1 | tr '\n' ' ')"
  echo "openssl: $(openssl version)"
  echo "kernel: $(uname -r)"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
}

report() {  # report NAME FILE EXTRA...
  local name=$1 file=$2; shift 2
  local size pkts info
  size=$(fsize "$file")
  info=$(capinfos -M -c -s -u -x -y "$file")
  pkts=$(capinfos -M -c -T -r "$file" | awk -F'\t' '{print $2}')
  {
    echo "=== $name.pcap  (recorded $(date -u +%Y-%m-%dT%H:%M:%SZ) by benches/record-large.sh)"
    echo "bytes: $size ($(( size / 1048576 )) MiB)"
    echo "packets: $pkts"
    echo "$info" | grep -E 'File size|Capture duration|Data byte rate|Data bit rate' || true
    echo "tcpdump drops (packets dropped by kernel): $DROPS"
    echo "$NETNS_FACTS"
    echo "tcpdump stats: $(grep -E 'packets' "$WORK/logs/tcpdump.log" | tr '\n' ';' || true)"
    printf '%s\n' "$@"
    echo
  } > "$OUTDIR/.RECORDED-$name.txt"
}

# --- mixed.pcap ----------------------------------------------------------------
record_mixed() {
  local file=$OUTDIR/mixed.pcap target=$((MIXED_MB * 1000000)) d=$PHASE_MAX_S
  PHASE_SUMMARY=
  REFUSED_DONE=0 DROPPED_DONE=0
  start_capture "$file"
  local t0=$SECONDS
  share() { local e=$(( $(progress) + target * $1 / 100 )); echo $(( e < target ? e : target )); }
  local H1=http://127.0.0.1:$H1_PORT H6="http://[::1]:$H1_PORT" H2C=http://127.0.0.1:$H2C_PORT
  local TH2=https://127.0.0.1:$TLS_H2_PORT TH1=https://127.0.0.1:$TLS_H1_PORT
  local h2urls=() h2curls=() th2urls=()
  mapfile -t h2curls < <(urls "$H2C" "${BULK[@]}")
  mapfile -t th2urls < <(urls "$TH2" "${BULK[@]}")
  failures 60 8
  run_phase h1-keepalive "$(share 20)" wrk -t2 -c8 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$H1/"
  failures 60 8
  run_phase h1-close "$(share 8)" wrk -t2 -c16 -d"${d}s" --timeout 10s -H 'Connection: close' -s "$WORK/small.lua" "$H1/"
  failures 60 8
  run_phase h2c "$(share 14)" h2load -c8 -m16 -t1 -D "$d" "${h2curls[@]}"
  failures 60 8
  run_phase tls-h2 "$(share 12)" h2load -c8 -m16 -t1 -D "$d" "${th2urls[@]}"
  failures 60 8
  run_phase tls-h1 "$(share 12)" wrk -t2 -c8 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$TH1/"
  failures 60 8
  run_phase ipv6-h1 "$(share 6)" wrk -t1 -c4 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$H6/"
  failures 60 8
  # everything at once until the target size
  run_phase concurrent "$target" \
    wrk -t1 -c4 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$H1/" '||' \
    wrk -t1 -c8 -d"${d}s" --timeout 10s -H 'Connection: close' -s "$WORK/small.lua" "$H1/" '||' \
    h2load -c4 -m8 -t1 -D "$d" "${h2curls[@]}" '||' \
    h2load -c4 -m8 -t1 -D "$d" "${th2urls[@]}" '||' \
    wrk -t1 -c4 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$TH1/" '||' \
    wrk -t1 -c2 -d"${d}s" --timeout 10s -s "$WORK/bulk.lua" "$H6/"
  failures 60 8
  local secs=$((SECONDS - t0))
  stop_capture
  (( $(fsize "$file") >= target * 95 / 100 )) || log "WARNING: mixed.pcap is below its target size"

  log "counting connections in mixed.pcap"
  local st attempts tuples reused refused rsts
  st=$(syn_stats "$file"); read -r attempts tuples reused <<<"$st"
  refused=$(count_bpf "$file" "tcp src port $CLOSED_PORT and tcp[tcpflags] & tcp-rst != 0 or (ip6 and ip6[6] == 6 and ip6[40:2] == $CLOSED_PORT and (ip6[53] & 0x04) != 0)")
  rsts=$(count_bpf "$file" "(ip and tcp[tcpflags] & tcp-rst != 0) or (ip6 and ip6[6] == 6 and (ip6[53] & 0x04) != 0)")
  report mixed "$file" \
    "target: $MIXED_MB MB (MIXED_MB); recording took ${secs} s; RATE_PER_CONN=$RATE_PER_CONN" \
    "connection attempts (SYN without ACK, distinct 5-tuple+ISN): $attempts; distinct 5-tuples: $tuples; 5-tuples used more than once: $reused" \
    "refused connects made: $REFUSED_DONE (RSTs from port $CLOSED_PORT in capture: $refused); requests answered by 'return 444': $DROPPED_DONE; all RST packets: $rsts" \
    "phases (one after another, then all at once):" "$PHASE_SUMMARY"
  rm -rf "$OUTDIR/logs-mixed"; mkdir -p "$OUTDIR/logs-mixed"
  cp "$WORK/logs/"*.log "$OUTDIR/logs-mixed/" 2>/dev/null || true
}

# --- manyflows.pcap ------------------------------------------------------------
active_opens() { snmp Tcp ActiveOpens; }
record_manyflows() {
  local file=$OUTDIR/manyflows.pcap
  PHASE_SUMMARY=
  start_capture "$file"
  local t0=$SECONDS base now pid t
  base=$(active_opens)
  nice -n 10 wrk -t2 -c32 -d"${MANYFLOWS_MAX_S}s" --timeout 10s -H 'Connection: close' \
    "http://127.0.0.1:$H1_PORT/tiny.txt" > "$WORK/logs/manyflows-wrk.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for ((t = 0; t < MANYFLOWS_MAX_S * 10; t++)); do
    now=$(active_opens)
    (( now - base >= MANYFLOWS_CONNS )) && break
    kill -0 "$pid" 2>/dev/null || break
    (( t % 50 == 0 )) && log "manyflows: $((now - base)) connects, $(( $(fsize "$file") / 1000000 )) MB"
    sleep 0.1
  done
  stop_pid "$pid"
  local secs=$((SECONDS - t0))
  now=$(active_opens)
  stop_capture
  log "counting connections in manyflows.pcap"
  local st attempts tuples reused
  st=$(syn_stats "$file"); read -r attempts tuples reused <<<"$st"
  (( attempts >= MANYFLOWS_CONNS )) || log "WARNING: only $attempts connections (wanted $MANYFLOWS_CONNS)"
  report manyflows "$file" \
    "target: >= $MANYFLOWS_CONNS connections (MANYFLOWS_CONNS); recording took ${secs} s; wrk -t2 -c32 Connection: close, GET /tiny.txt (3-byte body)" \
    "connects made (netns ActiveOpens): $((now - base))" \
    "connection attempts (SYN without ACK, distinct 5-tuple+ISN): $attempts; distinct 5-tuples: $tuples; 5-tuples used more than once: $reused"
  rm -rf "$OUTDIR/logs-manyflows"; mkdir -p "$OUTDIR/logs-manyflows"
  cp "$WORK/logs/"*.log "$OUTDIR/logs-manyflows/" 2>/dev/null || true
}

mkdir -p "$OUTDIR"
if [[ $MODE == manyflows || $MODE == all ]]; then record_manyflows; fi
if [[ $MODE == mixed || $MODE == all ]]; then record_mixed; fi
{
  echo "# Large benchmark captures made by benches/record-large.sh (rstscope); not committed."
  echo "# RECORDED.txt rewritten $(date -u +%Y-%m-%dT%H:%M:%SZ); each section below says when its file was recorded."
  versions
  echo "netns: lo mtu 1500, tso/gso/gro off; tx checksum offload is fixed on for lo, so TCP/UDP checksums in the captures are partial (as on a NIC with offload)"
  echo
  for f in manyflows mixed; do
    if [[ -f $OUTDIR/.RECORDED-$f.txt ]]; then cat "$OUTDIR/.RECORDED-$f.txt"; fi
  done
} > "$OUTDIR/RECORDED.txt"
cat "$OUTDIR/RECORDED.txt"
log "done; facts in $OUTDIR/RECORDED.txt"
