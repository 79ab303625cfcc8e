#!/bin/bash
# A capture of 50,000 generated events (mixed sizes, IPv4/IPv6, VLAN/QinQ, fragmented
# datagrams, 5 % malformed events, packet-level faults) replayed through DPDK net_pcap on
# two worker lcores must yield exactly the valid events, field by field, and count every
# malformed one under its reason.
# usage: pcap_replay.sh TAPLINE SRC_DIR [EVENTS]
set -euo pipefail
tapline=$1
src=$2
events=${3:-50000}
work=$(mktemp -d /tmp/tapline-replay.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 42 --count "$events" \
	--malformed-share 0.05 --packet-fault-share 0.01 \
	--max-event-size 16KiB --max-string 12KiB \
	--pcap "$work/cap.pcap" --shards 2 \
	--truth "$work/truth.ndjson" --summary "$work/summary.json" > "$work/gen.out"
cat "$work/gen.out"

"$tapline" run --config "$src/tests/integration/site-replay.yaml" \
	--pcap "$work/cap-0.pcap,$work/cap-1.pcap" --once --idle-timeout 20s \
	--dump-events "$work/dump" --spool "$work/spool" --no-uplink > "$work/run.out"
grep -E '^figure (events_|error_events|rejected_|frames|reassembled)' "$work/run.out" | grep -v ' 0$' || true

python3 "$src/tests/integration/compare_events.py" "$work/truth.ndjson" "$work/summary.json" \
	"$work/run.out" "$work"/dump.*
