#!/bin/bash
# End-to-end throughput into ClickHouse next to ClickHouse's own ceiling, side by side.
#
#   scripts/bench_e2e.sh [EVENTS [ROUNDS]]      (default 100000 events, 3 rounds)
#
# Starts a private ClickHouse on loopback and runs `tapline bench --e2e-only` against
# it: per round, the ceiling (the events encoded as RowBinary, bulk-inserted by one
# client) and then end to end (the same events through a pipeline worker, the durable
# spool and the uplink). Prints per-round lines and the medians:
#   figure e2e_events_per_s, figure clickhouse_ceiling_events_per_s, figure e2e_vs_ceiling
# Extra arguments after ROUNDS go to `tapline bench` (e.g. --ceiling-chunk 0).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rounds=${2:-3}
shift $(($# < 2 ? $# : 2))
tapline=$PWD/build/app/tapline
[ -x "$tapline" ] || scripts/build.sh release > /dev/null
work=$(mktemp -d /tmp/tapline-bench-e2e.XXXXXX)
trap 'scripts/clickhouse.sh stop "$work/ch" || true; rm -rf "$work"' EXIT
url=$(scripts/clickhouse.sh start "$work/ch")
pid=$(cat "$work/ch/pid" 2> /dev/null || true)
"$tapline" bench --e2e-only --clickhouse "$url" --e2e-events "$events" --rounds "$rounds" \
	${pid:+--clickhouse-pid "$pid"} "$@" 2> "$work/bench.err" || {
	cat "$work/bench.err" >&2
	exit 1
}
