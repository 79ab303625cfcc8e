#!/bin/bash
# Capture drivers side by side (issue 6): the highest zero-loss event rate and the CPU per
# million events of the socket driver, tapline's own AF_XDP driver (xdp) and DPDK's
# net_af_xdp PMD (dpdk), on one veth pair, driven by one AF_XDP sender.
#
#   sudo scripts/bench_capture.sh
#
# Prints (values also explained below):
#   figure socket_zero_loss_events_per_s V events/s   (and xdp_, dpdk_af_xdp_)
#   figure socket_cpu_s_per_m V s                     (and xdp_, dpdk_af_xdp_)
#   figure xdp_vs_socket V x, figure dpdk_af_xdp_vs_socket V x   (zero-loss rate ratios)
# and, to judge them by: sender_max_events_per_s, common_rate_events_per_s,
# <driver>_cpu_s_per_m_at_max, <driver>_sender_limited,
# xdp_cpu_vs_socket, dpdk_af_xdp_cpu_vs_socket.
#
# Set-up. Two namespaces joined by one veth pair (scripts/netns.sh: 198.18.0.1/30 for
# tapline, 198.18.0.2/30 for the sender; nothing routed), removed at exit. The corpus is
# `tapline gen --pcap` with the default event mix (1-5 KB events, several NDJSON events
# per datagram of up to 8 KiB, 10% failed queries; IPv4 only, no VLAN, no noise, no
# malformed events, so every event sent must come out valid). Datagrams larger than the
# 1500-byte MTU travel as IPv4 fragments (about 2.3 frames per event): the kernel
# reassembles them for the socket driver, tapline's own reassembly does for xdp and dpdk.
# tests/tools/afxdp_tx (build/tests/afxdp_tx) replays the file in copy mode from the
# sender's namespace with the destination MAC set to tapline's interface, paced by a
# token bucket in events per second, looping over the file (each pass shifts the IPv4
# identifications); every run stops on a datagram boundary and reports the events the
# kernel took from its TX ring. tapline runs with one worker, --no-uplink, a fresh spool
# per driver on tmpfs (/dev/shm when there, so the disk is not what is measured; fsyncs
# still happen) and a generated site profile that extends e6data-qpe with raw dedup off:
# the looped corpus repeats its events, and dedup would drop repeats before the spool,
# making every pass after the first cheaper than real traffic. Driver settings are the
# shipped defaults, and for dpdk those of tests/integration/site-afxdp.yaml (no
# hugepages, 4096 RX descriptors, vdev net_af_xdp), except the busy-polling budget
# (BENCH_BUSY: socket and dpdk 64 like xdp's default). The receiving
# namespace's IPv4 reassembly timeout is lowered to tapline's 2 s so a lossy step cannot
# leave fragments behind that pair up with the next step's.
#
# CPUs: tapline (all its threads) is pinned to the last CPU, the sender to the first: the
# receiver's whole user-space work has one core, so a worker that spins (dpdk) shares it
# with tapline's own spool writer, as the worker that sleeps when idle (socket, xdp) does.
# The receiving side's kernel work is put on that core too, and counted, as a NIC's
# interrupt and softirq would be (BENCH_RX_KERNEL, below): the XDP program and the copy
# into the AF_XDP ring for xdp and dpdk; building the skb, IP reassembly and the UDP
# socket queue for socket. Frames reach tapline's interface as a NIC's driver would see
# them, raw, with no skb built by the sender (BENCH_WIRE, below). Every driver uses
# preferred busy polling (BENCH_BUSY, below). The sender's CPU also runs the relay.
#
# Zero loss, per step: afxdp_tx sends at rate R for BENCH_STEP_S seconds; once tapline's
# counters stop moving, the step passes if the events tapline counted
# (tapline_events_total, valid + rejected, from its metrics endpoint) equal the events
# the sender had completed, none was rejected and the sender achieved at least 98% of R
# (the driver's missed counter, tapline_nic_missed_total: socket buffer overflows,
# AF_XDP ring drops, PMD misses, is logged with each step). Search: rates rise by x1.6 from
# BENCH_START_RATE until a step fails, then bisect between the last pass and the first
# failure down to 3% (or BENCH_BISECT steps). This machine is shared: a step that fails
# is run again (at most 3 runs) when more than 10% of tapline's CPU or of the sender's
# went to other processes ("foreign rx/tx" in the step log: /proc/stat of that CPU minus
# tapline's ticks, resp. user ticks minus the sender's own user time). A rate the sender
# still cannot reach undisturbed means the sender (with the kernel work above) is the
# limit: the search stops there and <driver>_sender_limited is 1 (the figure is then a
# lower bound). Before starting, and before each driver, the script waits (bounded) for
# the machine to be idle.
# sender_max_events_per_s is the sender alone, unpaced, against an XDP_DROP program on
# tapline's interface (the cheapest receiver a veth has): if a driver's figure comes
# close to it, the sender, not the driver, was the limit.
#
# CPU per million events: tapline's utime + stime (/proc/PID/stat, every thread) plus its
# interface's NAPI thread's, over the sending window of a step, divided by the events it
# counted. A busy-polling driver (DPDK
# spins on its RX queue) costs a whole core whatever the rate, so a per-event figure
# depends on the rate it is taken at. The headline <driver>_cpu_s_per_m is measured for
# every driver at the same offered load: the common rate, the highest rate all three
# sustained (their smallest zero-loss rate, rounded down to 1000 events/s), in a second
# pass of BENCH_CPU_S seconds with a fresh tapline each. There the busy poller pays for
# its idle polling, which is what it costs at that load. <driver>_cpu_s_per_m_at_max is
# the same at each driver's own highest zero-loss step (the busy poller's best case).
#
# Knobs (environment): TAPLINE, AFXDP_TX, TAPLINE_DATA, BENCH_MODE (full, or capture: see
# below), BENCH_DRIVERS ("socket xdp dpdk"), BENCH_WIRE (relay | veth), BENCH_RX_KERNEL
# (rx | tx), BENCH_BUSY (1 | 0), BENCH_BURST_MS (0.3 on the relay wire, else 5),
# BENCH_STEP_S (4), BENCH_CPU_S (6), BENCH_START_RATE (16000), BENCH_MAX_RATE (2000000),
# BENCH_BISECT (5), BENCH_CORPUS_EVENTS (20000), BENCH_BUDGET_S (450, shared equally by
# the drivers: a driver's search takes no new step after its share), BENCH_QUIET_WAIT
# (120: longest wait for an idle machine at the start). A run takes about 5-7 minutes
# on an idle 2-CPU machine, and stays under about 15 in the worst case.
# Needs root (namespaces, XDP); exits 77 without it.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tapline=${TAPLINE:-$src/build/app/tapline}
afxdp_tx=${AFXDP_TX:-$src/build/tests/afxdp_tx}
data=${TAPLINE_DATA:-$src/../shared/data}
drivers=${BENCH_DRIVERS:-socket xdp dpdk}
# BENCH_MODE=capture: tapline runs with --capture-only (frames counted after the driver and
# dropped), so the figures are the drivers' own cost; zero loss then compares frames (the
# socket driver's are whole datagrams, the kernel having reassembled them) and the figure
# names start with capture_.
mode=${BENCH_MODE:-full}
case $mode in
full) only=() prefix= ;;
capture) only=(--capture-only) prefix=capture_ ;;
*) echo "BENCH_MODE: full or capture" >&2; exit 2 ;;
esac
step_s=${BENCH_STEP_S:-4}
cpu_s=${BENCH_CPU_S:-6}
start_rate=${BENCH_START_RATE:-16000}
max_rate=${BENCH_MAX_RATE:-2000000}
bisect_max=${BENCH_BISECT:-5}
corpus_events=${BENCH_CORPUS_EVENTS:-20000}
budget_s=${BENCH_BUDGET_S:-450}
quiet_wait=${BENCH_QUIET_WAIT:-120}

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root (namespaces, AF_XDP)" >&2
	exit 77
