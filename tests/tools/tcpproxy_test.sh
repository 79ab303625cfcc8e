#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# tcpproxy_test.sh BIN: drive tests/tools/tcpproxy through every mode against real loopback
# servers (a Python HTTP server and a Python echo server) and check what a client sees.
# Exit 0 on success, 1 with a message on the first failure, 77 when python3/curl are missing.
# Loopback only; every wait is bounded and a watchdog ends the run after 120 s.
set -euo pipefail

BIN=${1:?usage: tcpproxy_test.sh TCPPROXY_BINARY}
[[ -x $BIN ]] || { echo "FAIL: $BIN is not executable" >&2; exit 1; }
if ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
	echo "SKIP: python3 and curl are needed" >&2
	exit 77
fi
# Sanitizer builds: a UBSan report must fail the run, not scroll by.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tcpproxy_test.XXXXXX")
pids=()
cleanup() {
	local p
	exec 7>&- 2>/dev/null || true
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.2
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted or timed out" >&2; exit 1' INT TERM
# Watchdog: its sleep dies with it, so nothing outlives the test.
bash -c 'sleep 120 & s=$!; trap "kill $s; exit 0" TERM; wait $s && kill -TERM '"$$" &
pids+=($!)

fail() {
	echo "FAIL: $*" >&2
	local f
	for f in "$tmp"/*.err; do
		[[ -s $f ]] && { echo "--- $f" >&2; cat "$f" >&2; }
	done
	exit 1
}
ok() { echo "ok - $*"; }

# wait_until TENTHS CMD...: run CMD every 0.1 s until it succeeds, at most TENTHS times.
wait_until() {
	local n=$1
	shift
	while ((n-- > 0)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}
has_line() { grep -q -- "$2" "$1" 2>/dev/null; }
state_is() { [[ $(cat "$1" 2>/dev/null) == "$2" ]]; }

# ---- target servers ---------------------------------------------------------------------
cat >"$tmp/servers.py" <<'EOF'
import http.server, socket, socketserver, sys, threading

log = open(sys.argv[1], "a", buffering=1)

class Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so one connection can outlive a switch

    def log_message(self, *args):
        pass

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        log.write(self.path + "\n")
        self.reply(b"tcpproxy-ok\n")

    def do_POST(self):
        log.write(self.path + "\n")
        n = int(self.headers.get("Content-Length", "0"))
        body = bytearray()
        while len(body) < n:
            chunk = self.rfile.read(n - len(body))
            if not chunk:
                break
            body += chunk
        self.reply(bytes(body))

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        first = b""
        while len(first) < 4:
            b = s.recv(4 - len(first))
            if not b:
                break
            first += b
        if first == b"RFIN":
            # The target half-closes first; the client keeps sending and the byte count
            # lands in the log, since this side can no longer answer.
            s.sendall(b"bye")
            s.shutdown(socket.SHUT_WR)
            n = 0
            while True:
                b = s.recv(65536)
                if not b:
                    break
                n += len(b)
            log.write("rfin %d\n" % n)
            return
        if first:
            s.sendall(first)
        while first:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)  # echo the half-close back

class HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Resets are the point of the exercise: one line, not a traceback.
        print("reset by", client_address, sys.exc_info()[1], file=sys.stderr)

class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

h = HttpServer(("127.0.0.1", 0), Http)
e = EchoServer(("127.0.0.1", 0), Echo)
threading.Thread(target=e.serve_forever, daemon=True).start()
print(h.server_address[1], e.server_address[1], flush=True)
h.serve_forever()
EOF

# Bulk data both ways at once, then a half-close: every byte and the FIN must come back.
cat >"$tmp/halfclose.py" <<'EOF'
import os, socket, sys, threading
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
s = socket.create_connection((host, port), timeout=20)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
t.join()
if bytes(got) != data:
    sys.exit("echo mismatch: sent %d bytes, got %d back" % (size, len(got)))
print("halfclose-ok", flush=True)
EOF

# The other direction: the target's FIN reaches the client while the client still sends.
cat >"$tmp/rfin.py" <<'EOF'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"RFIN")
got = b""
while True:
    b = s.recv(4096)  # a FIN that is not forwarded ends here in a timeout
    if not b:
        break
    got += b
if got != b"bye":
    sys.exit("expected 'bye' then EOF, got %r" % got)
s.sendall(b"x" * (1024 * 1024))
s.shutdown(socket.SHUT_WR)
print("rfin-ok", flush=True)
EOF

# Keep-alive clients that live through BLACKHOLE -> NORMAL: served, then silent, then RST.
# Commands arrive on stdin (a fifo); results go to stdout (a file the script polls).
cat >"$tmp/held.py" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
# busy sends a request while blackholed; idle sends nothing, so the kernel holds no unread
# bytes that would turn a plain close into a reset: only SO_LINGER 0 gives idle its RST.
busy = socket.create_connection((host, port), timeout=5)
idle = socket.create_connection((host, port), timeout=5)

def get(s, path):
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())

def response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        if not b:
            sys.exit("eof inside the response headers")
        buf += b
    head, _, body = buf.partition(b"\r\n\r\n")
    n = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
         if l.lower().startswith(b"content-length:")][0]
    while len(body) < n:
        body += s.recv(4096)
    return body

for s in (busy, idle):
    get(s, "/held-1")
    if response(s) != b"tcpproxy-ok\n":
        sys.exit("bad first response")
print("ready", flush=True)
if sys.stdin.readline().strip() != "silent":
    sys.exit("protocol")
get(busy, "/held-2")
busy.settimeout(1.0)
try:
    d = busy.recv(1)
    print("silent-fail %r" % d, flush=True)
    sys.exit(1)
except socket.timeout:
    print("silent-ok", flush=True)
if sys.stdin.readline().strip() != "reset":
    sys.exit("protocol")
for name, s in (("busy", busy), ("idle", idle)):
    s.settimeout(3.0)
    try:
        d = s.recv(1)
        print("reset-fail %s got %r" % (name, d), flush=True)
        sys.exit(1)
    except ConnectionResetError:
        pass
    except socket.timeout:
        print("reset-fail %s timeout" % name, flush=True)
        sys.exit(1)
print("reset-ok", flush=True)
EOF

python3 "$tmp/servers.py" "$tmp/requests.log" >"$tmp/servers.out" 2>"$tmp/servers.err" &
pids+=($!)
wait_until 100 has_line "$tmp/servers.out" '^[0-9]* [0-9]*$' || fail "servers did not start"
read -r http_port echo_port <"$tmp/servers.out"
ok "target servers on 127.0.0.1:$http_port (http) and :$echo_port (echo)"

# ---- helpers around one proxy instance ---------------------------------------------------
# start_proxy NAME ARGS...: sets ${NAME}_pid and ${NAME}_port.
p1_pid='' p1_port='' p2_port='' p3_pid='' p3_port=''
start_proxy() {
	local name=$1 line pid
	shift
	"$BIN" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	pids+=("$pid")
	wait_until 100 has_line "$tmp/$name.out" '^tcpproxy listening ' ||
		fail "$name: no 'tcpproxy listening' line"
	line=$(head -n1 "$tmp/$name.out")
	printf -v "${name}_pid" '%s' "$pid"
	printf -v "${name}_port" '%s' "${line##*:}"
}

# signal_mode PID STATEFILE SIGNAL MODE: signal, then wait until the proxy says it is done.
signal_mode() {
	kill "-$3" "$1"
	wait_until 50 state_is "$2" "$4" || fail "state file did not become '$4' after SIG$3"
}

# stop_proxy NAME: SIGTERM, exit 0, one counters line, no sanitizer report.
stop_proxy() {
	local name=$1 pid rc=0
	pid=${name}_pid
	pid=${!pid}
	kill -TERM "$pid"
	wait_until 100 has_line "$tmp/$name.out" '^tcpproxy connections ' ||
		fail "$name: no counters line after SIGTERM"
	wait "$pid" || rc=$?
	((rc == 0)) || fail "$name exited with $rc"
	! grep -q -E 'runtime error|AddressSanitizer|LeakSanitizer' "$tmp/$name.err" ||
		fail "$name: sanitizer report"
	counters=$(grep '^tcpproxy connections ' "$tmp/$name.out")
	[[ $counters =~ ^tcpproxy\ connections\ [0-9]+\ bytes_up\ [0-9]+\ bytes_down\ [0-9]+\ blackholed\ [0-9]+$ ]] ||
		fail "$name: malformed counters line '$counters'"
}

get_ok() {
	local body
	body=$(curl -sS --max-time 5 "$1") || fail "GET $1 failed (curl exit $?)"
	[[ $body == tcpproxy-ok ]] || fail "GET $1: unexpected body '$body'"
}

# try_curl URL: sets rc (curl's exit status) and curl_tc (TCP connect time, 0.000000 when
# no connection was made), for requests expected to fail within 2 s.
try_curl() {
	rc=0
	curl_tc=$(curl -s -o /dev/null --max-time 2 -w '%{time_connect}' "$1") || rc=$?
}

# ---- command line ------------------------------------------------------------------------
for bad in "--listen 127.0.0.1:0" "--target 127.0.0.1:1" \
	"--listen 127.0.0.1:0 --target 127.0.0.1:0" \
	"--listen localhost:0 --target 127.0.0.1:1" \
	"--listen 127.0.0.1:70000 --target 127.0.0.1:1" \
	"--listen [::1:0 --target 127.0.0.1:1" \
	"--listen 127.0.0.1:0 --target 127.0.0.1:1 --buf-size 12" \
	"--listen 127.0.0.1:0 --target 127.0.0.1:1 --max-conns 0" \
	"--listen 127.0.0.1:0 --target 127.0.0.1:1 extra"; do
	rc=0
	# shellcheck disable=SC2086 # word splitting is the point
	timeout 5 "$BIN" $bad >/dev/null 2>&1 || rc=$?
	((rc == 2)) || fail "'$bad' exited $rc, expected 2 (usage error)"
done
ok "bad command lines rejected with exit 2"

# ---- NORMAL: requests, bulk data, concurrency --------------------------------------------
st=$tmp/p1.state
start_proxy p1 --listen 127.0.0.1:0 --target "127.0.0.1:$http_port" \
	--pidfile "$tmp/p1.pid" --state-file "$st"
url=http://127.0.0.1:$p1_port
[[ $(cat "$tmp/p1.pid") == "$p1_pid" ]] || fail "pidfile does not hold the proxy pid"
state_is "$st" normal || fail "initial state is not 'normal'"
get_ok "$url/first"
ok "GET through the proxy on port $p1_port"

head -c $((3 * 1024 * 1024)) /dev/urandom >"$tmp/blob"
curl -sS --max-time 20 -H 'Expect:' --data-binary @"$tmp/blob" -o "$tmp/blob.back" \
	"$url/echo" || fail "POST 3 MiB failed"
cmp -s "$tmp/blob" "$tmp/blob.back" || fail "POST 3 MiB: echoed body differs"
ok "3 MiB POST echoed intact"

for i in $(seq 1 20); do
	curl -sS --max-time 10 -o "$tmp/par.$i" "$url/par$i" &
	cpids[i]=$!
done
for i in $(seq 1 20); do
	wait "${cpids[i]}" || fail "parallel GET $i failed"
	[[ $(cat "$tmp/par.$i") == tcpproxy-ok ]] || fail "parallel GET $i: bad body"
done
ok "20 parallel GETs"

# A second proxy, on IPv6 when the host has it, with 4 KiB buffers: ring wrap-around and
# back-pressure on every few segments, and the half-close forwarded both ways.
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
	p2_listen='[::1]:0' p2_host=::1
else
	p2_listen=127.0.0.1:0 p2_host=127.0.0.1
fi
start_proxy p2 --listen "$p2_listen" --target "127.0.0.1:$echo_port" --buf-size 4096
timeout 30 python3 "$tmp/halfclose.py" "$p2_host" "$p2_port" $((4 * 1024 * 1024)) \
	>"$tmp/halfclose.out" 2>"$tmp/halfclose.err" || fail "half-close echo through $p2_listen"
ok "4 MiB full-duplex echo with half-close through [$p2_host]:$p2_port (4 KiB buffers)"
timeout 30 python3 "$tmp/rfin.py" "$p2_host" "$p2_port" >"$tmp/rfin.out" 2>"$tmp/rfin.err" ||
	fail "target half-close not forwarded: $(cat "$tmp/rfin.err")"
wait_until 100 has_line "$tmp/requests.log" '^rfin ' || fail "rfin: target saw no EOF"
grep -q '^rfin 1048576$' "$tmp/requests.log" ||
	fail "rfin: target got $(grep '^rfin' "$tmp/requests.log") after its own FIN"
ok "target FIN forwarded while the client kept sending 1 MiB"
stop_proxy p2
read -r _ _ c2 _ up2 _ down2 _ bh2 <<<"$counters"
((c2 == 2 && up2 == 4194304 + 4 + 1048576 && down2 == 4194304 + 3 && bh2 == 0)) ||
	fail "p2 counters: $counters"
ok "p2 counters exact: $counters"

# ---- BLACKHOLE: held connections go silent, new ones connect but get nothing -------------
mkfifo "$tmp/held.cmd"
python3 "$tmp/held.py" 127.0.0.1 "$p1_port" <"$tmp/held.cmd" >"$tmp/held.out" \
	2>"$tmp/held.err" &
pids+=($!)
held_pid=$!
exec 7>"$tmp/held.cmd"
wait_until 50 has_line "$tmp/held.out" '^ready' || fail "keep-alive clients not served"

signal_mode "$p1_pid" "$st" USR1 blackhole
echo silent >&7
wait_until 50 has_line "$tmp/held.out" '^silent-' || fail "keep-alive clients stuck"
has_line "$tmp/held.out" '^silent-ok' || fail "held connection answered: $(cat "$tmp/held.out")"
ok "existing connections silent after SIGUSR1"

try_curl "$url/blackholed"
((rc == 28)) || fail "GET in blackhole: curl exit $rc, expected 28 (timeout)"
[[ $curl_tc != 0.000000 ]] || fail "GET in blackhole: TCP connect did not complete"
timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p1_port" ||
	fail "TCP connect refused or timed out in blackhole"
ok "new connection accepted (connect ${curl_tc}s) but never answered: curl exit 28"

# ---- NORMAL again: held connections reset at once, service back --------------------------
signal_mode "$p1_pid" "$st" USR2 normal
echo reset >&7
wait_until 50 has_line "$tmp/held.out" '^reset-' || fail "keep-alive client stuck after SIGUSR2"
has_line "$tmp/held.out" '^reset-ok' || fail "held connections not reset: $(cat "$tmp/held.out")"
wait "$held_pid" || fail "keep-alive client failed: $(cat "$tmp/held.err")"
exec 7>&-
get_ok "$url/after-blackhole"
ok "SIGUSR2: held connections (busy and idle) got RST, requests work again"
! grep -q -E '^/(held-2|blackholed)$' "$tmp/requests.log" ||
	fail "a request sent during the blackhole reached the target"
ok "nothing sent during the blackhole reached the target"

# ---- REFUSE: listener closed, then reopened on the same port -----------------------------
signal_mode "$p1_pid" "$st" HUP refuse
try_curl "$url/refused"
((rc == 7)) || fail "GET in refuse mode: curl exit $rc, expected 7 (connection refused)"
ok "SIGHUP: connection refused (curl exit 7)"
signal_mode "$p1_pid" "$st" USR1 blackhole
timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p1_port" ||
	fail "refuse -> blackhole: listener not reopened"
try_curl "$url/blackholed"
((rc == 28)) || fail "refuse -> blackhole: curl exit $rc, expected 28"
ok "refuse -> blackhole reopens the port and stays silent"
signal_mode "$p1_pid" "$st" HUP refuse
signal_mode "$p1_pid" "$st" USR2 normal
get_ok "$url/after-refuse"
ok "SIGUSR2 after refuse: same port $p1_port serves again"

# ---- target down: the client is reset, the proxy carries on ------------------------------
dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_proxy p3 --listen 127.0.0.1:0 --target "127.0.0.1:$dead_port"
try_curl "http://127.0.0.1:$p3_port/"
# The reset may land before or after curl sees its connect complete: 7, 52 or 56, all at
# once (a hang would be 28).
((rc == 7 || rc == 52 || rc == 56)) || fail "target down: curl exit $rc, expected 7, 52 or 56"
kill -0 "$p3_pid" || fail "proxy died when the target was down"
stop_proxy p3
[[ $counters == "tcpproxy connections 1 bytes_up 0 bytes_down 0 blackholed 0" ]] ||
	fail "p3 counters: $counters"
ok "target down: client reset at once (curl exit $rc), proxy alive"

# ---- SIGTERM: counters --------------------------------------------------------------------
stop_proxy p1
read -r _ _ c1 _ up1 _ down1 _ bh1 <<<"$counters"
# Accepted: first, echo, 20 parallel, 2 held, 2 blackholed GETs, 2 /dev/tcp probes,
# after-blackhole, after-refuse (the refused one never is) = 30.
((c1 == 30)) || fail "p1 connections $c1 != 30: $counters"
((up1 > 3 * 1024 * 1024 && down1 > 3 * 1024 * 1024)) || fail "p1 bytes: $counters"
# The 2 held keep-alive connections, 2 blackholed GETs, 2 /dev/tcp probes.
((bh1 == 6)) || fail "p1 blackholed $bh1 != 6: $counters"
[[ ! -e $tmp/p1.pid ]] || fail "pidfile left behind"
ok "SIGTERM: exit 0, $counters"
echo "PASS"
