#!/bin/bash
# Live reload under load: tapline captures on a DPDK net_af_xdp port (veth, namespaces)
# and delivers to a ClickHouse running in the same namespace, while its profile is
# replaced 20 times (written aside and renamed into place, as config management does),
# alternating between two pattern sets that tag every event with reload.a or reload.b.
# Halfway a broken profile (a regex that does not compile) is written: it must be
# rejected with the pattern's file:line while the running generation goes on; a SIGHUP
# (the file unchanged) forces one more. Each reload is confirmed in the log before the
# next, all of them while the generator is still sending.
# Then: every event the generator sent lands exactly once (no packet lost across the
# reloads), every valid row carries exactly one of the two tags, both tags occur, and
# error_patterns holds the last pattern set.
# Addresses are from 198.18.0.0/15 (benchmarking range); nothing is routed.
# usage: reload_load.sh TAPLINE SRC_DIR [RATE]
set -euo pipefail
tapline=$1
src=$2
# Within what one worker of this build sustains on a veth with no loss (the ASan build is
# slower: TAPLINE_TEST_RATE lowers it).
rate=${3:-${TAPLINE_TEST_RATE:-8000}}
seconds=8
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, AF_XDP)"
	exit 77
fi
tag=$$
rxns=tlrl$tag
txns=tltl$tag
work=$(mktemp -d /tmp/tapline-reload.XXXXXX)
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
tl_veth_pair "$rxns" "$txns" tlr$tag tlt$tag
url=$(ip netns exec "$rxns" "$src/scripts/clickhouse.sh" start "$work/ch")
q() { ip netns exec "$rxns" curl -sSf --data-binary "$1" "$url"; }

# profile VARIANT: a (tags reload.a), b (reload.b), bad (a regex that does not compile)
profile() {
	local id=$1 regex='.'
	[ "$id" = bad ] && { id=b; regex='(unclosed'; }
	cat > "$work/site.yaml.tmp" <<YAML
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
  database: tl_reload
classify:
  cache_dir: $work/hscache
  patterns:
    - id: reload.$id
      regex: '$regex'
      fields: [query_id]
      category: reload
      severity: info
      effect: tag
      cause: "pattern set $id"
      action: "none"
YAML
	mv "$work/site.yaml.tmp" "$work/site.yaml"
}

published() { grep -c "generation [0-9]* published" "$work/run.err" 2> /dev/null || true; }
wait_for() { # PATTERN-COUNT-FN WANT WHAT
	for _ in $(seq 1 200); do
		[ "$($1)" -ge "$2" ] && return 0
		sleep 0.05
	done
	echo "FAIL: $3"
	tail -20 "$work/run.err"
	exit 1
}

profile a
ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
	--vdev "net_af_xdp0,iface=tlr$tag,start_queue=0,queue_count=1,busy_budget=0" \
	--spool "$work/spool" --clickhouse "$url" > "$work/run.out" 2> "$work/run.err" &
pid=$!
for _ in $(seq 1 100); do
	grep -q "polls port" "$work/run.err" 2> /dev/null && break
	kill -0 "$pid" 2> /dev/null || { cat "$work/run.err"; echo "FAIL: tapline exited"; exit 1; }
	sleep 0.1
done
grep -q "polls port" "$work/run.err" || { cat "$work/run.err"; echo "FAIL: no worker"; exit 1; }

ip netns exec "$txns" "$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 9 \
	--count $((rate * seconds)) --rate "$rate" --duration 60 --udp 198.18.0.1:5170 \
	--summary "$work/summary.json" > "$work/gen.out" &
gpid=$!
sleep 0.5

rejected() { grep -c "rejected" "$work/run.err" 2> /dev/null || true; }
for i in $(seq 1 20); do
	if [ "$i" = 10 ]; then
		profile bad
		wait_for rejected 1 "the broken profile was not rejected"
	fi
	profile $([ $((i % 2)) = 1 ] && echo b || echo a)
	wait_for published "$i" "reload $i was not published"
done
kill -HUP "$pid"
wait_for published 21 "SIGHUP did not reload the profile"
if ! kill -0 "$gpid" 2> /dev/null; then
	echo "FAIL: the generator finished before the 21 reloads: they did not happen under load"
	exit 1
fi
echo "21 reloads published (20 file changes, 1 SIGHUP), 1 rejected, all while the generator was sending"
grep -A1 "rejected" "$work/run.err" | head -2
grep -q "site.yaml:[0-9]*: pattern 'reload.b': does not compile" "$work/run.err" ||
	{ echo "FAIL: the rejection does not name the pattern and its file:line"; exit 1; }
wait "$gpid"
gpid=

# Everything the generator sent reaches ClickHouse before tapline stops.
read -r want_valid want_rejected < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["events_valid"], s["events_rejected"])' "$work/summary.json")
count() {
	q "SELECT (SELECT count() FROM tl_reload.sink_output) + (SELECT count() FROM tl_reload.error_events)" 2> /dev/null || echo 0
}
for _ in $(seq 1 120); do
	[ "$(count)" -ge "$want_valid" ] && break
	sleep 0.5
done
kill -TERM "$pid"
wait "$pid" || { tail -20 "$work/run.err"; echo "FAIL: tapline failed"; exit 1; }
pid=

valid=$(count)
dead=$(q "SELECT count() FROM tl_reload.dead_letter")
uniq=$(q "SELECT uniqExact(event_id) FROM (SELECT event_id FROM tl_reload.sink_output UNION ALL SELECT event_id FROM tl_reload.error_events)")
tags=$(q "SELECT countIf(has(matched_patterns, 'reload.a')), countIf(has(matched_patterns, 'reload.b')), countIf(length(matched_patterns) != 1) FROM (SELECT matched_patterns FROM tl_reload.sink_output UNION ALL SELECT matched_patterns FROM tl_reload.error_events)" | tr '\t' ' ')
read -r tag_a tag_b untagged <<< "$tags"
last=$(q "SELECT groupArray(id) FROM tl_reload.error_patterns")
echo "sent: valid $want_valid rejected $want_rejected; landed: valid $valid (unique ids $uniq) dead_letter $dead"
echo "tags: reload.a $tag_a reload.b $tag_b, rows without exactly one tag $untagged; error_patterns $last"
grep -E "^figure (events_valid|events_rejected|rx_missed|rx_nombuf) " "$work/run.out" || true
fail=0
[ "$valid" = "$want_valid" ] || { echo "FAIL: $valid of $want_valid valid events landed"; fail=1; }
[ "$dead" = "$want_rejected" ] || { echo "FAIL: $dead of $want_rejected dead letters"; fail=1; }
[ "$uniq" = "$valid" ] || { echo "FAIL: duplicate event ids"; fail=1; }
[ "$untagged" = 0 ] || { echo "FAIL: $untagged rows without exactly one tag"; fail=1; }
[ "$tag_a" -gt 0 ] && [ "$tag_b" -gt 0 ] || { echo "FAIL: one pattern set never tagged"; fail=1; }
[ "$last" = "['reload.a']" ] || { echo "FAIL: error_patterns is $last, not the last set"; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "reload under load: ok"