fi
for f in "$tapline" "$afxdp_tx"; do
	[ -x "$f" ] || { echo "bench_capture: $f not built (ninja -C build)" >&2; exit 1; }
done
ncpu=$(nproc)
tx_cpu=0
rx_cpu=$((ncpu - 1))
hz=$(getconf CLK_TCK)

tag=$$
rxns=tlbr$tag
txns=tlbt$tag
rxif=tlbr$tag
txif=tlbt$tag
work=$(mktemp -d /tmp/tapline-bench-capture.XXXXXX)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	spool_root=$(mktemp -d /dev/shm/tapline-bench-capture.XXXXXX)
else
	spool_root=$work/spool
fi
tpid=
txpid=
cleanup() {
	[ -n "$txpid" ] && kill -9 "$txpid" 2> /dev/null || true
	[ -n "$tpid" ] && kill -9 "$tpid" 2> /dev/null || true
	ip netns del "$rxns" 2> /dev/null || true
	ip netns del "$txns" 2> /dev/null || true
	rm -rf "$work" "$spool_root"
}
trap cleanup EXIT
t_begin=$SECONDS

log() { echo "bench_capture: $*" >&2; }

. "$src/scripts/netns.sh"
tl_veth_pair "$rxns" "$txns" "$rxif" "$txif"
ip netns exec "$rxns" sysctl -qw net.ipv4.ipfrag_time=2
rxmac=$(ip -n "$rxns" -o link show "$rxif" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
# The wire (BENCH_WIRE=relay, the default). A NIC hands its driver a raw frame in a
# buffer; the socket path then builds an skb on the receiving core, an XDP program works on
# the buffer and never builds one. A veth that receives from a socket or an AF_XDP sender
# gets an skb the sender built and paid for (and an XDP program on it must first convert
# the skb back into a buffer, with a copy): that would charge the socket path less than on
# a NIC and XDP more. So the sender transmits on a second veth pair inside its namespace
# (sendif -> relayif), whose XDP program redirects every frame to txif. Frames redirected
# by XDP cross a veth as XDP frames (ndo_xdp_xmit), and tapline's interface receives them
# as a NIC's driver does: its XDP program sees them first, and an skb is built, on its
# side, only for what goes to the kernel. The relay's work is on the sender's CPU.
# BENCH_WIRE=veth: the sender transmits on txif directly (the skbs it builds reach
# tapline's interface).
#
# The receiving core (BENCH_RX_KERNEL=rx, the default): the receiving side's kernel work
# runs on tapline's core, as a NIC's interrupt and softirq do on the core its queue is
# steered to. tapline's interface's receive NAPI (on with GRO, which redirected XDP frames
# also need) runs in its own kernel thread (threaded NAPI), pinned to tapline's CPU and
# counted in its CPU figures. BENCH_RX_KERNEL=tx: veth's default, that work runs in
# softirq on the sender's CPU and is in no figure.
wire=${BENCH_WIRE:-relay}
rx_kernel=${BENCH_RX_KERNEL:-rx}
case $wire/$rx_kernel in
relay/rx | veth/rx | veth/tx) ;;
relay/tx) echo "BENCH_WIRE=relay needs BENCH_RX_KERNEL=rx (the peer's NAPI)" >&2; exit 2 ;;
*) echo "BENCH_WIRE: relay or veth; BENCH_RX_KERNEL: rx or tx" >&2; exit 2 ;;
esac
# Busy polling (BENCH_BUSY=1, the default): every driver runs the receive NAPI poll in
# its own worker's receive calls (preferred busy polling, budget 64: socket and xdp
# `busy_budget: 64`, DPDK net_af_xdp `busy_budget=64`), and tapline's interface defers
# its own NAPI processing while they do (napi_defer_hard_irqs 2, gro_flush_timeout
# 200 us, the kernel's AF_XDP documentation's example): the kernel's receive work then
# runs in tapline's thread, with no context switch to a softirq or NAPI thread and back.
# BENCH_BUSY=0: none of this; the NAPI thread does that work and wakes the worker.
busy=${BENCH_BUSY:-1}
case $busy in
1) busy_budget=64 ;;
0) busy_budget=0 ;;
*) echo "BENCH_BUSY: 0 or 1" >&2; exit 2 ;;
esac
# The sender's largest catch-up burst after a stall (afxdp_tx --burst-ms): on the relay
# wire, XDP frames meet tapline's interface's ring of 256 frames, far smaller than a NIC's
# RX ring (1024-4096 descriptors), so the default 5 ms of frames would overflow it with
# no fault of the receiver. 0.3 ms at 200 k events/s is about 140 frames.
burst_ms=${BENCH_BURST_MS:-$([ "$wire" = relay ] && echo 0.3 || echo 5)}
napi_pids=()
if [ "$rx_kernel" = rx ]; then
	ip netns exec "$rxns" ethtool -K "$rxif" gro on > /dev/null
	ip netns exec "$rxns" sh -c "echo 1 > /sys/class/net/$rxif/threaded"
