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
#   late        events out of order: 5 % of them 60 s (event time) behind their
#               neighbours, so behind the watermark: stored with late = 1 and counted in
#               their (already emitted) windows' rollups as corrections
#   failover    two ClickHouse servers; the primary, behind a TCP proxy, is blackholed
#               (accepts, never answers) for 10 s (long: 60 s) under load: tapline fails
#               over to the secondary and back. Landed counts both servers together;
#               both must have rows, and the primary rows from after its return.
# Each prints one line
#   scenario <name> sent <n> acked <n> landed <n> duplicates <n> lost <n>
# counted from the producer's figures and from ClickHouse by event id (landed: distinct
# event ids of this producer; duplicates: rows beyond one per event id; lost: acked events
# that did not land). Required in every scenario: acked = sent, lost = 0, duplicates = 0,
# and the edge rollups agree with the raw rows: per (10 s window, event type, database)
# the summed rollups (rollups_summed) have the count, errors and late events that
# counting the rows gives (printed as `rollups windows <n> disagree <n>`). The exit status
# says whether it all held (1 if not).
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
[ ${#scenarios[@]} = 0 ] && scenarios=(kill9 ch_down retransmit highwater late failover)
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, AF_XDP)"
	exit 77
fi
if [ $mode = short ]; then
	events=${FAULT_EVENTS:-30000} rate=${FAULT_RATE:-${TAPLINE_TEST_RATE:-3000}} ch_down_s=10
	blackhole_s=10
else
	events=${FAULT_EVENTS:-240000} rate=${FAULT_RATE:-6000} ch_down_s=60 blackhole_s=60
fi
proxy_bin=${TAPLINE_TCPPROXY:-$(dirname "$tapline")/../tests/tcpproxy}

tag=$$
rxns=tlfr$tag
txns=tlft$tag
rxif=tlfr$tag
txif=tlft$tag
work=$(mktemp -d /tmp/tapline-faults.XXXXXX)
pid=
gpid=
ppid_=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null || true
	[ -n "$gpid" ] && kill -9 "$gpid" 2> /dev/null || true
	[ -n "$ppid_" ] && kill -9 "$ppid_" 2> /dev/null || true
	ip netns exec "$rxns" "$src/scripts/clickhouse.sh" stop "$work/ch" 2> /dev/null || true
	ip netns exec "$rxns" "$src/scripts/clickhouse.sh" stop "$work/ch2" 2> /dev/null || true
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

# profile DB [EXTRA YAML [EXTRA UPLINK YAML]]: the site file of one scenario.
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
${3:-}
$2
YAML
}

