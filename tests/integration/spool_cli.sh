#!/bin/bash
# `tapline spool stat|dump|replay` on a real spool: a generated capture (5 % malformed
# events) is replayed through DPDK net_pcap with --no-uplink so the spool keeps every
# batch; stat's per-table rows must equal the generator's summary, dump must show one line
# per record and, with --rows, every valid event's (query_id, event time) exactly once;
# replay must deliver everything to a real ClickHouse and leave the spool empty. Also:
# clear failures for a missing folder, a damaged data file and a spool held by another
# writer.
# usage: spool_cli.sh TAPLINE SRC_DIR [EVENTS]
set -euo pipefail
tapline=$1
src=$2
events=${3:-3000}
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (DPDK)"
	exit 77
fi
work=$(mktemp -d /tmp/tapline-spoolcli.XXXXXX)
bg=
cleanup() {
	[ -n "$bg" ] && kill -TERM "$bg" 2>/dev/null && wait "$bg" 2>/dev/null
	"$src/scripts/clickhouse.sh" stop "$work/ch" || true
	rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
site="$src/tests/integration/site-replay.yaml"
fail=0

expect() { # expect CODE PATTERN -- command...
	local code=$1 pat=$2
	shift 3
	local out rc
	out=$("$@" 2>&1) && rc=0 || rc=$?
	if [ "$rc" != "$code" ]; then
		echo "FAIL: '$*' exited $rc, expected $code"; echo "$out" | head -20; fail=1; return
	fi
	if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
		echo "FAIL: '$*' output lacks /$pat/"; echo "$out" | head -20; fail=1; return
	fi
	echo "ok: $*"
}

# --- usage and failures that need no spool ---
expect 0 'stat.dump.replay' -- "$tapline" spool --help
expect 2 'usage: tapline spool' -- "$tapline" spool
expect 2 'unknown command' -- "$tapline" spool frob
expect 0 'usage: tapline spool stat' -- "$tapline" spool stat --help
expect 0 'usage: tapline spool dump' -- "$tapline" spool dump --help
expect 0 'usage: tapline spool replay' -- "$tapline" spool replay --help
expect 2 'give --config or --spool' -- "$tapline" spool stat
expect 2 '--rows does not apply to stat' -- "$tapline" spool stat --spool "$work" --rows
expect 2 '--rows needs --config' -- "$tapline" spool dump --spool "$work" --rows
expect 2 '--config is required' -- "$tapline" spool replay --spool "$work"
expect 1 'no such folder' -- "$tapline" spool stat --spool /nonexistent/tapline-spool
expect 1 'no spool in this folder' -- "$tapline" spool dump --spool "$work"
mkdir -p "$work/garbage"
head -c 65536 /dev/urandom > "$work/garbage/data.mdb"
expect 1 'is damaged' -- "$tapline" spool stat --spool "$work/garbage"

# --- a spool that keeps everything ---
"$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 11 --count "$events" \
	--malformed-share 0.05 --max-event-size 16KiB --max-string 12KiB \
	--pcap "$work/cap.pcap" --shards 1 --truth "$work/truth.ndjson" \
	--summary "$work/summary.json" > /dev/null
"$tapline" run --config "$site" --pcap "$work/cap.pcap" --once --idle-timeout 20s \
	--spool "$work/spool" --no-uplink > "$work/run.out"

"$tapline" spool stat --config "$site" --spool "$work/spool" > "$work/stat.out"
cat "$work/stat.out"
"$tapline" spool dump --spool "$work/spool" > "$work/dump.out"
"$tapline" spool dump --config "$site" --spool "$work/spool" --rows > "$work/rows.out"
"$tapline" spool dump --spool "$work/spool" --from 2 --count 1 > "$work/one.out"
"$tapline" spool dump --spool "$work/spool" --quarantine > "$work/quar.out"

python3 - "$work" <<'PY'
import json, sys
from collections import Counter
w = sys.argv[1]
want = json.load(open(f"{w}/summary.json"))
figs = {}
for l in open(f"{w}/stat.out"):
    if l.startswith("figure "):
        f = l.split()
        figs[f[1]] = float(f[2])
problems = []
def need(name, value):
    if figs.get(name) != value:
        problems.append(f"stat: {name} = {figs.get(name)}, expected {value}")
sink, err, dead = (figs.get(f"spool_rows_{t}", -1)
                   for t in ("sink_output", "error_events", "dead_letter"))
if sink + err != want["events_valid"]:
    problems.append(f"stat: {sink + err} valid rows spooled, {want['events_valid']} sent")
need("spool_rows_error_events", want["error_events"])
need("spool_rows_dead_letter", want["events_rejected"])
need("spool_quarantined_records", 0)
need("spool_invalid_batches", 0)
records = figs.get("spool_records", 0)
if records < 3:
    problems.append(f"stat: {records} records: expected at least one per table")
batches = sum(figs.get(f"spool_batches_{t}", 0)
              for t in ("sink_output", "error_events", "dead_letter", "rollups"))
if batches != records:
    problems.append(f"stat: {batches} batches in {records} records")
if figs.get("spool_next_key", 0) <= records:
    problems.append(f"stat: next key {figs.get('spool_next_key')} <= {records} records")

lines = open(f"{w}/dump.out").read().splitlines()
if len(lines) != records or not all(l.startswith("key=") for l in lines):
    problems.append(f"dump: {len(lines)} lines for {records} records")
per_table = Counter()
for l in lines:
    kv = dict(x.split("=", 1) for x in l.split() if "=" in x)
    per_table[kv.get("table")] += int(kv.get("rows", 0))
    if kv.get("compression") not in ("lz4", "gzip", "none"):
        problems.append(f"dump: bad line {l[:120]}")
for t in ("sink_output", "error_events", "dead_letter"):
    if per_table[t] != figs.get(f"spool_rows_{t}"):
        problems.append(f"dump: {per_table[t]} {t} rows, stat says {figs.get(f'spool_rows_{t}')}")
one = open(f"{w}/one.out").read().splitlines()
if len(one) != 1 or not one[0].startswith("key=2 "):
    problems.append(f"dump --from 2 --count 1: {one}")
if open(f"{w}/quar.out").read() != "":
    problems.append("dump --quarantine: not empty")

# --rows: every valid event exactly once, in its table, with its event time.
rows = Counter()
n_rows = 0
ru_rows = ru_events = ru_errors = 0
table = None
for l in open(f"{w}/rows.out"):
    if l.startswith("key="):
        table = dict(x.split("=", 1) for x in l.split() if "=" in x)["table"]
        continue
    r = json.loads(l)
    n_rows += 1
    if table == "rollups":
        # the windows emitted at shutdown: they count the valid rows once more
        ru_rows += 1
        ru_events += int(r["count"])
        ru_errors += int(r["errors"])
    elif table != "dead_letter":
        rows[(table, r["query_id"], r["event_time_ns"])] += 1
    elif not r["reason"] or r["reason"] == "ok":
        problems.append(f"dump --rows: dead_letter row without a reason: {l[:120]}")
truth = Counter()
for l in open(f"{w}/truth.ndjson"):
    e = json.loads(l)
    if e["valid"]:
        t = "error_events" if e["is_error"] else "sink_output"
        truth[(t, e["cols"]["query_id"], e["cols"]["event_time"])] += 1
if n_rows - ru_rows != sink + err + dead:
    problems.append(f"dump --rows: {n_rows - ru_rows} rows, stat says {sink + err + dead}")
if (ru_events, ru_errors) != (sink + err, err):
    problems.append(f"dump --rows: rollups count {ru_events} events, {ru_errors} errors; "
                    f"the rows are {sink + err}, {err}")
if rows != truth:
    problems.append(f"dump --rows: {sum((truth - rows).values())} valid events missing, "
                    f"{sum((rows - truth).values())} unexpected")
known = next(k[1] for k in truth if k[0] == "sink_output")
if known not in open(f"{w}/rows.out").read():
    problems.append(f"dump --rows: query_id {known} not shown")
open(f"{w}/known_qid", "w").write(known)
for p in problems:
    print("FAIL:", p)
print(f"spool stat/dump: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY

# --- replay into ClickHouse ---
url=$("$src/scripts/clickhouse.sh" start "$work/ch")
q() { curl -sf --data-binary "$1" "$url"; }

# A writer holds the spool (a replay that cannot reach its server): a second replay is
# refused with a clear message, and SIGINT ends the first promptly.
"$tapline" spool replay --config "$site" --spool "$work/spool" \
	--clickhouse "http://127.0.0.1:9/?database=tl_spool_none" --timeout 30s \
	> "$work/held.out" 2> "$work/held.err" &
bg=$!
for _ in $(seq 1 100); do # it logs this once the spool is open
	grep -q 'to deliver' "$work/held.err" && break
	sleep 0.1
done
rc=0
"$tapline" spool replay --config "$site" --spool "$work/spool" --timeout 1s \
	> /dev/null 2> "$work/busy.err" || rc=$?
if [ "$rc" = 1 ] && grep -q 'held by a running appliance' "$work/busy.err"; then
	echo "ok: a second replay is refused while a writer holds the spool"
else
	echo "FAIL: a held spool was not refused:"; cat "$work/busy.err"; fail=1
fi
kill -INT "$bg"
rc=0
wait "$bg" || rc=$?
bg=
if [ "$rc" != 1 ] || ! grep -q 'interrupted' "$work/held.err"; then
	echo "FAIL: interrupted replay exited $rc"; cat "$work/held.err"; fail=1
else
	echo "ok: SIGINT ends a replay (exit 1, spool kept)"
fi

"$tapline" spool replay --config "$site" --spool "$work/spool" \
	--clickhouse "${url}?database=tl_spool_test" --timeout 60s > "$work/replay.out"
cat "$work/replay.out"
"$tapline" spool stat --spool "$work/spool" > "$work/stat2.out"

sink=$(q "SELECT count() FROM tl_spool_test.sink_output")
err=$(q "SELECT count() FROM tl_spool_test.error_events")
dead=$(q "SELECT count() FROM tl_spool_test.dead_letter")
known=$(q "SELECT count() FROM tl_spool_test.sink_output WHERE query_id = '$(cat "$work/known_qid")'")
echo "clickhouse: sink_output $sink error_events $err dead_letter $dead known_query_id $known"
python3 - "$work" "$sink" "$err" "$dead" "$known" <<'PY'
import json, sys
w = sys.argv[1]
sink, err, dead, known = map(int, sys.argv[2:6])
want = json.load(open(f"{w}/summary.json"))
def figs(path):
    return {l.split()[1]: int(float(l.split()[2])) for l in open(path) if l.startswith("figure ")}
rep, st = figs(f"{w}/replay.out"), figs(f"{w}/stat2.out")
problems = []
if sink + err != want["events_valid"]:
    problems.append(f"valid events: {sink + err} landed, {want['events_valid']} sent")
if err != want["error_events"]:
    problems.append(f"error events: {err} landed, {want['error_events']} sent")
if dead != want["events_rejected"]:
    problems.append(f"dead letters: {dead} landed, {want['events_rejected']} rejected")
for t, n in (("sink_output", sink), ("error_events", err), ("dead_letter", dead)):
    if rep.get(f"delivered_rows_{t}") != n:
        problems.append(f"replay: delivered_rows_{t} {rep.get(f'delivered_rows_{t}')}, {n} landed")
if rep.get("quarantined_rows") != 0:
    problems.append(f"replay: {rep.get('quarantined_rows')} rows quarantined")
if known < 1:
    problems.append("the known query_id is not in sink_output")
if st.get("spool_records") != 0:
    problems.append(f"spool stat after replay: {st.get('spool_records')} records left")
for p in problems:
    print("FAIL:", p)
print(f"spool replay: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
# An empty spool replays to success at once.
expect 0 'spool_records 0' -- "$tapline" spool replay --config "$site" --spool "$work/spool" \
	--clickhouse "${url}?database=tl_spool_test" --timeout 10s
exit $fail
