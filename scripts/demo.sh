#!/bin/bash
# The demo: install what is missing, build, then run tapline for real on a DPDK
# net_af_xdp port bound to a veth end in its own network namespace while `tapline gen`
# drives realistic telemetry at it from a second namespace; print what was captured,
# parsed and rejected. Everything it starts is stopped and removed at the end.
# (The ClickHouse leg joins when the spool/uplink lands.)
#   scripts/demo.sh [SECONDS] [EVENTS_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rate=${2:-20000}
if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (DPDK, network namespaces, AF_XDP); run it with sudo" >&2
	exit 2
fi
scripts/setup.sh
scripts/build.sh release
tapline=$PWD/build/app/tapline
data=${TAPLINE_DATA:-$PWD/../shared/data}

tag=$$
rxns=tldemorx$tag
txns=tldemotx$tag
work=$(mktemp -d /tmp/tapline-demo.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	ip netns del "$rxns" 2>/dev/null || true
	ip netns del "$txns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "demo: namespaces $rxns (tapline) and $txns (generator), veth, 198.18.0.0/30"
ip netns add "$rxns"
ip netns add "$txns"
for ns in "$rxns" "$txns"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
	ip -n "$ns" link set lo up
done
ip link add tdr$tag netns "$rxns" type veth peer name tdt$tag netns "$txns"
ip -n "$rxns" addr add 198.18.0.1/30 dev tdr$tag
ip -n "$txns" addr add 198.18.0.2/30 dev tdt$tag
ip -n "$rxns" link set tdr$tag up
ip -n "$txns" link set tdt$tag up
mac=$(ip -n "$rxns" -o link show tdr$tag | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
ip -n "$txns" neigh replace 198.18.0.1 lladdr "$mac" dev tdt$tag nud permanent
# veth hands unfragmented UDP over with the checksum left to "hardware" that XDP never
# runs (CHECKSUM_PARTIAL): make the sender finish its checksums, as a real NIC would.
ip netns exec "$txns" ethtool -K tdt$tag tx off >/dev/null

cat > "$work/site.yaml" <<YAML
extends: e6data-qpe
capture:
  workers: 1
  dpdk:
    no_huge: true
    memory: 512MiB
    log_level: error
YAML
ulimit -l unlimited 2>/dev/null || true # CAP_IPC_LOCK suffices where the limit is fixed
ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
	--vdev "net_af_xdp0,iface=tdr$tag,start_queue=0,queue_count=1,busy_budget=0" \
	> "$work/run.out" 2> "$work/run.err" &
pid=$!
for _ in $(seq 1 100); do
	grep -q "polls port" "$work/run.err" 2>/dev/null && break
	sleep 0.1
done
grep -q "polls port" "$work/run.err" || { cat "$work/run.err"; exit 1; }
grep -E "port .* driver" "$work/run.err" | sed 's/^tapline: info: /demo: tapline: /'

count=$((secs * rate))
echo "demo: sending $count events at $rate events/s for ${secs}s (5 % malformed on purpose)"
ip netns exec "$txns" "$tapline" gen --data "$data" --count "$count" --rate "$rate" \
	--duration $((secs + 30)) --udp 198.18.0.1:5170 --summary "$work/summary.json" \
	| sed 's/^/demo: gen: /'
sleep 1
kill -TERM "$pid"
wait "$pid" || true
pid=
echo "demo: what tapline counted:"
grep -E '^figure ' "$work/run.out" | awk '$3 != 0' | sed 's/^figure /  /'
python3 - "$work/summary.json" "$work/run.out" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))
got = {l.split()[1]: int(l.split()[2]) for l in open(sys.argv[2]) if l.startswith("figure ")}
for k in ("events_valid", "error_events", "events_rejected"):
    print(f"demo: {k}: sent {want.get(k)} / captured {got.get(k)}")
PY
