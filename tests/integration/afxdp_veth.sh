#!/bin/bash
# tapline on a DPDK net_af_xdp port bound to a veth end in one network namespace; the
# generator sends raw NDJSON over a kernel UDP socket from a second namespace (the kernel
# fragments the large datagrams). Every valid event must arrive field by field and every
# malformed one be counted under its reason.
# Addresses are from 198.18.0.0/15 (benchmarking range); nothing is routed.
# usage: afxdp_veth.sh TAPLINE SRC_DIR [EVENTS] [RATE]
set -euo pipefail
tapline=$1
src=$2
# The rate must stay within what one worker of this build sustains with no loss on a veth
# (the ASan build is several times slower): TAPLINE_TEST_RATE lowers it.
events=${3:-${TAPLINE_TEST_EVENTS:-20000}}
rate=${4:-${TAPLINE_TEST_RATE:-10000}}
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, AF_XDP)"
	exit 77
fi
tag=$$
rxns=tlrx$tag
txns=tltx$tag
work=$(mktemp -d /tmp/tapline-afxdp.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
	ip netns del "$rxns" 2>/dev/null || true
	ip netns del "$txns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

. "$src/scripts/netns.sh"
tl_veth_pair "$rxns" "$txns" tlr$tag tlt$tag

ip netns exec "$rxns" "$tapline" run --config "$src/tests/integration/site-afxdp.yaml" \
	--vdev "net_af_xdp0,iface=tlr$tag,start_queue=0,queue_count=1,busy_budget=0" \
	--dump-events "$work/dump" --spool "$work/spool" --no-uplink \
	> "$work/run.out" 2> "$work/run.err" &
pid=$!

# Wait for the port to come up (the worker logs when it starts polling).
for _ in $(seq 1 100); do
	grep -q "polls port" "$work/run.err" 2>/dev/null && break
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$work/run.err"
		echo "FAIL: tapline exited before capturing"
		exit 1
	fi
	sleep 0.1
done
grep -q "polls port" "$work/run.err" || { cat "$work/run.err"; echo "FAIL: no worker"; exit 1; }

ip netns exec "$txns" "$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 7 \
	--count "$events" --rate "$rate" --duration 60 --udp 198.18.0.1:5170 \
	--truth "$work/truth.ndjson" --summary "$work/summary.json"

sleep 2
kill -TERM "$pid"
wait "$pid"
pid=
cat "$work/run.err" | grep -v "^$" | tail -5
grep -E '^figure (events_|error_events|frames|reassembled|rx_)' "$work/run.out"
python3 "$src/tests/integration/compare_events.py" "$work/truth.ndjson" "$work/summary.json" \
	"$work/run.out" "$work"/dump.*
