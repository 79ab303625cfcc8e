#!/bin/bash
# Capture to ClickHouse, end to end: a generated capture (fragments, VLANs, IPv6, 5 %
# malformed events) is replayed through DPDK net_pcap on two workers into the LMDB spool,
# and the uplink delivers it to a real ClickHouse started here. `run --once` returns only
# when everything is delivered; then every table's rows are counted against the
# generator's summary, event ids must be unique, and the spool must be empty.
# usage: clickhouse_replay.sh TAPLINE SRC_DIR [EVENTS]
set -euo pipefail
tapline=$1
src=$2
events=${3:-20000}
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (DPDK)"
	exit 77
fi
work=$(mktemp -d /tmp/tapline-chreplay.XXXXXX)
cleanup() {
	"$src/scripts/clickhouse.sh" stop "$work/ch" || true
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

url=$("$src/scripts/clickhouse.sh" start "$work/ch")
q() { curl -sf --data-binary "$1" "$url"; }

"$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 11 --count "$events" \
	--malformed-share 0.05 --max-event-size 16KiB --max-string 12KiB \
	--pcap "$work/cap.pcap" --shards 2 --summary "$work/summary.json" > /dev/null

"$tapline" run --config "$src/tests/integration/site-replay.yaml" \
	--pcap "$work/cap-0.pcap,$work/cap-1.pcap" --once --idle-timeout 20s \
	--spool "$work/spool" --clickhouse "${url}?database=tl_test" \
	--deliver-timeout 120s > "$work/run.out"
grep -E '^figure ' "$work/run.out" | awk '$3 != 0'

sink=$(q "SELECT count() FROM tl_test.sink_output")
err=$(q "SELECT count() FROM tl_test.error_events")
dead=$(q "SELECT count() FROM tl_test.dead_letter")
uniq=$(q "SELECT uniqExact(event_id) FROM (SELECT event_id FROM tl_test.sink_output UNION ALL SELECT event_id FROM tl_test.error_events)")
errflag=$(q "SELECT count() FROM tl_test.error_events WHERE error IS NULL OR error = ''")
# Classification: rows carry the ids of the profile's patterns that matched, every id is
# in the error_patterns dimension table, and the worker's count agrees with the rows.
matched=$(q "SELECT (SELECT countIf(notEmpty(matched_patterns)) FROM tl_test.sink_output) + (SELECT countIf(notEmpty(matched_patterns)) FROM tl_test.error_events)")
npat=$(q "SELECT count() FROM tl_test.error_patterns")
unknown=$(q "SELECT count() FROM tl_test.error_events ARRAY JOIN matched_patterns AS id WHERE id NOT IN (SELECT id FROM tl_test.error_patterns)")
echo "clickhouse: sink_output $sink error_events $err dead_letter $dead unique_event_ids $uniq"
echo "clickhouse: rows with matched patterns $matched, error_patterns $npat, unknown ids $unknown"
q "SELECT id, count() AS n, any(p.category), any(p.severity) FROM tl_test.error_events ARRAY JOIN matched_patterns AS id ANY LEFT JOIN (SELECT id, category, severity FROM tl_test.error_patterns) AS p USING id GROUP BY id ORDER BY n DESC LIMIT 5"
python3 - "$work/summary.json" "$sink" "$err" "$dead" "$uniq" "$errflag" "$work/run.out" \
	"$matched" "$npat" "$unknown" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))
sink, err, dead, uniq, errflag = map(int, sys.argv[2:7])
matched, npat, unknown = map(int, sys.argv[8:11])
figs = {l.split()[1]: int(l.split()[2]) for l in open(sys.argv[7]) if l.startswith("figure ")}
problems = []
if sink + err != want["events_valid"]:
    problems.append(f"valid events: {sink + err} landed, {want['events_valid']} sent")
if err != want["error_events"]:
    problems.append(f"error events: {err} landed, {want['error_events']} sent")
if dead != want["events_rejected"]:
    problems.append(f"dead letters: {dead} landed, {want['events_rejected']} rejected")
if uniq != sink + err:
    problems.append(f"event ids: {uniq} unique of {sink + err}: duplicates landed")
if errflag:
    problems.append(f"{errflag} rows in error_events without an error")
if matched == 0 or matched != figs.get("events_matched"):
    problems.append(f"{matched} rows with matched patterns, the workers matched "
                    f"{figs.get('events_matched')}")
if npat == 0 or unknown:
    problems.append(f"error_patterns: {npat} patterns, {unknown} matched ids not among them")
if figs.get("spool_records") != 0:
    problems.append(f"spool still holds {figs.get('spool_records')} records")
for p in problems:
    print("FAIL:", p)
print(f"{len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY

# The end-to-end benchmark against the same server: it checks its own row counts in
# ClickHouse (a missing row fails it) and must print its figures. No speed is asserted.
"$tapline" bench --e2e-only --clickhouse "$url" --e2e-events 5000 --rounds 1 \
	> "$work/bench.out" 2> "$work/bench.err" || { cat "$work/bench.err"; exit 1; }
for f in e2e_events_per_s clickhouse_ceiling_events_per_s e2e_vs_ceiling; do
	grep -q "^figure $f [0-9.]* " "$work/bench.out" || { echo "FAIL: no figure $f"; exit 1; }
done
grep "^figure e2e" "$work/bench.out"
