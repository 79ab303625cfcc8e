#!/bin/bash
# End-to-end throughput into ClickHouse next to ClickHouse's own ceiling, in one run.
#
#   scripts/bench_e2e.sh [EVENTS]      (root: DPDK; default 200000 events)
#
# 1. A private ClickHouse on loopback; `tapline gen` writes a capture of EVENTS events
#    (1-5 KB, no malformed ones).
# 2. e2e: `tapline run --pcap --once` replays it through DPDK net_pcap on one worker,
#    spools it durably and delivers it; the clock runs from start to "everything landed"
#    (EAL start-up included, so the figure is slightly pessimistic).
# 3. ceiling: the very rows tapline delivered, exported as RowBinary, bulk-inserted
#    straight into an identical table with one curl request: what ClickHouse itself
#    sustains for these rows on this machine.
# Prints figure e2e_events_per_s, figure clickhouse_ceiling_events_per_s and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-200000}
tapline=$PWD/build/app/tapline
[ -x "$tapline" ] || scripts/build.sh release > /dev/null
work=$(mktemp -d /tmp/tapline-bench-e2e.XXXXXX)
trap 'scripts/clickhouse.sh stop "$work/ch" || true; rm -rf "$work"' EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
url=$(scripts/clickhouse.sh start "$work/ch")
q() { curl -sf --data-binary "$1" "$url"; }

"$tapline" gen --data "${TAPLINE_DATA:-$PWD/../shared/data}" --count "$events" \
	--malformed-share 0 --mtu 9000 --pcap "$work/cap.pcap" > /dev/null
cat > "$work/site.yaml" <<YAML
extends: e6data-qpe
capture:
  workers: 1
  dpdk:
    no_huge: true
    memory: 1GiB
    log_level: error
metrics:
  listen: "127.0.0.1:0"
batch:
  gzip_level: ${TAPLINE_BENCH_GZIP:-1}
uplink:
  compression: none
YAML
t0=$(date +%s.%N)
"$tapline" run --config "$work/site.yaml" --pcap "$work/cap.pcap" --once \
	--spool "$work/spool" --clickhouse "${url}?database=e2e" > "$work/run.out" 2> "$work/run.err"
t1=$(date +%s.%N)
valid=$(awk '$2=="events_valid"{print $3}' "$work/run.out")
landed=$(q "SELECT (SELECT count() FROM e2e.sink_output) + (SELECT count() FROM e2e.error_events)")

q "SELECT * FROM e2e.sink_output FORMAT RowBinary" > "$work/rows.bin"
rows=$(q "SELECT count() FROM e2e.sink_output")
q "CREATE TABLE e2e.ceiling AS e2e.sink_output" > /dev/null
t2=$(date +%s.%N)
curl -sf --data-binary @"$work/rows.bin" "${url}?query=INSERT%20INTO%20e2e.ceiling%20FORMAT%20RowBinary"
t3=$(date +%s.%N)
python3 - "$valid" "$landed" "$t0" "$t1" "$rows" "$t2" "$t3" <<'PY'
import sys
valid, landed = int(sys.argv[1]), int(sys.argv[2])
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
rows, t2, t3 = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
if landed != valid:
    print(f"# WARNING: {landed} of {valid} events landed")
e2e = landed / (t1 - t0)
ceiling = rows / (t3 - t2)
print(f"# {landed} events end to end in {t1 - t0:.2f} s; {rows} rows bulk-inserted in {t3 - t2:.2f} s")
print(f"figure e2e_events_per_s {e2e:.0f} events/s")
print(f"figure clickhouse_ceiling_events_per_s {ceiling:.0f} events/s")
print(f"figure e2e_vs_ceiling {e2e / ceiling:.2f} x")
PY
