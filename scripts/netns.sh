# shellcheck shell=bash
# Sourced by the demo and the live-capture tests: two network namespaces joined by a
# veth pair, for tapline on an AF_XDP port at one end and a sender at the other.
#
#   tl_veth_pair RXNS TXNS RXIF TXIF
#
# RXNS/RXIF get 198.18.0.1/30 (the appliance), TXNS/TXIF 198.18.0.2/30 (the sender);
# addresses from the benchmarking range, never routed anywhere. The caller deletes the
# namespaces (ip netns del) when done.
tl_veth_pair() {
	local rxns=$1 txns=$2 rxif=$3 txif=$4 ns mac

	ip netns add "$rxns"
	ip netns add "$txns"
	# No IPv6 autoconfiguration chatter (router/neighbour solicitations) on the link:
	# only the sender's datagrams cross it, so every counter can be predicted exactly.
	for ns in "$rxns" "$txns"; do
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" link set lo up
	done
	ip link add "$rxif" netns "$rxns" type veth peer name "$txif" netns "$txns"
	ip -n "$rxns" addr add 198.18.0.1/30 dev "$rxif"
	ip -n "$txns" addr add 198.18.0.2/30 dev "$txif"
	ip -n "$rxns" link set "$rxif" up
	ip -n "$txns" link set "$txif" up
	# AF_XDP takes every frame on the queue, ARP replies included: give the sender a
	# static neighbour entry so it never needs one.
	mac=$(ip -n "$rxns" -o link show "$rxif" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
	ip -n "$txns" neigh replace 198.18.0.1 lladdr "$mac" dev "$txif" nud permanent
	# veth hands unfragmented UDP over with the checksum left to "hardware" that XDP
	# never runs (CHECKSUM_PARTIAL): make the sender finish its checksums, as a NIC would.
	ip netns exec "$txns" ethtool -K "$txif" tx off > /dev/null
	# AF_XDP's UMEM counts against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
	ulimit -l unlimited 2> /dev/null || true
}
