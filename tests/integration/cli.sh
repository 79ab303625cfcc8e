#!/bin/bash
# The command line as an operator meets it: help, exit codes, config check/show, and
# clear start-up errors when the capture device or hugepages are missing.
# usage: cli.sh TAPLINE SRC_DIR
set -uo pipefail
tapline=$1
src=$2
work=$(mktemp -d /tmp/tapline-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0

expect() { # expect CODE PATTERN -- command...
	local code=$1 pat=$2
	shift 3
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	if [ "$rc" != "$code" ]; then
		echo "FAIL: '$*' exited $rc, expected $code"; echo "$out" | head -20; fail=1; return
	fi
	if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
		echo "FAIL: '$*' output lacks /$pat/"; echo "$out" | head -20; fail=1; return
	fi
	echo "ok: $*"
}

expect 0 'commands:' -- "$tapline" --help
expect 2 'unknown command' -- "$tapline" frobnicate
expect 2 'usage' -- "$tapline"
expect 0 'usage: tapline run' -- "$tapline" run --help
expect 2 '--config is required' -- "$tapline" run
expect 0 'ok$' -- "$tapline" config check "$src/config/profiles/e6data-qpe.yaml"
expect 0 'ok$' -- "$tapline" config check "$src/tests/integration/site-replay.yaml"

# run --check probes the chosen capture driver and stops, saying why it cannot start.
cat > "$work/sock.yaml" << YAML
extends: e6data-qpe
capture:
  driver: socket
  workers: 2
  ports: ["25171"]
  socket:
    address: "127.0.0.1"
YAML
expect 0 'capture driver socket can start with 2 workers' -- \
	"$tapline" run --config "$work/sock.yaml" --check
sed 's/127.0.0.1/192.0.2.1/' "$work/sock.yaml" > "$work/sock-bad.yaml"
expect 1 'cannot start here' -- "$tapline" run --config "$work/sock-bad.yaml" --check
cat > "$work/xdp.yaml" << YAML
extends: e6data-qpe
capture:
  driver: xdp
  xdp:
    interface: tlnosuch0
YAML
expect 1 "no such interface 'tlnosuch0'" -- "$tapline" run --config "$work/xdp.yaml" --check

# config show after inheritance: the site's override and the vendor's schema both there,
# and the output is itself a valid profile that shows the same.
"$tapline" config show "$src/tests/integration/site-replay.yaml" > "$work/show.yaml"
expect 0 'max_event_size: 16KiB' -- cat "$work/show.yaml"
expect 0 'metadata.user_id' -- cat "$work/show.yaml"
"$tapline" config show "$work/show.yaml" > "$work/show2.yaml"
expect 0 '' -- cmp "$work/show.yaml" "$work/show2.yaml"

# Every problem reported with file:line:column, all of them, exit 2.
cat > "$work/bad.yaml" <<'YAML'
extends: e6data-qpe
capture:
  workerz: 2
  dpdk:
    memory: lots
pipeline:
  limits:
    max_depth: 0
YAML
expect 2 'bad.yaml:3:3: .*workerz' -- "$tapline" config check "$work/bad.yaml"
expect 2 'bad.yaml:5:13: ' -- "$tapline" config check "$work/bad.yaml"
expect 2 'bad.yaml:8:16: ' -- "$tapline" config check "$work/bad.yaml"
printf 'extends: no-such-profile\n' > "$work/orphan.yaml"
expect 2 'orphan.yaml:1:10: .*no-such-profile' -- "$tapline" config check "$work/orphan.yaml"
printf 'capture: [1, 2\n' > "$work/syntax.yaml"
expect 2 'syntax.yaml:[0-9]+:[0-9]+: ' -- "$tapline" config check "$work/syntax.yaml"
cat > "$work/schema.yaml" <<'YAML'
extends: e6data-qpe
schema:
  time_column: query_text
YAML
expect 2 'schema' -- "$tapline" config check "$work/schema.yaml"
# Patterns and routing rules are compiled by the check, as at start.
cat > "$work/regex.yaml" <<'YAML'
extends: spark
classify:
  patterns:
    - id: x.bad
      regex: '(unclosed'
      category: c
      severity: error
YAML
expect 2 "regex.yaml:4: pattern 'x.bad': does not compile" -- "$tapline" config check "$work/regex.yaml"
cat > "$work/route.yaml" <<'YAML'
extends: e6data-qpe
routing:
  rules:
    - name: r1
      field: database_name
      matches: '[z-a]'
      database: tenant_x
YAML
expect 2 "route.yaml:[0-9]+: routing rule 'r1'" -- "$tapline" config check "$work/route.yaml"

# The bench runs end to end and prints every figure it promises (no thresholds here:
# speed targets live in the bench output, not in tests).
"$tapline" bench --events 300 --seconds 0.05 > "$work/bench.out" 2>&1
for fig in extract_gbps extract_events_per_s extract_mtu1500_gbps json_extract_gbps \
	jansson_gbps simdjson_gbps extract_vs_jansson extract_vs_simdjson \
	extract_encode_events_per_s spool_events_per_s spool_mb_per_s; do
	expect 0 "^figure $fig [0-9.]+ " -- cat "$work/bench.out"
done

if [ "$(id -u)" = 0 ]; then
	# Start-up failures name the cause and what to do.
	cat > "$work/huge.yaml" <<'YAML'
extends: e6data-qpe
capture:
  workers: 1
  dpdk:
    no_huge: false
    vdevs: ["net_null0"]
YAML
	if [ "$(cat /proc/sys/vm/nr_hugepages)" = 0 ]; then
		expect 1 'hugepages' -- "$tapline" run --config "$work/huge.yaml"
	fi
	cat > "$work/nodev.yaml" <<'YAML'
extends: e6data-qpe
capture:
  workers: 1
  dpdk:
    no_huge: true
    log_level: error
metrics:
  listen: "127.0.0.1:0"
YAML
	expect 1 'no DPDK port' -- "$tapline" run --config "$work/nodev.yaml" --spool "$work/spool"
	expect 2 'x.pcap' -- "$tapline" run --config "$work/nodev.yaml" --pcap "$work/x.pcap" --once

	# net_null delivers zero-filled frames without end: all of them are counted as
	# non-IP, and SIGTERM stops the run cleanly with the counters printed. Meanwhile
	# /metrics and /healthz answer on the loopback port the profile names.
	mport=$((30000 + RANDOM % 20000))
	sed "s/127.0.0.1:0/127.0.0.1:$mport/" "$work/nodev.yaml" > "$work/metrics.yaml"
	"$tapline" run --config "$work/metrics.yaml" --vdev net_null0 --spool "$work/spool" \
		--no-uplink > "$work/null.out" 2>&1 &
	p=$!
	sleep 3
	expect 0 '^ok$' -- curl -sf "http://127.0.0.1:$mport/healthz"
	curl -sf "http://127.0.0.1:$mport/metrics" > "$work/metrics.txt"
	expect 0 'tapline_ignored_frames_total\{reason="ignored_non_ip"\} [1-9]' -- cat "$work/metrics.txt"
	expect 0 'tapline_rx_frames_total\{worker="0"\} [1-9]' -- cat "$work/metrics.txt"
	expect 0 'tapline_rejected_events_total\{reason="json_syntax"\} 0' -- cat "$work/metrics.txt"
	if command -v promtool > /dev/null; then
		expect 0 '' -- sh -c "promtool check metrics < '$work/metrics.txt'"
	fi
	expect 22 '' -- curl -sf "http://127.0.0.1:$mport/nope"
	kill -TERM $p
	if wait $p; then
		frames=$(awk '$2=="frames"{print $3}' "$work/null.out")
		ign=$(awk '$2=="ignored_non_ip"{print $3}' "$work/null.out")
		if [ -n "$frames" ] && [ "$frames" -gt 0 ] && [ "$frames" = "$ign" ]; then
			echo "ok: net_null run: $frames frames, all ignored_non_ip, clean stop"
		else
			echo "FAIL: net_null counters: frames=$frames ignored_non_ip=$ign"; fail=1
		fi
	else
		echo "FAIL: net_null run did not stop cleanly"; cat "$work/null.out"; fail=1
	fi
fi
exit $fail
