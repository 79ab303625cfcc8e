#!/bin/bash
# Install what tapline needs to build, test and run its demo, from Debian's packages.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
pkgs=(
	build-essential meson ninja-build pkg-config clang llvm lld python3
	libdpdk-dev dpdk libhyperscan-dev liblmdb-dev lmdb-utils libbpf-dev libxdp-dev xdp-tools
	libcmocka-dev libzstd-dev liblz4-dev libdeflate-dev libcurl4-openssl-dev libyaml-dev
	libmicrohttpd-dev libxxhash-dev libjansson-dev libsimdjson-dev libpcap-dev libssl-dev
	libclang-rt-14-dev iproute2 iputils-ping procps ethtool bpftool tcpdump curl
	clickhouse-server clickhouse-client prometheus
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	echo "setup: installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi
echo "setup: all packages present"
