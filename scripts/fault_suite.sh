#!/bin/bash
# Fault injection for the delivery guarantees (framed producers -> tapline -> ClickHouse).
#
#   scripts/fault_suite.sh [--short|--long] TAPLINE [SCENARIO ...]
#
# A framed producer (`tapline gen --framed`, libtapline-producer) in one network namespace
# sends through a veth pair to `tapline run` on a DPDK net_af_xdp port in another, which
# delivers to a ClickHouse server in its own namespace, while a fault is injected.
# Scenarios (default: all):
#   kill9       tapline killed with SIGKILL five times under load, restarted each time
#   ch_down     ClickHouse stopped under load (10 s short, 60 s long), then started again
#   retransmit  the producer resends deliberately (ACK timeout 2 ms: most frames go twice)
#   highwater   a small spool driven to its high-water mark with ClickHouse stopped:
#               producers get retry-later and spill to disk, then catch up
# Each prints one line
#   scenario <name> sent <n> acked <n> landed <n> duplicates <n> lost <n>
# counted from the producer's figures and from ClickHouse by event id (landed: distinct
# event ids of this producer; duplicates: rows beyond one per event id; lost: acked events
# that did not land). Required in every scenario: acked = sent, lost = 0, duplicates = 0;
# the exit status says whether it held (1 if not).
# Addresses are from 198.18.0.0/15 (benchmarking range); nothing is routed; namespaces,
# servers and files are removed at the end (KEEP=1 leaves them).
set -euo pipefail
mode=short
case "${1:-}" in
--short) shift ;;
--long) mode=long; shift ;;
esac
tapline=${1:?usage: fault_suite.sh [--short|--long] TAPLINE [SCENARIO ...]}
shift
tapline=$(cd "$(dirname "$tapline")" && pwd)/$(basename "$tapline")
src=$(cd "$(dirname "$0")/.." && pwd)
data=${TAPLINE_DATA:-$src/../shared/data}
scenarios=("$@")
[ ${#scenarios[@]} = 0 ] && scenarios=(kill9 ch_down retransmit highwater)
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, AF_XDP)"
	exit 77
fi
if [ $mode = short ]; then
	events=${FAULT_EVENTS:-30000} rate=${FAULT_RATE:-${TAPLINE_TEST_RATE:-3000}} ch_down_s=10
else
	events=${FAULT_EVENTS:-240000} rate=${FAULT_RATE:-6000} ch_down_s=60
fi

tag=$$
rxns=tlfr$tag
txns=tlft$tag
rxif=tlfr$tag
txif=tlft$tag
work=$(mktemp -d /tmp/tapline-faults.XXXXXX)
pid=
gpid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null || true
	[ -n "$gpid" ] && kill -9 "$gpid" 2> /dev/null || true
	ip netns exec "$rxns" "$src/scripts/clickhouse.sh" stop "$work/ch" 2> /dev/null || true
	ip netns del "$rxns" 2> /dev/null || true
	ip netns del "$txns" 2> /dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

. "$src/scripts/netns.sh"
tl_veth_pair "$rxns" "$txns" "$rxif" "$txif"
url=$(ip netns exec "$rxns" "$src/scripts/clickhouse.sh" start "$work/ch")
q() { ip netns exec "$rxns" curl -sSf --data-binary "$1" "$url"; }
ch_stop() { ip netns exec "$rxns" "$src/scripts/clickhouse.sh" stop "$work/ch" > /dev/null; }
ch_start() { ip netns exec "$rxns" "$src/scripts/clickhouse.sh" start "$work/ch" > /dev/null; }

# profile DB [EXTRA YAML]: the site file of one scenario.
profile() {
	cat > "$work/site.yaml" <<YAML
extends: e6data-qpe
capture:
  workers: 1
  dpdk:
    no_huge: true
    memory: 512MiB
    mbufs: 8191
    rx_desc: 4096
    log_level: error
metrics:
  listen: "127.0.0.1:0"
uplink:
  database: $1
  backoff_max: 1s
$2
YAML
}

# Start tapline; wait for its worker. Appends to run.err (one file per scenario).
start_tl() {
	ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
		--vdev "net_af_xdp0,iface=$rxif,start_queue=0,queue_count=1,busy_budget=0" \
		--spool "$work/spool" --clickhouse "$url" >> "$work/run.out" 2>> "$work/run.err" &
	pid=$!
	for _ in $(seq 1 150); do
		[ "$(grep -c "polls port" "$work/run.err" 2> /dev/null || true)" -ge "$1" ] && return 0
		kill -0 "$pid" 2> /dev/null || break
		sleep 0.1
	done
	tail -20 "$work/run.err"
	echo "FAIL: tapline did not start"
	exit 1
}

# gen PRODUCER_ID SEED [EXTRA ARGS]: the framed producer, in the background.
gen() {
	local producer=$1 seed=$2
	shift 2
	ip netns exec "$txns" "$tapline" gen --data "$data" --seed "$seed" --count "$events" \
		--rate "$rate" --malformed-share 0 --udp 198.18.0.1:5170 --framed \
		--spill-dir "$work/spill.$producer" --producer-id "$producer" --frame-size 16KiB \
		--ack-wait 300 "$@" > "$work/gen.out" 2> "$work/gen.err" &
	gpid=$!
}

figure() { awk -v n="$1" '$1 == "figure" && $2 == n { print $3 }' "$work/gen.out" | tail -1; }

# Wait for the producer, then for every acked event to land; stop tapline; print the row.
finish() {
	local name=$1 db=$2 producer=$3 sent acked landed rows dup lost rc=0
	wait "$gpid" || rc=$?
	gpid=
	sent=$(figure gen_framed_sent)
	acked=$(figure gen_framed_acked)
	[ -n "$sent" ] || { cat "$work/gen.err"; echo "FAIL: $name: no producer figures"; exit 1; }
	count() {
		q "SELECT uniqExact(event_id), count() FROM (SELECT event_id FROM $db.sink_output WHERE producer_id = $producer UNION ALL SELECT event_id FROM $db.error_events WHERE producer_id = $producer)" 2> /dev/null | tr '\t' ' ' || echo "0 0"
	}
	for _ in $(seq 1 240); do
		read -r landed rows < <(count)
		[ "$landed" -ge "$acked" ] && break
		sleep 0.5
	done
	kill -TERM "$pid" 2> /dev/null || true
	wait "$pid" 2> /dev/null || true
	pid=
	read -r landed rows < <(count)
	dup=$((rows - landed))
	lost=$((acked > landed ? acked - landed : 0))
	echo "scenario $name sent $sent acked $acked landed $landed duplicates $dup lost $lost"
	if [ "$rc" != 0 ] || [ "$acked" != "$sent" ] || [ "$lost" != 0 ] || [ "$dup" != 0 ]; then
		echo "FAIL: $name (producer exit $rc)"
		tail -5 "$work/gen.err"
		grep -E "error|warning" "$work/run.err" | tail -10
		failed=1
	fi
}

reset_scenario() {
	rm -rf "$work/spool" "$work/run.out" "$work/run.err"
}

scenario_kill9() {
	local db=tl_fault_kill9 producer=101 n
	reset_scenario
	profile $db ""
	start_tl 1
	gen $producer 11
	for n in 2 3 4 5 6; do
		sleep $([ $mode = short ] && echo 1 || echo 6)
		kill -0 "$gpid" 2> /dev/null || { echo "FAIL: kill9: the load ended before kill $((n - 1))"; failed=1; }
		kill -9 "$pid"
		wait "$pid" 2> /dev/null || true
		start_tl $n
	done
	finish kill9 $db $producer
	grep -E "^figure gen_framed_(resent|duplicate|spilled|replayed) " "$work/gen.out" | tr '\n' ' '
	echo
}

scenario_ch_down() {
	local db=tl_fault_ch_down producer=102
	reset_scenario
	profile $db ""
	start_tl 1
	gen $producer 12
	sleep 1
	ch_stop
	sleep "$ch_down_s"
	ch_start
	finish ch_down $db $producer
}

scenario_retransmit() {
	local db=tl_fault_retransmit producer=103
	reset_scenario
	profile $db ""
	start_tl 1
	gen $producer 13 --ack-timeout 2
	finish retransmit $db $producer
	grep -E "^figure gen_framed_(resent|duplicate) " "$work/gen.out" | tr '\n' ' '
	echo
}

scenario_highwater() {
	local db=tl_fault_highwater producer=104
	reset_scenario
	profile $db "spool:
  initial_size: 32MiB
  max_size: 32MiB
  high_water_pct: 40
  buffer_size: 1MiB
batch:
  bytes: 512KiB"
	start_tl 1
	# the tables exist before ClickHouse goes away
	for _ in $(seq 1 100); do
		q "EXISTS TABLE $db.sink_output" 2> /dev/null | grep -q 1 && break
		sleep 0.1
	done
	ch_stop
	gen $producer 14
	# until tapline answers retry-later (its spool at the high-water mark)
	retry_seen=0
	for _ in $(seq 1 1200); do
		retry_seen=$( (ip netns exec "$rxns" curl -s "http://$(metrics_addr)/metrics" || true) |
			awk '/^tapline_framed_retry_later_total\{cause="spool_full"\}/ { print $2 }')
		[ "${retry_seen:-0}" -gt 0 ] && break
		sleep 0.1
	done
	sleep 2
	ch_start
	finish highwater $db $producer
	if [ "${retry_seen:-0}" = 0 ]; then
		echo "FAIL: highwater: the spool never reached its high-water mark"
		failed=1
	fi
	grep -E "^figure gen_framed_(retry_later|spilled|replayed) " "$work/gen.out" | tr '\n' ' '
	echo
}

metrics_addr() {
	sed -n 's|.*metrics on http://\([0-9.]*\):[0-9]*/metrics (port \([0-9]*\)).*|\1:\2|p' \
		"$work/run.err" | tail -1
}

failed=0
for s in "${scenarios[@]}"; do
	"scenario_$s"
done
exit $failed
