#!/usr/bin/env bash
# Installs the tools needed to record and check the sample captures (Debian 12).
# Idempotent: does nothing (no apt-get update) when everything is already there.
set -euo pipefail

# nghttp2-client, h2o (the h2c upgrade scenario: nghttpd does not accept
# "Upgrade: h2c") and openssl: samples/lab/record.sh (scenarios). record.sh also needs
# Node.js (`node`): when none is installed, Debian's nodejs package is. The samples were
# recorded with Node 20.20; Debian 12's nodejs is Node 18, whose idle keep-alive close
# comes without the 1 s buffer Node 20 adds, so re-recorded idle times differ by 1 s.
PKGS=(tcpdump tshark curl python3 zstd gzip iproute2 ethtool iputils-ping util-linux iptables nghttp2-client h2o openssl coreutils)
# nginx-light is the small nginx build; plain nginx is accepted too.
NGINX_PKGS=(nginx-light nginx)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
have_nginx=0
for p in "${NGINX_PKGS[@]}"; do installed "$p" && have_nginx=1; done
command -v nginx >/dev/null 2>&1 && have_nginx=1
[ "$have_nginx" -eq 1 ] || missing+=(nginx-light)
command -v node >/dev/null 2>&1 || missing+=(nodejs)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all packages already installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
# The lists lock is not covered by DPkg::Lock::Timeout: retry for up to 10 minutes
# when another apt-get holds it.
for i in $(seq 1 60); do
    if $SUDO apt-get -o DPkg::Lock::Timeout=600 update; then break; fi
    [ "$i" -lt 60 ] || { echo "install-deps: apt-get update kept failing" >&2; exit 1; }
    echo "install-deps: apt-get update failed (lock held?), retrying in 10 s" >&2
    sleep 10
done
apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "$@"
}
if ! apt_install "${missing[@]}"; then
    # nginx-light is not in every Debian release; fall back to plain nginx.
    fallback=()
    for p in "${missing[@]}"; do [ "$p" = nginx-light ] && fallback+=(nginx) || fallback+=("$p"); done
    apt_install "${fallback[@]}"
fi
echo "install-deps: done"