fi
if [ "$busy" = 1 ]; then
	ip netns exec "$rxns" sh -c "echo 2 > /sys/class/net/$rxif/napi_defer_hard_irqs
		echo 200000 > /sys/class/net/$rxif/gro_flush_timeout"
fi
# pin_napi: finds the receive NAPI thread(s) of tapline's interface (comm
# "napi/<if>-<id>", cut to 15 characters) and pins them to tapline's CPU.
pin_napi() {
	[ "$rx_kernel" = rx ] || return 0
	local want pid
	want=$(printf '%.15s' "napi/$rxif-")
	mapfile -t napi_pids < <(ps -eo pid=,comm= | awk -v w="$want" 'index($2, w) == 1 { print $1 }')
	[ "${#napi_pids[@]}" -gt 0 ] || { log "no NAPI thread for $rxif"; exit 1; }
	for pid in "${napi_pids[@]}"; do
		taskset -pc "$rx_cpu" "$pid" > /dev/null
		chrt -f -p 50 "$pid"
	done
}
pin_napi

# Two XDP programs of the script's own: drop everything (the sender's calibration target)
# and redirect everything to txif (the relay).
bpf_cc() { # bpf_cc NAME BODY [CFLAGS...]
	local name=$1 body=$2
	shift 2
	printf '%s\n' '#include <linux/bpf.h>' '#include <bpf/bpf_helpers.h>' \
		"SEC(\"xdp\") int xdp_$name(struct xdp_md *ctx) { (void)ctx; $body }" \
		'char _license[] SEC("license") = "GPL";' > "$work/$name.bpf.c"
	clang -O2 -g -target bpf -I"/usr/include/$(gcc -print-multiarch 2> /dev/null)" "$@" \
		-c "$work/$name.bpf.c" -o "$work/$name.o"
}
bpf_cc drop 'return XDP_DROP;'
sendif=$txif
if [ "$wire" = relay ]; then
	sendif=tlbs$tag
	relayif=tlbv$tag
	ip -n "$txns" link add "$sendif" type veth peer name "$relayif"
	ip -n "$txns" link set "$sendif" up
	ip -n "$txns" link set "$relayif" up
	ip netns exec "$txns" ethtool -K "$sendif" tx off > /dev/null
	bpf_cc relay "return bpf_redirect($(ip netns exec "$txns" cat "/sys/class/net/$txif/ifindex"), 0);"
	ip -n "$txns" link set dev "$relayif" xdpdrv obj "$work/relay.o" sec xdp