# Start tapline; wait for its worker. Appends to run.err (one file per scenario).
start_tl() {
	ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
		--vdev "net_af_xdp0,iface=$rxif,start_queue=0,queue_count=1,busy_budget=0" \
		--spool "$work/spool" --clickhouse "${tl_url:-$url}" >> "$work/run.out" \
		2>> "$work/run.err" &
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
# finish NAME DB PRODUCER [URL...]: counted over every server given (default: the one).
finish() {
	local name=$1 db=$2 producer=$3 sent acked landed rows dup lost rc=0 urls
	shift 3
	urls=("$@")
	[ ${#urls[@]} = 0 ] && urls=("$url")
	wait "$gpid" || rc=$?
	gpid=
	sent=$(figure gen_framed_sent)
	acked=$(figure gen_framed_acked)
	[ -n "$sent" ] || { cat "$work/gen.err"; echo "FAIL: $name: no producer figures"; exit 1; }
	# distinct event ids and rows of this producer, over the servers
	count() {
		for u in "${urls[@]}"; do ids "$db" "$producer" "$u"; done | sort | uniq -c |
			awk '{ n++; r += $1 } END { print n + 0, r + 0 }'
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
	check_rollups "$db" "${urls[@]}"
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

# Rollups against the raw rows of database $1 on the servers $2... (summed over them):
# tapline's shutdown emitted the windows still open; a short second run delivers them.
check_rollups() {
	local db=$1 u want have bad=0 n
	shift
	raw_sql="SELECT intDiv(toUnixTimestamp(event_time), 10) * 10 AS w, ifNull(event_type, '') AS t, ifNull(database_name, '') AS d, count(), sum(e), sum(late) FROM (SELECT event_time, event_type, database_name, late, 0 AS e FROM $db.sink_output UNION ALL SELECT event_time, event_type, database_name, late, 1 AS e FROM $db.error_events) GROUP BY w, t, d"
	ru_sql="SELECT toUnixTimestamp(window_start), event_type, database, sum(count), sum(errors), sum(late) FROM $db.rollups_summed GROUP BY window_start, event_type, database"
	agg() { awk -F'\t' '{ k = $1 FS $2 FS $3; c[k] += $4; e[k] += $5; l[k] += $6 } END { for (k in c) print k FS c[k] FS e[k] FS l[k] }' | sort; }
	start_tl 1 > /dev/null
	for _ in $(seq 1 120); do
		want=$(for u in "$@"; do ip netns exec "$rxns" curl -sS --data-binary "$raw_sql" "$u" 2> /dev/null; done | agg)
		have=$(for u in "$@"; do ip netns exec "$rxns" curl -sS --data-binary "$ru_sql" "$u" 2> /dev/null; done | agg)
		[ -n "$want" ] && [ "$want" = "$have" ] && break
		sleep 0.5
	done
	kill -TERM "$pid" 2> /dev/null || true
	wait "$pid" 2> /dev/null || true
	pid=
	n=$(printf '%s\n' "$want" | grep -c . || true)
	bad=$(diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") | grep -c '^<' || true)
	late_rows=$(printf '%s\n' "$want" | awk -F'\t' '{ s += $6 } END { print s + 0 }')
	corrections=$(for u in "$@"; do ip netns exec "$rxns" curl -sS --data-binary "SELECT sum(correction) FROM $db.rollups" "$u" 2> /dev/null; done | awk '{ s += $1 } END { print s + 0 }')
	echo "rollups windows $n disagree $bad late $late_rows corrections $corrections"
	if [ "$bad" != 0 ] || [ "$n" = 0 ]; then
		echo "FAIL: rollups do not agree with the rows"
		diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") | head -10 || true
		failed=1
	fi
}

# The event ids of producer $2 in database $1 of the server at $3, one per row.
ids() {
	ip netns exec "$rxns" curl -sSf --data-binary \
		"SELECT hex(event_id) FROM $1.sink_output WHERE producer_id = $2 UNION ALL SELECT hex(event_id) FROM $1.error_events WHERE producer_id = $2" \
		"$3" 2> /dev/null || true
}

scenario_failover() {
	local db=tl_fault_failover producer=105 url2 purl p_before p_after s_rows
	reset_scenario
	[ -x "$proxy_bin" ] || { echo "FAIL: failover: no tcpproxy at $proxy_bin"; failed=1; return; }
	url2=$(ip netns exec "$rxns" "$src/scripts/clickhouse.sh" start "$work/ch2")
	ip netns exec "$rxns" "$proxy_bin" --listen 127.0.0.1:0 --target "$(echo "${url#http://}" | tr -d /)" \
		--state-file "$work/proxy.state" > "$work/proxy.out" 2> "$work/proxy.err" &
	ppid_=$!
	for _ in $(seq 1 50); do
		grep -q "^tcpproxy listening" "$work/proxy.out" 2> /dev/null && break
		sleep 0.1
	done
	purl="http://$(awk '/^tcpproxy listening/ { print $3 }' "$work/proxy.out")/"
	profile $db "" "  timeout: 5s
  failover:
    targets: [\"$url2\"]
    health_interval: 500ms
    health_timeout: 400ms
    failures: 2"
	tl_url=$purl
	start_tl 1
	# Twice the events: the load goes on after the primary's return.
	events=$((events * 2)) gen $producer 15
	sleep 2
	kill -USR1 "$ppid_"
	sleep "$blackhole_s"
	p_before=$(ids $db $producer "$url" | wc -l)
	kill -USR2 "$ppid_"
	finish failover $db $producer "$url" "$url2"
	tl_url=
	kill -TERM "$ppid_" 2> /dev/null || true
	wait "$ppid_" 2> /dev/null || true
	ppid_=
	p_after=$(ids $db $producer "$url" | wc -l)
	s_rows=$(ids $db $producer "$url2" | wc -l)
	echo "primary_rows $p_after (at its return $p_before) secondary_rows $s_rows"
	if [ "$s_rows" = 0 ] || [ "$p_after" -le "$p_before" ]; then
		echo "FAIL: failover: not over to the secondary and back"
		grep -E "error|warning|target" "$work/run.err" | tail -10
		failed=1
	fi
	ip netns exec "$rxns" "$src/scripts/clickhouse.sh" stop "$work/ch2" > /dev/null || true
}

scenario_late() {
	local db=tl_fault_late producer=106
	reset_scenario
	profile $db ""
	start_tl 1
	gen $producer 16 --late-share 0.05 --late-by 60000
	finish late $db $producer
	if [ "${late_rows:-0}" = 0 ] || [ "${corrections:-0}" = 0 ]; then
		echo "FAIL: late: no late events or no corrections (late $late_rows, corrections $corrections)"
		failed=1
	fi
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
