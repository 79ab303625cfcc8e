#!/bin/bash
# `tapline run` with its own AF_XDP driver (capture.driver: xdp) on a veth end in one
# network namespace, the generator sending raw NDJSON from a second one. The XDP program
# takes only the telemetry port: while events are captured, ping, a TCP connection and
# UDP to another port of the same address must keep working through the kernel. Every
# valid event must arrive field by field, every malformed one be counted by reason, and
# the program's counters must account for every frame.
# Addresses are from 198.18.0.0/15 (benchmarking range); nothing is routed.
# usage: xdp_run.sh TAPLINE SRC_DIR [EVENTS] [RATE]
set -euo pipefail
tapline=$1
src=$(cd "$2" && pwd)
events=${3:-${TAPLINE_TEST_EVENTS:-20000}}
rate=${4:-${TAPLINE_TEST_RATE:-10000}}
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, XDP)"
	exit 77
fi
tag=$$
rxns=tlxr$tag
txns=tlxt$tag
rxif=tlxr$tag
work=$(mktemp -d /tmp/tapline-xdprun.XXXXXX)
pid=
spid=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null || true
	[ -n "$spid" ] && kill -9 "$spid" 2> /dev/null || true
	ip netns del "$rxns" 2> /dev/null || true
	ip netns del "$txns" 2> /dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

. "$src/scripts/netns.sh"
tl_veth_pair "$rxns" "$txns" "$rxif" tlxt$tag

cat > "$work/site.yaml" << YAML
extends: $src/tests/integration/site-afxdp.yaml
capture:
  driver: xdp
  xdp:
    interface: $rxif
YAML

start() {
	rm -f "$work/run.err"
	ip netns exec "$rxns" "$tapline" run --config "$work/site.yaml" \
		--dump-events "$work/dump" --spool "$work/spool" --no-uplink \
		> "$work/run.out" 2> "$work/run.err" &
	pid=$!
	for _ in $(seq 1 100); do
		grep -q "xdp worker polls" "$work/run.err" 2> /dev/null && break
		if ! kill -0 "$pid" 2> /dev/null; then
			cat "$work/run.err"
			echo "FAIL: tapline exited before capturing"
			exit 1
		fi
		sleep 0.1
	done
	grep -q "xdp worker polls" "$work/run.err" || { cat "$work/run.err"; echo "FAIL: no worker"; exit 1; }
}
# A run killed with SIGKILL leaves nothing that stops the next one from attaching.
start
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
rm -rf "$work/spool" "$work"/dump.*
start
grep -E "xdp: " "$work/run.err" | head -2

# The kernel keeps its traffic: a TCP service and a UDP socket on other ports.
ip netns exec "$rxns" python3 - "$work" << 'PY' &
import socket, sys, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("198.18.0.1", 8022)); t.listen(4)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("198.18.0.1", 5999))
def udp():
    while True:
        d, a = u.recvfrom(2048); u.sendto(b"udp:" + d, a)
threading.Thread(target=udp, daemon=True).start()
open(sys.argv[1] + "/srv.ready", "w").close()
while True:
    c, _ = t.accept(); d = c.recv(100); c.sendall(b"tcp:" + d); c.close()
PY
spid=$!
for _ in $(seq 1 50); do [ -f "$work/srv.ready" ] && break; sleep 0.1; done

ip netns exec "$txns" "$tapline" gen --data "${TAPLINE_DATA:-$src/../shared/data}" --seed 7 \
	--count "$events" --rate "$rate" --duration 60 --udp 198.18.0.1:5170 \
	--truth "$work/truth.ndjson" --summary "$work/summary.json" &
gpid=$!
# While the telemetry flows: ping, TCP and UDP to the same address, answered by the kernel.
ok_ping=$(ip netns exec "$txns" ping -c 5 -i 0.2 -W 2 198.18.0.1 | grep -c "bytes from" || true)
ok_tcp=$(ip netns exec "$txns" python3 -c '
import socket
s = socket.create_connection(("198.18.0.1", 8022), timeout=3); s.sendall(b"hello")
print(s.recv(100).decode())' || true)
ok_udp=$(ip netns exec "$txns" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"hello", ("198.18.0.1", 5999)); print(s.recvfrom(100)[0].decode())' || true)
wait "$gpid"
metrics=$(sed -n 's|.*metrics on http://\([0-9.]*\):[0-9]*/metrics (port \([0-9]*\)).*|\1:\2|p' \
	"$work/run.err" | tail -1)
ip netns exec "$rxns" curl -s "http://$metrics/metrics" > "$work/metrics.txt" || true
sleep 2
kill -TERM "$pid"
wait "$pid"
pid=
kill -9 "$spid" 2> /dev/null || true
wait "$spid" 2> /dev/null || true
spid=
echo "kernel traffic during capture: ping $ok_ping/5, tcp '$ok_tcp', udp '$ok_udp'"
grep -E '^tapline_xdp_frames_total' "$work/metrics.txt" || true
grep -E '^figure (events_|error_events|frames|reassembled|rx_)' "$work/run.out"
fail=0
[ "$ok_ping" = 5 ] || { echo "FAIL: ping through the XDP program"; fail=1; }
[ "$ok_tcp" = "tcp:hello" ] || { echo "FAIL: TCP through the XDP program"; fail=1; }
[ "$ok_udp" = "udp:hello" ] || { echo "FAIL: UDP to another port through the XDP program"; fail=1; }
# Every frame the pipeline saw was redirected by the program (and nothing else was).
redirected=$(awk '/action="redirected"/ { print $2 }' "$work/metrics.txt")
frames=$(awk '$1 == "figure" && $2 == "frames" { print $3 }' "$work/run.out")
echo "xdp redirected $redirected (at the scrape), pipeline frames $frames"
[ -n "$redirected" ] && [ "$redirected" -gt 0 ] || { echo "FAIL: no redirect counter"; fail=1; }
python3 "$src/tests/integration/compare_events.py" "$work/truth.ndjson" "$work/summary.json" \
	"$work/run.out" "$work"/dump.* || fail=1
exit $fail