fi

pcap=$work/corpus.pcap
"$tapline" gen --data "$data" --seed 7 --count "$corpus_events" --malformed-share 0 \
	--ipv6-share 0 --vlan-share 0 --noise-share 0 --pcap "$pcap" > "$work/gen.out"
log "corpus: $(tr '\n' ' ' < "$work/gen.out")"

# ---- helpers ----

# Sum of a metric family's samples (all label sets) in a scrape.
counter=tapline_events_total
[ "$mode" = capture ] && counter=tapline_rx_frames_total
mval() {
	awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f\n", s }' "$2"
}
scrape() {
	ip netns exec "$rxns" curl -s --max-time 2 "http://$metrics/metrics" > "$1" || : > "$1"
}
# utime + stime of a process, in ticks (fields 14 and 15; the name may hold spaces).
cpu_ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
# Frames the veths dropped (their drop and error counters summed): on the relay wire,
# XDP frames that found tapline's interface's ring (256 slots) full, where a NIC's RX ring
# would overflow.
wire_drops() {
	{
		ip netns exec "$rxns" ethtool -S "$rxif"
		ip netns exec "$txns" ethtool -S "$txif"
		[ "$wire" != relay ] || ip netns exec "$txns" ethtool -S "$relayif"
	} 2> /dev/null | awk '$1 ~ /(drops|errors):$/ { s += $2 } END { print s + 0 }'
}
# rx_ticks: tapline's ticks plus its interface's NAPI threads' (BENCH_RX_KERNEL=rx).
rx_ticks() {
	local t p
	t=$(cpu_ticks "$tpid")
	for p in "${napi_pids[@]}"; do
		t=$((t + $(cpu_ticks "$p")))
	done
	echo "$t"
}
# Busy, total and user (+ nice) ticks of one CPU: "busy total user".
cpu_line() {
	awk -v c="cpu$1" '$1 == c { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6, $2 + $3 }' \
		/proc/stat
}
kv() { # kv KEY FILE: the value after KEY on the detail line of afxdp_tx
	awk -v k="$1" '$1 == "detail" { for (i = 2; i < NF; i++) if ($i == k) print $(i + 1) }' "$2"
}

