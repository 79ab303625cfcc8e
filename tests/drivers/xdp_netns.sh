#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Test hosts for tests/drivers/test_xdp.c: two network namespaces joined by veth pairs,
# the driver's end in RXNS, the sender's in TXNS. Addresses from 198.18.0.0/15 only
# (benchmarking range), nothing routed out of the pair.
#
#   xdp_netns.sh up TAG    create tlx-rx-TAG and tlx-tx-TAG with
#                          tlxaTAG (198.18.7.1/30, 1 queue)  <-> tlxbTAG (198.18.7.2/30)
#                          tlxcTAG (198.18.7.5/30, 2 queues) <-> tlxdTAG (198.18.7.6/30)
#   xdp_netns.sh down TAG  delete them (and any tlx-* namespace whose owner, the process
#                          whose pid is the namespace's suffix, is gone)
#
# TAG is the test's pid. The sender gets static neighbour entries; the driver's side
# resolves the sender by ARP, which therefore has to pass the XDP program.
set -euo pipefail

cmd=${1:-}
tag=${2:-}
[[ "$tag" =~ ^[0-9]+$ ]] || { echo "usage: $0 up|down PID" >&2; exit 2; }
rxns=tlx-rx-$tag
txns=tlx-tx-$tag

reap_stale() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^tlx-' || true); do
		pid=${ns##*-}
		[[ "$pid" =~ ^[0-9]+$ ]] || continue
		kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
	done
}

down() {
	ip netns del "$rxns" 2>/dev/null || true
	ip netns del "$txns" 2>/dev/null || true
}

# pair RXIF TXIF RXADDR TXADDR QUEUES
pair() {
	local rxif=$1 txif=$2 rxaddr=$3 txaddr=$4 q=$5 mac
	ip link add "$rxif" numtxqueues "$q" numrxqueues "$q" netns "$rxns" type veth \
		peer name "$txif" numtxqueues "$q" numrxqueues "$q" netns "$txns"
	ip -n "$rxns" addr add "$rxaddr/30" dev "$rxif"
	ip -n "$txns" addr add "$txaddr/30" dev "$txif"
	ip -n "$rxns" link set "$rxif" up
	ip -n "$txns" link set "$txif" up
	mac=$(ip -n "$rxns" -o link show "$rxif" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
	ip -n "$txns" neigh replace "$rxaddr" lladdr "$mac" dev "$txif" nud permanent
	# veth leaves UDP checksums to "hardware" (CHECKSUM_PARTIAL) that a frame steered to
	# AF_XDP never meets: the sender computes them, as a real NIC's peer would have.
	ip netns exec "$txns" ethtool -K "$txif" tx off > /dev/null
}

case "$cmd" in
up)
	reap_stale
	down
	trap 'down' ERR
	ip netns add "$rxns"
	ip netns add "$txns"
	for ns in "$rxns" "$txns"; do
		# No IPv6 autoconfiguration chatter: only the test's frames cross the links.
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" link set lo up
	done
	pair "tlxa$tag" "tlxb$tag" 198.18.7.1 198.18.7.2 1
	pair "tlxc$tag" "tlxd$tag" 198.18.7.5 198.18.7.6 2
	;;
down)
	down
	reap_stale
	;;
*)
	echo "usage: $0 up|down PID" >&2
	exit 2
	;;
esac
