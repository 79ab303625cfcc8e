#!/bin/bash
# The demo: install what is missing, build, then run the whole appliance for real:
#  - a ClickHouse server on the loopback of the appliance's network namespace;
#  - tapline on a DPDK net_af_xdp port bound to a veth end in that namespace, with its
#    LMDB spool and its uplink to that ClickHouse;
#  - `tapline gen` in a second namespace driving realistic telemetry at it over UDP
#    (5 % malformed on purpose), with freshness probes polled in ClickHouse;
# then print what was sent and what landed per table, the freshness percentiles, and a
# few analytical queries. Everything it starts is stopped and removed at the end.
#   scripts/demo.sh [SECONDS] [EVENTS_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
rate=${2:-5000}
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
	ip netns exec "$rxns" "$PWD/scripts/clickhouse.sh" stop "$work/ch" 2>/dev/null || true
	ip netns del "$rxns" 2>/dev/null || true
	ip netns del "$txns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "demo: namespaces $rxns (appliance + ClickHouse) and $txns (load), veth, 198.18.0.0/30"
. scripts/netns.sh
tl_veth_pair "$rxns" "$txns" tdr$tag tdt$tag

url=$(ip netns exec "$rxns" scripts/clickhouse.sh start "$work/ch")
echo "demo: ClickHouse $(ip netns exec "$rxns" curl -sf "${url}?query=SELECT+version()") at $url (in $rxns)"
chq() { ip netns exec "$rxns" curl -sf --data-binary "$1" "${url}?database=telemetry"; }

cat > "$work/site.yaml" <<YAML
extends: e6data-qpe
appliance_id: demo
capture:
  workers: 1
  dpdk:
    no_huge: true
    memory: 512MiB
    log_level: error
spool:
  path: $work/spool
metrics:
  listen: "127.0.0.1:9170"
YAML
ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
	--vdev "net_af_xdp0,iface=tdr$tag,start_queue=0,queue_count=1,busy_budget=0" \
	--clickhouse "${url}?database=telemetry" > "$work/run.out" 2> "$work/run.err" &
pid=$!
for _ in $(seq 1 100); do
	grep -q "polls port" "$work/run.err" 2>/dev/null && break
	sleep 0.1
done
grep -q "polls port" "$work/run.err" || { cat "$work/run.err"; exit 1; }
grep -E "port .* driver" "$work/run.err" | sed 's/^tapline: info: /demo: tapline: /'
for _ in $(seq 1 100); do
	ip netns exec "$rxns" curl -sf http://127.0.0.1:9170/metrics 2>/dev/null |
		grep -q '^tapline_uplink_connected 1' && break
	sleep 0.1
done

count=$((secs * rate))
echo "demo: sending $count events at $rate events/s for ${secs}s, with freshness probes"
ip netns exec "$txns" "$tapline" gen --data "$data" --count "$count" --rate "$rate" \
	--duration $((secs + 30)) --udp 198.18.0.1:5170 --summary "$work/summary.json" \
	--probe "${url}?database=telemetry" --probe-every 250 --probe-netns "$rxns" \
	--probe-wait 30 > "$work/gen.out"
sed 's/^figure /demo: /' "$work/gen.out"

# Let the last batches reach ClickHouse, then stop the appliance cleanly.
for _ in $(seq 1 100); do
	ip netns exec "$rxns" curl -sf http://127.0.0.1:9170/metrics 2>/dev/null |
		grep -q '^tapline_spool_records 0' && break
	sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || true
pid=

sink=$(chq "SELECT count() FROM sink_output WHERE event_type != 'probe'")
err=$(chq "SELECT count() FROM error_events")
dead=$(chq "SELECT count() FROM dead_letter")
python3 - "$work/summary.json" "$sink" "$err" "$dead" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))
sink, err, dead = map(int, sys.argv[2:5])
print(f"demo: sent {want['events_valid'] + want['events_rejected']} events "
      f"({want['events_valid']} valid incl. probes, {want['events_rejected']} malformed on purpose)")
print(f"demo: landed: sink_output {sink} (+ probes), error_events {err} "
      f"(sent {want['error_events']}), dead_letter {dead}")
PY
echo "demo: events per type per minute:"
chq "SELECT toStartOfMinute(event_time) AS minute, event_type, count() AS events
     FROM (SELECT event_time, event_type FROM sink_output
           UNION ALL SELECT event_time, event_type FROM error_events)
     WHERE event_type != 'probe'
     GROUP BY minute, event_type ORDER BY minute, event_type FORMAT PrettyCompactMonoBlock"
echo "demo: error rate per database:"
chq "SELECT database_name, sum(e) AS errors, count() AS events,
            round(100 * errors / events, 2) AS error_pct
     FROM (SELECT database_name, 0 AS e FROM sink_output WHERE event_type != 'probe'
           UNION ALL SELECT database_name, 1 AS e FROM error_events)
     GROUP BY database_name ORDER BY error_pct DESC FORMAT PrettyCompactMonoBlock"
echo "demo: slowest queries:"
chq "SELECT query_id, max(duration_ms) AS duration_ms, any(database_name) AS db,
            substring(any(replaceAll(query_text, '\n', ' ')), 1, 60) AS query
     FROM sink_output WHERE event_type = 'finished'
     GROUP BY query_id ORDER BY duration_ms DESC LIMIT 5 FORMAT PrettyCompactMonoBlock"
echo "demo: malformed events by reason (dead_letter):"
chq "SELECT reason, count() AS events FROM dead_letter GROUP BY reason
     ORDER BY events DESC FORMAT PrettyCompactMonoBlock"