# start_tapline DRIVER: writes its site profile, starts it pinned, waits for its worker.
start_tapline() {
	local drv=$1 ready vdev=() site=$work/site-$1.yaml
	rm -rf "$spool_root/spool"
	case $drv in
	socket)
		ready="socket worker 0 reads"
		cat > "$site" <<- YAML
			extends: e6data-qpe
			capture:
			  driver: socket
			  workers: 1
			  socket:
			    address: "198.18.0.1"
			    busy_budget: $busy_budget
			dedup:
			  enabled: false
			metrics:
			  listen: "127.0.0.1:0"
		YAML
		;;
	xdp)
		ready="xdp worker polls"
		cat > "$site" <<- YAML
			extends: e6data-qpe
			capture:
			  driver: xdp
			  workers: 1
			  xdp:
			    interface: $rxif
			    busy_budget: $busy_budget
			dedup:
			  enabled: false
			metrics:
			  listen: "127.0.0.1:0"
		YAML
		;;
	dpdk)
		ready="polls port"
		vdev=(--vdev "net_af_xdp0,iface=$rxif,start_queue=0,queue_count=1,busy_budget=$busy_budget")
		cat > "$site" <<- YAML
			extends: $src/tests/integration/site-afxdp.yaml
			capture:
			  driver: dpdk
			  workers: 1
			dedup:
			  enabled: false
			metrics:
			  listen: "127.0.0.1:0"
		YAML
		;;
	esac
	ip netns exec "$rxns" taskset -c "$rx_cpu" "$tapline" run --config "$site" "${vdev[@]}" \
		"${only[@]}" --spool "$spool_root/spool" --no-uplink \
		> "$work/$drv.out" 2> "$work/$drv.err" &
	tpid=$!
	for _ in $(seq 1 300); do
		grep -q "$ready" "$work/$drv.err" 2> /dev/null && break
		kill -0 "$tpid" 2> /dev/null || break
		sleep 0.1
	done
	if ! grep -q "$ready" "$work/$drv.err"; then
		cat "$work/$drv.err" >&2
		log "tapline ($drv) did not start"
		return 1
	fi
	metrics=$(sed -n 's|.*metrics on http://\([0-9.]*\):[0-9]*/metrics (port \([0-9]*\)).*|\1:\2|p' \
		"$work/$drv.err" | tail -1)
	[ "$(cat "/proc/$tpid/comm")" = tapline ] || { log "pid $tpid is not tapline"; return 1; }
	grep -E "^tapline: info: (socket|xdp|dpdk|port)" "$work/$drv.err" | head -3 >&2 || true
	pin_napi # attaching an XDP program may have restarted the interface's NAPI
}

stop_tapline() {
	local drv=$1
	kill -TERM "$tpid" 2> /dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$tpid" 2> /dev/null || break
		sleep 0.1
	done
	kill -9 "$tpid" 2> /dev/null || true
	wait "$tpid" 2> /dev/null || true
	tpid=
	local dropped
	dropped=$(awk '$1 == "figure" && $2 == "spool_dropped_rows" { print $3 }' "$work/$drv.out")
	[ "${dropped:-0}" = 0 ] || log "$drv: the spool dropped $dropped rows (it was full)"
	# Whatever program a killed run may have left on the interface goes.
	ip -n "$rxns" link set dev "$rxif" xdp off 2> /dev/null || true
	rm -rf "$spool_root/spool"
}

