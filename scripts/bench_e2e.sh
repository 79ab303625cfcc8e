#!/bin/bash
# End-to-end throughput into ClickHouse next to ClickHouse's own ceiling, side by side.
#
#   scripts/bench_e2e.sh [EVENTS [ROUNDS]]      (default 100000 events, 5 rounds)
#
# Starts a private ClickHouse on loopback and runs `tapline bench --e2e-only` against
# it twice. Each round measures the ceiling (the events encoded as RowBinary,
# bulk-inserted by one client) and then end to end (the same events through a pipeline
# worker, the durable spool and the uplink: LZ4 batches, streamed INSERTs, codec lz4).
#  1. ceiling = one bulk INSERT per table (ClickHouse parses it on one thread):
#       figure e2e_events_per_s, figure clickhouse_ceiling_events_per_s,
#       figure e2e_vs_ceiling
#  2. ceiling = each table's rows in 2 INSERTs at once (two server threads):
#       figure clickhouse_ceiling_2_inserts_events_per_s, figure e2e_vs_ceiling_2_inserts
# Both processes share this machine's cores: tapline's own CPU (extract, encode, LZ4,
# spool, uplink) competes with ClickHouse's in the end-to-end runs and not in the ceiling.
# Extra arguments after ROUNDS go to both runs of `tapline bench` (e.g. -c PROFILE).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rounds=${2:-5}
shift $(($# < 2 ? $# : 2))
tapline=$PWD/build/app/tapline
[ -x "$tapline" ] || scripts/build.sh release > /dev/null
work=$(mktemp -d /tmp/tapline-bench-e2e.XXXXXX)
trap 'scripts/clickhouse.sh stop "$work/ch" || true; rm -rf "$work"' EXIT
url=$(scripts/clickhouse.sh start "$work/ch")
pid=$(cat "$work/ch/pid" 2> /dev/null || true)
for parallel in 1 2; do
	"$tapline" bench --e2e-only --clickhouse "$url" --e2e-events "$events" \
		--rounds "$rounds" --ceiling-parallel "$parallel" \
		${pid:+--clickhouse-pid "$pid"} "$@" 2> "$work/bench.err" || {
		cat "$work/bench.err" >&2
		exit 1
	}
done
