#!/usr/bin/env bash
# Installs the tools needed to record and check the sample captures (Debian 12).
# Idempotent: does nothing (no apt-get update) when everything is already there.
set -euo pipefail

# nghttp2-client and openssl: samples/lab/record.sh (scenarios). record.sh also needs
# Node.js >= 20 (`node`), which is not installed from here: Debian 12's nodejs is 18.
PKGS=(tcpdump tshark curl python3 zstd gzip iproute2 ethtool iputils-ping util-linux iptables nghttp2-client openssl coreutils)
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