# run_step RATE SECONDS: one paced run; sets verdict (pass|loss|slow), st_* figures.
run_step() {
	local rate=$1 secs=$2 c0 c1 r0 r1 x0 x1 w0 w1 prev cur
	scrape "$work/m0"
	ip netns exec "$txns" taskset -c "$tx_cpu" "$afxdp_tx" -i "$sendif" -r "$pcap" \
		--dst-mac "$rxmac" --rate "$rate" --seconds "$secs" --burst-ms "$burst_ms" \
		> "$work/tx.out" 2> "$work/tx.err" &
	txpid=$!
	# The window starts when the file is loaded and the socket bound (a busy poller's
	# spinning while the sender loads would otherwise be charged to the events).
	for _ in $(seq 1 500); do
		grep -q "afxdp_tx: sending" "$work/tx.err" 2> /dev/null && break
		kill -0 "$txpid" 2> /dev/null || break
		sleep 0.01
	done
	c0=$(rx_ticks)
	w0=$(wire_drops)
	r0=$(cpu_line "$rx_cpu")
	x0=$(cpu_line "$tx_cpu")
	wait "$txpid" || { cat "$work/tx.err" >&2; txpid=; return 1; }
	txpid=
	c1=$(rx_ticks)
	w1=$(wire_drops)
	r1=$(cpu_line "$rx_cpu")
	x1=$(cpu_line "$tx_cpu")
	# Let the worker finish what is queued: until its event counter stops moving.
	prev=-1
	for _ in $(seq 1 25); do
		sleep 0.3
		scrape "$work/m1"
		cur=$(mval "$counter" "$work/m1")
		[ "$cur" = "$prev" ] && break
		prev=$cur
	done
	st_sent=$(kv events "$work/tx.out")
	if [ "$mode" = capture ]; then
		# what reaches tapline: datagrams through the socket, frames through XDP
		[ "$cur_drv" = socket ] && st_want=$(kv datagrams "$work/tx.out") ||
			st_want=$(kv frames "$work/tx.out")
	else
		st_want=$st_sent
	fi
	st_rate=$(awk '$1 == "sent" { print $6 }' "$work/tx.out")
	st_busy=$(kv tx_busy "$work/tx.out")
	st_counted=$(($(mval "$counter" "$work/m1") - $(mval "$counter" "$work/m0")))
	# events behind the CPU figure: counted by tapline, or (capture-only, where it counts
	# frames) those the sender completed
	st_events=$st_counted
	[ "$mode" = capture ] && st_events=$st_sent
	st_rejected=$(($(mval tapline_rejected_events_total "$work/m1") - \
		$(mval tapline_rejected_events_total "$work/m0")))
	st_missed=$(($(mval tapline_nic_missed_total "$work/m1") - \
		$(mval tapline_nic_missed_total "$work/m0") + \
		$(mval tapline_nic_nombuf_total "$work/m1") - $(mval tapline_nic_nombuf_total "$work/m0")))
	st_cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz }')
	# Share of tapline's CPU that went to anything else during the window (other jobs
	# on this machine): a step that fails while it is high says nothing about tapline.
	st_foreign=$(awk -v r0="$r0" -v r1="$r1" -v c0="$c0" -v c1="$c1" 'BEGIN {
		split(r0, a, " "); split(r1, b, " "); t = b[2] - a[2]
		f = t > 0 ? ((b[1] - a[1]) - (c1 - c0)) / t : 0
		printf "%.2f", (f < 0 ? 0 : f) }')
	# The same for the sender's CPU, by user time only: on a veth the receiving side's
	# softirq work runs there too, in the sender's context or in ksoftirqd.
	st_foreign_tx=$(awk -v x0="$x0" -v x1="$x1" -v u="$(kv cpu_user "$work/tx.out")" \
		-v hz="$hz" 'BEGIN {
		split(x0, a, " "); split(x1, b, " "); t = b[2] - a[2]
		f = t > 0 ? ((b[3] - a[3]) - u * hz) / t : 0
		printf "%.2f", (f < 0 ? 0 : f) }')
	# The missed counter is logged but not judged: the socket driver learns of a buffer
	# overflow (SO_RXQ_OVFL) only with the next datagram it reads, so drops at the end of a
	# lossy step show up in the next one. Every lost frame costs events: counted < sent.
	if [ "$st_counted" = "$st_want" ] && [ "$st_rejected" = 0 ]; then
		if awk -v a="$st_rate" -v r="$rate" 'BEGIN { exit !(a >= 0.98 * r) }'; then
			verdict=pass
		else
			verdict=slow
		fi
	else
		verdict=loss
	fi
	local fmt='%-6s rate %8d: sent %9d at %8.0f/s, counted %9d, rejected %d, missed %d'
	fmt+=', wire drops %d, tx_busy %s, cpu %6.2f s, foreign rx/tx %4.2f/%4.2f -> %s'
	# shellcheck disable=SC2059
	log "$(printf "$fmt" \
		"$cur_drv" "$rate" "$st_sent" "$st_rate" "$st_counted" "$st_rejected" "$st_missed" \
		"$((w1 - w0))" "$st_busy" "$st_cpu" "$st_foreign" "$st_foreign_tx" "$verdict")"
	# Fragments of a lossy step expire (2 s) before the next step.
	[ "$verdict" = pass ] || sleep 2.5
}

# judge_step RATE SECONDS: run_step, repeated (at most 3 runs) while the result may be
# another job's doing: a shortfall of the sender or a loss while more than 10% of
# tapline's CPU or of the sender's went to other processes; a loss is always run twice.
judge_step() {
	local try
	for try in 1 2 3; do
		run_step "$1" "$2"
		case $verdict in
		pass) return 0 ;;
		slow) awk -v f="$st_foreign_tx" 'BEGIN { exit !(f > 0.10) }' || return 0 ;;
		loss)
			# A loss is confirmed by a second run: on the relay wire one late wake-up
			# can overflow tapline's interface's 256-frame ring (see "wire drops").
			if [ "$try" = 1 ]; then
				log "$cur_drv: loss at $1 events/s, run again to confirm"
				continue
			fi
			awk -v f="$st_foreign" -v g="$st_foreign_tx" \
				'BEGIN { exit !(f > 0.10 || g > 0.10) }' || return 0
			;;
		esac
		[ "$try" = 3 ] || log "$cur_drv: step at $1 events/s disturbed ($verdict), again"
	done
}

# wait_quiet SECONDS: wait (at most SECONDS) until the machine is idle (under 15% of all
# CPUs busy over 2 s) while nothing of ours runs; a busy machine only lowers the figures.
wait_quiet() {
	local end=$((SECONDS + $1)) a b share
	while :; do
		a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
		sleep 2
		b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
		share=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
			u = y[1] - x[1]; t = u + y[2] - x[2]; printf "%.2f", (t > 0 ? u / t : 0) }')
		awk -v s="$share" 'BEGIN { exit !(s < 0.15) }' && return 0
		if [ "$SECONDS" -ge "$end" ]; then
			log "machine still busy ($share of all CPUs): measuring anyway"
			return 0
		fi
		log "machine busy ($share of all CPUs), waiting"
		sleep 3
	done
}

per_m() { # per_m SECONDS EVENTS
	awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", (e > 0 ? s / e * 1e6 : 0) }'
}

# ---- the sender alone against a drop target ----
wait_quiet "$quiet_wait"
ip -n "$rxns" link set dev "$rxif" xdpdrv obj "$work/drop.o" sec xdp
pin_napi
ip netns exec "$txns" taskset -c "$tx_cpu" "$afxdp_tx" -i "$sendif" -r "$pcap" --dst-mac "$rxmac" \
	--seconds "$step_s" > "$work/cal.out" 2> "$work/cal.err" || { cat "$work/cal.err" >&2; exit 1; }
ip -n "$rxns" link set dev "$rxif" xdp off 2> /dev/null || true
sender_max=$(awk '$1 == "sent" { printf "%.0f", $6 }' "$work/cal.out")
log "sender alone, unpaced, into an XDP_DROP program: $(head -1 "$work/cal.out")"

# ---- pass 1: the highest zero-loss rate of each driver ----
n_drivers=$(echo "$drivers" | wc -w)
drv_budget=$((budget_s / n_drivers))
declare -A zl cpu_max sender_limited
for drv in $drivers; do
	cur_drv=$drv
	zl[$drv]=0
	cpu_max[$drv]=0
	sender_limited[$drv]=0
	wait_quiet 30
	start_tapline "$drv"
	run_step 8000 2 # warm-up: page cache, LMDB map, Hyperscan scratch; not judged
	best=0
	fail=0
	rate=$start_rate
	n_bisect=0
	t_drv=$SECONDS
	while [ $((SECONDS - t_drv)) -lt "$drv_budget" ]; do
		judge_step "$rate" "$step_s"
		case $verdict in
		pass)
			best=$rate
			cpu_max[$drv]=$(per_m "$st_cpu" "$st_events")
			;;
		slow)
			sender_limited[$drv]=1
			log "$drv: the sender fell short of $rate events/s with nothing lost: sender-limited"
			break
			;;
		loss) fail=$rate ;;
		esac
		if [ "$fail" = 0 ]; then
			rate=$(awk -v r="$rate" 'BEGIN { printf "%d", int(r * 1.6 / 1000) * 1000 }')
			[ "$rate" -le "$max_rate" ] || break
			continue
		fi
		# Bisect between the last pass and the first failure.
		n_bisect=$((n_bisect + 1))
		[ "$n_bisect" -le "$bisect_max" ] || break
		awk -v b="$best" -v f="$fail" 'BEGIN { exit !(f - b > 0.03 * (b > 0 ? b : f)) }' || break
		rate=$(awk -v b="$best" -v f="$fail" 'BEGIN { printf "%d", int((b + f) / 2 / 500) * 500 }')
		if [ "$rate" -le "$best" ] || [ "$rate" -ge "$fail" ]; then
			break
		fi
	done
	zl[$drv]=$best
	stop_tapline "$drv"
done

# ---- pass 2: CPU per million events at the common rate ----
# (A driver that passed no step at all is left out of the minimum, and logged.)
common=0
for drv in $drivers; do
	[ "${zl[$drv]}" -gt 0 ] || { log "$drv sustained no rate tried"; continue; }
	if [ "$common" = 0 ] || [ "${zl[$drv]}" -lt "$common" ]; then
		common=${zl[$drv]}
	fi
done
common=$(((common / 1000) * 1000))
declare -A cpu_common
for drv in $drivers; do
	cur_drv=$drv
	cpu_common[$drv]=0
	[ "$common" -gt 0 ] || continue
	wait_quiet 30
	start_tapline "$drv"
	run_step 8000 2
	judge_step "$common" "$cpu_s"
	[ "$verdict" = pass ] || log "$drv: the CPU step at $common events/s was not clean ($verdict)"
	cpu_common[$drv]=$(per_m "$st_cpu" "$st_events")
	stop_tapline "$drv"
done
log "finished in $((SECONDS - t_begin)) s"

# ---- figures ----
name_of() { echo "$prefix$([ "$1" = dpdk ] && echo dpdk_af_xdp || echo "$1")"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "figure sender_max_events_per_s $sender_max events/s"
echo "figure common_rate_events_per_s $common events/s"
for drv in $drivers; do
	echo "figure $(name_of "$drv")_zero_loss_events_per_s ${zl[$drv]} events/s"
done
for drv in $drivers; do
	n=$(name_of "$drv")
	echo "figure ${n}_cpu_s_per_m ${cpu_common[$drv]} s"
	echo "figure ${n}_cpu_s_per_m_at_max ${cpu_max[$drv]} s"
	echo "figure ${n}_sender_limited ${sender_limited[$drv]}"
done
if [[ " $drivers " == *" socket "* ]]; then
	for drv in xdp dpdk; do
		[[ " $drivers " == *" $drv "* ]] || continue
		n=$(name_of "$drv")
		echo "figure ${n}_vs_socket $(ratio "${zl[$drv]}" "${zl[socket]}") x"
		echo "figure ${n}_cpu_vs_socket $(ratio "${cpu_common[$drv]}" "${cpu_common[socket]}") x"
	done
fi
