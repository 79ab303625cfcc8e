/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * afxdp_tx: an AF_XDP traffic generator for the capture benchmark (scripts/bench_capture.sh).
 *
 * Replays the Ethernet frames of a classic pcap file (as written by `tapline gen --pcap`)
 * on one queue of an interface through an AF_XDP socket's TX ring, looping over the file,
 * at a target rate of events or frames per second, until --count units or --seconds.
 *
 *   afxdp_tx --iface IF --pcap FILE [--rate R] [--unit events|frames] [--count N]
 *            [--seconds S] [--dst-mac MAC] [--src-mac MAC] [--src-ip A] [--dst-ip A]
 *            [--dst-port P] [--queue Q] [--batch N] [--umem-frames N] [--burst-ms MS]
 *            [--zerocopy]
 *
 * At the end it prints on stdout
 *   sent <n> seconds <s> rate <r>
 *   detail frames <f> events <e> datagrams <d> bytes <b> loops <l> ... cpu <c> cpu_user <u>
 * where n and r are in --unit, counted from the completion ring (frames the kernel took),
 * and cpu / cpu_user are the send loop's CPU seconds (getrusage).
 *
 * Why it is built this way:
 * - The file is read once into memory and every header rewrite (MACs, IPv4 addresses, UDP
 *   port, IPv4 header checksum, UDP checksum by RFC 1624 incremental update so fragmented
 *   datagrams stay valid) is done at load time; the send loop only copies frames into
 *   UMEM, so its cost per frame is one memcpy and a descriptor.
 * - Events are counted per frame at load time: NDJSON events are separated by newlines,
 *   so a datagram carries (newlines + 1 if its last byte is not a newline) events. The
 *   token bucket charges each frame its share, so the event rate is exact over a datagram.
 * - A run stops only at a datagram boundary (fragments of one datagram are back to back
 *   in the file), so every datagram sent is complete and the receiver's event count can
 *   be compared with ours exactly.
 * - Looping replays the same IPv4 identifications; a stale fragment of a lost datagram
 *   could then complete a datagram of the next pass. Each pass adds a stride (larger than
 *   the datagrams any source sends per pass) to the identification, fixing the header
 *   checksum incrementally in the UMEM copy.
 * - The TX ring is busy-polled: the loop spins on the clock and the completion ring, and
 *   kicks the kernel with sendto() while the TX ring holds descriptors (copy mode transmits
 *   at most a small batch per call). sendto() returning EBUSY means the device dropped a
 *   frame (on a veth: the peer's queue was full): counted as tx_busy.
 * - Every run is bounded: --seconds is required to be within 1..3600.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xdp/xsk.h>

#define TX_FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define TX_DEFAULT_UMEM_FRAMES 4096u
#define TX_DEFAULT_BATCH 64u
#define TX_MAX_BATCH 1024u
#define TX_MAX_SECONDS 3600.0
/* After the bound is reached, at most this long to finish the datagram under way and to
 * collect completions: the run ends even if the kernel stops taking frames. */
#define TX_DRAIN_NS 1000000000ull
#define TX_MAX_SOURCES 4096u

enum unit {
	UNIT_EVENTS,
	UNIT_FRAMES,
};

struct frame {
	uint64_t off; /* into the file buffer */
	uint32_t len;
	uint32_t events; /* events this frame completes or carries newlines of */
	uint16_t ip_off; /* offset of the IPv4 header, 0 if not IPv4 */
	bool dgram_end;  /* last frame of its datagram in file order */
};

struct opts {
	const char *iface;
	const char *pcap;
	uint32_t queue;
	double rate;
	enum unit unit;
	uint64_t count;
	double seconds;
	uint32_t batch;
	uint32_t umem_frames;
	double burst_ms;
	bool zerocopy;
	bool set_dst_mac, set_src_mac;
	uint8_t dst_mac[6], src_mac[6];
	bool set_src_ip, set_dst_ip;
	uint32_t src_ip, dst_ip; /* network order */
	uint16_t dst_port;       /* host order, 0 = keep */
};

struct corpus {
	uint8_t *buf;
	struct frame *frames;
	uint32_t n;
	uint64_t events;
	uint64_t datagrams;
	uint64_t non_ipv4;
	uint16_t id_stride;
};

struct sent {
	uint64_t frames, events, bytes, datagrams;
};

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: afxdp_tx --iface IF --pcap FILE [options]\n"
	        "Replay a pcap's Ethernet frames through an AF_XDP TX ring at a target rate.\n\n"
	        "  -i, --iface IF        interface to send on (required)\n"
	        "  -r, --pcap FILE       classic pcap, DLT_EN10MB (required)\n"
	        "      --rate R          units per second; 0 = as fast as possible (default 0)\n"
	        "      --unit U          events (NDJSON lines) or frames (default events)\n"
	        "      --count N         stop after N units, at a datagram boundary (0 = none)\n"
	        "      --seconds S       stop after S seconds, 1..3600 (default 10)\n"
	        "      --dst-mac MAC     rewrite the destination MAC\n"
	        "      --src-mac MAC     rewrite the source MAC\n"
	        "      --src-ip A        rewrite the IPv4 source address\n"
	        "      --dst-ip A        rewrite the IPv4 destination address\n"
	        "      --dst-port P      rewrite the UDP destination port\n"
	        "      --queue Q         TX queue (default 0)\n"
	        "      --batch N         descriptors per ring submission, 1..1024 (default 64)\n"
	        "      --umem-frames N   UMEM frames, a power of two >= 2*batch (default 4096)\n"
	        "      --burst-ms MS     largest burst after a stall, in ms of --rate (default 5)\n"
	        "      --zerocopy        bind in zero-copy mode (default copy mode)\n"
	        "  -h, --help            this text\n"
	        "Prints 'sent <n> seconds <s> rate <r>' (n, r in --unit) and a 'detail' line.\n"
	        "Exit codes: 0 ok, 1 runtime failure, 2 usage error.\n");
}

static int
parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 0xff)
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s[0] == '-' || s[0] == '\0')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	enum {
		O_RATE = 256,
		O_UNIT,
		O_COUNT,
		O_SECONDS,
		O_DST_MAC,
		O_SRC_MAC,
		O_SRC_IP,
		O_DST_IP,
		O_DST_PORT,
		O_QUEUE,
		O_BATCH,
		O_UMEM,
		O_ZC,
		O_BURST,
	};
	static const struct option longopts[] = {
	        {"iface", required_argument, NULL, 'i'},
	        {"pcap", required_argument, NULL, 'r'},
	        {"rate", required_argument, NULL, O_RATE},
	        {"unit", required_argument, NULL, O_UNIT},
	        {"count", required_argument, NULL, O_COUNT},
	        {"seconds", required_argument, NULL, O_SECONDS},
	        {"dst-mac", required_argument, NULL, O_DST_MAC},
	        {"src-mac", required_argument, NULL, O_SRC_MAC},
	        {"src-ip", required_argument, NULL, O_SRC_IP},
	        {"dst-ip", required_argument, NULL, O_DST_IP},
	        {"dst-port", required_argument, NULL, O_DST_PORT},
	        {"queue", required_argument, NULL, O_QUEUE},
	        {"batch", required_argument, NULL, O_BATCH},
	        {"umem-frames", required_argument, NULL, O_UMEM},
	        {"zerocopy", no_argument, NULL, O_ZC},
	        {"burst-ms", required_argument, NULL, O_BURST},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->seconds = 10;
	o->batch = TX_DEFAULT_BATCH;
	o->umem_frames = TX_DEFAULT_UMEM_FRAMES;
	o->burst_ms = 5;
	int li = -1;

	while ((c = getopt_long(argc, argv, "i:r:h", longopts, &li)) != -1) {
		int rc = 0;

		switch (c) {
		case 'i':
			o->iface = optarg;
			break;
		case 'r':
			o->pcap = optarg;
			break;
		case O_RATE:
			rc = parse_double(optarg, 0, 1e9, &o->rate);
			break;
		case O_UNIT:
			if (strcmp(optarg, "events") == 0)
				o->unit = UNIT_EVENTS;
			else if (strcmp(optarg, "frames") == 0)
				o->unit = UNIT_FRAMES;
			else
				rc = -EINVAL;
			break;
		case O_COUNT:
			rc = parse_u64(optarg, UINT64_MAX, &o->count);
			break;
		case O_SECONDS:
			rc = parse_double(optarg, 1, TX_MAX_SECONDS, &o->seconds);
			break;
		case O_DST_MAC:
			rc = parse_mac(optarg, o->dst_mac);
			o->set_dst_mac = true;
			break;
		case O_SRC_MAC:
			rc = parse_mac(optarg, o->src_mac);
			o->set_src_mac = true;
			break;
		case O_SRC_IP:
			rc = inet_pton(AF_INET, optarg, &o->src_ip) == 1 ? 0 : -EINVAL;
			o->set_src_ip = true;
			break;
		case O_DST_IP:
			rc = inet_pton(AF_INET, optarg, &o->dst_ip) == 1 ? 0 : -EINVAL;
			o->set_dst_ip = true;
			break;
		case O_DST_PORT:
			rc = parse_u64(optarg, 65535, &v);
			if (rc == 0 && v == 0)
				rc = -EINVAL;
			o->dst_port = (uint16_t)v;
			break;
		case O_QUEUE:
			rc = parse_u64(optarg, 65535, &v);
			o->queue = (uint32_t)v;
			break;
		case O_BATCH:
			rc = parse_u64(optarg, TX_MAX_BATCH, &v);
			if (rc == 0 && v == 0)
				rc = -EINVAL;
			o->batch = (uint32_t)v;
			break;
		case O_UMEM:
			rc = parse_u64(optarg, 1u << 20, &v);
			if (rc == 0 && (v == 0 || (v & (v - 1)) != 0))
				rc = -EINVAL;
			o->umem_frames = (uint32_t)v;
			break;
		case O_ZC:
			o->zerocopy = true;
			break;
		case O_BURST:
			rc = parse_double(optarg, 0, 1000, &o->burst_ms);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
		if (rc != 0) {
			fprintf(stderr, "afxdp_tx: bad value for --%s: '%s'\n",
			        li >= 0 ? longopts[li].name : "?", optarg);
			return -EINVAL;
		}
		li = -1;
	}
	if (optind != argc || o->iface == NULL || o->pcap == NULL) {
		usage(stderr);
		return -EINVAL;
	}
	if (o->umem_frames < 2 * o->batch) {
		fprintf(stderr, "afxdp_tx: --umem-frames must be at least twice --batch\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- checksums ---- */

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), one 16-bit word of the covered data. */
static uint16_t
csum_replace(uint16_t sum, uint16_t old, uint16_t new)
{
	uint32_t s = (uint16_t)~sum;

	s += (uint16_t)~old;
	s += new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint16_t
ipv4_header_csum(const uint8_t *ip, uint32_t ihl)
{
	uint32_t s = 0;

	for (uint32_t i = 0; i < ihl; i += 2)
		if (i != 10)
			s += get16(ip + i);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* ---- pcap loading ---- */

static uint32_t
rd32(const uint8_t *p, bool swap)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return swap ? __builtin_bswap32(v) : v;
}

static int
read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	uint8_t *b = NULL;

	if (f == NULL)
		return -errno;
	if (fstat(fileno(f), &st) != 0 || st.st_size < 24) {
		fclose(f);
		return -EINVAL;
	}
	b = malloc((size_t)st.st_size);
	if (b == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	if (fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		free(b);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*buf = b;
	*len = (size_t)st.st_size;
	return 0;
}

/* Offset of the IPv4 header after up to two VLAN tags, or 0 if the frame is not IPv4. */
static uint32_t
ipv4_offset(const uint8_t *f, uint32_t len)
{
	uint32_t o = 12;

	for (int tags = 0; tags < 2 && o + 2 <= len; tags++) {
		uint16_t t = get16(f + o);

		if (t != 0x8100 && t != 0x88a8)
			break;
		o += 4;
	}
	if (o + 2 > len || get16(f + o) != ETH_P_IP)
		return 0;
	o += 2;
	if (o + 20 > len || (f[o] >> 4) != 4 || (f[o] & 0xf) < 5 || o + (f[o] & 0xfu) * 4 > len)
		return 0;
	return o;
}

static void
rewrite_ipv4(const struct opts *o, uint8_t *ip, uint32_t avail)
{
	uint32_t ihl = (ip[0] & 0xfu) * 4;
	bool first = (get16(ip + 6) & 0x1fff) == 0;
	uint8_t old_src[4], old_dst[4];

	memcpy(old_src, ip + 12, 4);
	memcpy(old_dst, ip + 16, 4);
	if (o->set_src_ip)
		memcpy(ip + 12, &o->src_ip, 4);
	if (o->set_dst_ip)
		memcpy(ip + 16, &o->dst_ip, 4);
	put16(ip + 10, ipv4_header_csum(ip, ihl));
	if (!first || ip[9] != IPPROTO_UDP || ihl + 8 > avail)
		return;
	/* The UDP checksum covers the pseudo-header's addresses and the ports: update it for
	 * each changed word, so a fragmented datagram's checksum stays right without the
	 * other fragments' bytes. Zero means "no checksum" over IPv4 and stays zero. */
	uint8_t *udp = ip + ihl;
	uint16_t sum = get16(udp + 6);
	uint16_t old_port = get16(udp + 2);

	if (o->dst_port)
		put16(udp + 2, o->dst_port);
	if (sum == 0)
		return;
	for (int i = 0; i < 4; i += 2) {
		sum = csum_replace(sum, get16(old_src + i), get16(ip + 12 + i));
		sum = csum_replace(sum, get16(old_dst + i), get16(ip + 16 + i));
	}
	sum = csum_replace(sum, old_port, get16(udp + 2));
	put16(udp + 6, sum == 0 ? 0xffff : sum);
}

/* Events carried by an IPv4 frame: newlines in its payload, plus one if it ends its
 * datagram (no more fragments) and the datagram's last byte is not a newline. */
static uint32_t
count_events(const uint8_t *ip, uint32_t avail)
{
	uint32_t ihl = (ip[0] & 0xfu) * 4;
	uint32_t tot = get16(ip + 2);
	uint16_t frag = get16(ip + 6);
	uint32_t start = ihl, n = 0;

	if (ip[9] != IPPROTO_UDP)
		return 0;
	if (tot > avail)
		tot = avail;
	if ((frag & 0x1fff) == 0)
		start += 8;
	if (start >= tot)
		return 0;
	for (uint32_t i = start; i < tot; i++)
		n += ip[i] == '\n';
	if ((frag & 0x2000) == 0 && ip[tot - 1] != '\n')
		n++;
	return n;
}

struct source {
	uint32_t addr;
	uint32_t datagrams;
};

static int
load_corpus(const struct opts *o, struct corpus *c)
{
	static struct source sources[TX_MAX_SOURCES];
	uint32_t n_sources = 0, max_per_source = 0;
	size_t len = 0, pos = 24;
	uint32_t magic, cap = 0;
	bool swap;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = read_file(o->pcap, &c->buf, &len);
	if (rc != 0) {
		fprintf(stderr, "afxdp_tx: %s: %s\n", o->pcap, strerror(-rc));
		return rc;
	}
	memcpy(&magic, c->buf, 4);
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
		swap = false;
	else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
		swap = true;
	else {
		fprintf(stderr, "afxdp_tx: %s: not a classic pcap file\n", o->pcap);
		return -EINVAL;
	}
	if (rd32(c->buf + 20, swap) != 1) {
		fprintf(stderr, "afxdp_tx: %s: link type is not Ethernet\n", o->pcap);
		return -EINVAL;
	}
	while (pos + 16 <= len) {
		uint32_t incl = rd32(c->buf + pos + 8, swap);
		uint32_t orig = rd32(c->buf + pos + 12, swap);
		struct frame *f;
		uint8_t *d;

		pos += 16;
		if (incl > len - pos) {
			fprintf(stderr, "afxdp_tx: %s: truncated record\n", o->pcap);
			return -EINVAL;
		}
		if (incl != orig || incl < ETH_HLEN || incl > TX_FRAME_SIZE) {
			fprintf(stderr,
			        "afxdp_tx: %s: frame of %u bytes (captured %u) cannot be sent\n",
			        o->pcap, orig, incl);
			return -EINVAL;
		}
		if (c->n == cap) {
			struct frame *nf;

			cap = cap ? cap * 2 : 4096;
			nf = realloc(c->frames, cap * sizeof(*nf));
			if (nf == NULL)
				return -ENOMEM;
			c->frames = nf;
		}
		f = &c->frames[c->n++];
		memset(f, 0, sizeof(*f));
		f->off = pos;
		f->len = incl;
		d = c->buf + pos;
		if (o->set_dst_mac)
			memcpy(d, o->dst_mac, 6);
		if (o->set_src_mac)
			memcpy(d + 6, o->src_mac, 6);
		f->ip_off = (uint16_t)ipv4_offset(d, incl);
		if (f->ip_off) {
			rewrite_ipv4(o, d + f->ip_off, incl - f->ip_off);
			f->events = count_events(d + f->ip_off, incl - f->ip_off);
		} else {
			c->non_ipv4++;
		}
		c->events += f->events;
		pos += incl;
	}
	if (c->n == 0) {
		fprintf(stderr, "afxdp_tx: %s: no frames\n", o->pcap);
		return -EINVAL;
	}
	/* Datagram ends: a frame that is not a fragment, or whose successor is not a fragment
	 * of the same (source, destination, identification). */
	for (uint32_t i = 0; i < c->n; i++) {
		struct frame *f = &c->frames[i];
		const uint8_t *ip = c->buf + f->off + f->ip_off;
		bool frag = f->ip_off && (get16(ip + 6) & 0x3fff) != 0;

		if (!frag || i + 1 == c->n) {
			f->dgram_end = true;
		} else {
			const struct frame *g = &c->frames[i + 1];
			const uint8_t *nip = c->buf + g->off + g->ip_off;

			f->dgram_end = !g->ip_off || (get16(nip + 6) & 0x3fff) == 0 ||
			               memcmp(ip + 12, nip + 12, 8) != 0 ||
			               get16(ip + 4) != get16(nip + 4);
		}
		if (!f->dgram_end)
			continue;
		c->datagrams++;
		if (!f->ip_off)
			continue;
		uint32_t src;
		uint32_t k;

		memcpy(&src, ip + 12, 4);
		for (k = 0; k < n_sources && sources[k].addr != src; k++)
			;
		if (k == n_sources && n_sources < TX_MAX_SOURCES)
			sources[n_sources++] = (struct source){.addr = src};
		if (k < n_sources && ++sources[k].datagrams > max_per_source)
			max_per_source = sources[k].datagrams;
	}
	/* Identifications of one source in one pass span at most max_per_source values (the
	 * generator counts up per source). Unknown sources past the table: a wide stride. */
	c->id_stride = n_sources < TX_MAX_SOURCES ? (uint16_t)(max_per_source + 1) : 4096;
	if (max_per_source >= 32768)
		c->id_stride = 1;
	return 0;
}

/* ---- AF_XDP ---- */

struct tx {
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xsk_ring_prod fill, tx;
	struct xsk_ring_cons comp, rx_unused;
	uint8_t *area;
	size_t area_len;
	uint32_t *free_stack;
	uint32_t n_free;
	/* What each UMEM frame carries while outstanding, counted when it completes. */
	uint32_t *slot_events;
	uint16_t *slot_len;
	uint8_t *slot_end;
};

static void
tx_close(struct tx *t)
{
	if (t->xsk)
		xsk_socket__delete(t->xsk);
	if (t->umem)
		xsk_umem__delete(t->umem);
	if (t->area)
		munmap(t->area, t->area_len);
	free(t->free_stack);
	free(t->slot_events);
	free(t->slot_len);
	free(t->slot_end);
	memset(t, 0, sizeof(*t));
}

static int
tx_open(const struct opts *o, struct tx *t)
{
	struct xsk_umem_config ucfg = {
	        .fill_size = XSK_RING_PROD__DEFAULT_NUM_DESCS,
	        .comp_size = o->umem_frames,
	        .frame_size = TX_FRAME_SIZE,
	        .frame_headroom = 0,
	        .flags = 0,
	};
	struct xsk_socket_config scfg = {
	        .rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
	        .tx_size = o->umem_frames,
	        /* TX only: no XDP program is needed, and none must replace the receiver's. */
	        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
	        .xdp_flags = 0,
	        .bind_flags =
	                (uint16_t)((o->zerocopy ? XDP_ZEROCOPY : XDP_COPY) | XDP_USE_NEED_WAKEUP),
	};
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	int rc;

	memset(t, 0, sizeof(*t));
	/* The UMEM is locked memory; without CAP_IPC_LOCK the limit must allow it. */
	(void)setrlimit(RLIMIT_MEMLOCK, &rl);
	t->area_len = (size_t)o->umem_frames * TX_FRAME_SIZE;
	t->area =
	        mmap(NULL, t->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->area == MAP_FAILED) {
		t->area = NULL;
		return -errno;
	}
	t->free_stack = calloc(o->umem_frames, sizeof(*t->free_stack));
	t->slot_events = calloc(o->umem_frames, sizeof(*t->slot_events));
	t->slot_len = calloc(o->umem_frames, sizeof(*t->slot_len));
	t->slot_end = calloc(o->umem_frames, sizeof(*t->slot_end));
	if (!t->free_stack || !t->slot_events || !t->slot_len || !t->slot_end) {
		rc = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < o->umem_frames; i++)
		t->free_stack[i] = o->umem_frames - 1 - i;
	t->n_free = o->umem_frames;
	rc = xsk_umem__create(&t->umem, t->area, t->area_len, &t->fill, &t->comp, &ucfg);
	if (rc != 0) {
		t->umem = NULL;
		fprintf(stderr, "afxdp_tx: UMEM: %s\n", strerror(-rc));
		goto err;
	}
	rc = xsk_socket__create(&t->xsk, o->iface, o->queue, t->umem, NULL, &t->tx, &scfg);
	if (rc != 0) {
		t->xsk = NULL;
		fprintf(stderr, "afxdp_tx: AF_XDP socket on %s queue %u (%s mode): %s\n", o->iface,
		        o->queue, o->zerocopy ? "zero-copy" : "copy", strerror(-rc));
		goto err;
	}
	return 0;
err:
	tx_close(t);
	return rc;
}

struct counters {
	struct sent done;   /* completed by the kernel */
	uint64_t submitted; /* frames put on the TX ring */
	uint64_t tx_busy;   /* sendto() EBUSY: the device dropped a frame */
	uint64_t kicks;
	uint64_t loops;
	/* CPU of the send loop (with, on a veth, the receiver's softirq work it runs). */
	struct rusage ru0, ru1;
};

static double
tv_s(struct timeval a, struct timeval b)
{
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_usec - a.tv_usec) / 1e6;
}

static void
reap(struct tx *t, struct counters *k)
{
	uint32_t idx, n = xsk_ring_cons__peek(&t->comp, 1024, &idx);

	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot =
		        (uint32_t)(*xsk_ring_cons__comp_addr(&t->comp, idx + i) / TX_FRAME_SIZE);

		k->done.frames++;
		k->done.events += t->slot_events[slot];
		k->done.bytes += t->slot_len[slot];
		k->done.datagrams += t->slot_end[slot];
		t->free_stack[t->n_free++] = slot;
	}
	if (n)
		xsk_ring_cons__release(&t->comp, n);
}

static int
kick(struct tx *t, struct counters *k)
{
	k->kicks++;
	if (sendto(xsk_socket__fd(t->xsk), NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
		return 0;
	switch (errno) {
	case EBUSY:
		k->tx_busy++;
		/* fallthrough */
	case EAGAIN:
	case ENOBUFS:
	case EINTR:
		return 0;
	default:
		return -errno;
	}
}

/* Copy frame @p f into UMEM slot @p slot, shifting its IPv4 identification for pass
 * @p loop (header checksum updated incrementally). */
static void
put_frame(const struct corpus *c, const struct frame *f, uint8_t *dst, uint64_t loop)
{
	memcpy(dst, c->buf + f->off, f->len);
	if (f->ip_off && loop) {
		uint8_t *ip = dst + f->ip_off;
		uint16_t old = get16(ip + 4);
		uint16_t id = (uint16_t)(old + loop * c->id_stride);

		put16(ip + 4, id);
		put16(ip + 10, csum_replace(get16(ip + 10), old, id));
	}
}

static int
run(const struct opts *o, const struct corpus *c, struct tx *t, struct counters *k, double *seconds)
{
	const uint64_t limit_ns = (uint64_t)(o->seconds * 1e9);
	/* Tokens saved up while the sender was not running (preempted on a shared core) may be
	 * spent at once, up to --burst-ms worth (never less than 64 units): the average rate
	 * holds, while bursts stay within what a receiver's rings are sized for. */
	const double burst =
	        o->rate > 0 ? (o->rate * o->burst_ms / 1000.0 > 64 ? o->rate * o->burst_ms / 1000.0
	                                                           : 64)
	                    : 0;
	uint64_t t0, now, last, stop_at = 0, units = 0;
	uint32_t cur = 0;
	double tokens = 0;
	bool stopping = false, done = false;
	int rc = 0;

	getrusage(RUSAGE_SELF, &k->ru0);
	t0 = last = now_ns();
	while (!done || t->n_free < o->umem_frames) {
		now = now_ns();
		if (!stopping && (stop_requested || now - t0 >= limit_ns ||
		                         (o->count && units >= o->count))) {
			stopping = true;
			stop_at = now;
			/* The previous frame ended a datagram (or nothing was sent): stop here. */
			if (cur == 0 ? true : c->frames[cur - 1].dgram_end)
				done = true;
		}
		if (stopping && now - stop_at > TX_DRAIN_NS)
			break;
		if (o->rate > 0 && !done) {
			tokens += (double)(now - last) * o->rate / 1e9;
			if (tokens > burst)
				tokens = burst;
		}
		last = now;
		reap(t, k);

		uint32_t n = 0, idx;

		if (!done) {
			uint32_t room = xsk_prod_nb_free(&t->tx, o->batch);
			uint32_t want = o->batch;

			if (want > room)
				want = room;
			if (want > t->n_free)
				want = t->n_free;
			/* How many frames the tokens allow, in file order. */
			double tk = tokens;
			uint32_t j = cur;

			while (n < want && (o->rate <= 0 || tk > 0)) {
				const struct frame *f = &c->frames[j];

				tk -= o->unit == UNIT_EVENTS ? f->events : 1;
				n++;
				if (stopping && f->dgram_end)
					break;
				j = j + 1 == c->n ? 0 : j + 1;
			}
		}
		if (n && xsk_ring_prod__reserve(&t->tx, n, &idx) == n) {
			for (uint32_t i = 0; i < n; i++) {
				const struct frame *f = &c->frames[cur];
				uint32_t slot = t->free_stack[--t->n_free];
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&t->tx, idx + i);
				uint32_t cost = o->unit == UNIT_EVENTS ? f->events : 1;

				put_frame(c, f, t->area + (uint64_t)slot * TX_FRAME_SIZE, k->loops);
				d->addr = (uint64_t)slot * TX_FRAME_SIZE;
				d->len = f->len;
				d->options = 0;
				t->slot_events[slot] = f->events;
				t->slot_len[slot] = (uint16_t)f->len;
				t->slot_end[slot] = f->dgram_end;
				tokens -= cost;
				units += cost;
				if (stopping && f->dgram_end)
					done = true;
				if (++cur == c->n) {
					cur = 0;
					k->loops++;
				}
			}
			xsk_ring_prod__submit(&t->tx, n);
			k->submitted += n;
		}
		/* Kick only while the TX ring holds descriptors the kernel has not taken: in copy
		 * mode each sendto() transmits a small batch synchronously. */
		if (xsk_prod_nb_free(&t->tx, o->umem_frames) < o->umem_frames &&
		        (!o->zerocopy || xsk_ring_prod__needs_wakeup(&t->tx))) {
			rc = kick(t, k);
			if (rc != 0) {
				fprintf(stderr, "afxdp_tx: sendto: %s\n", strerror(-rc));
				break;
			}
		}
	}
	reap(t, k);
	*seconds = (double)(now_ns() - t0) / 1e9;
	getrusage(RUSAGE_SELF, &k->ru1);
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct corpus c;
	struct tx t;
	struct counters k;
	struct xdp_statistics xs;
	socklen_t xs_len = sizeof(xs);
	double secs = 0, n;
	int rc;

	if (parse_opts(argc, argv, &o) != 0)
		return 2;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (load_corpus(&o, &c) != 0) {
		free(c.buf);
		free(c.frames);
		return 1;
	}
	fprintf(stderr,
	        "afxdp_tx: %s: %u frames, %" PRIu64 " datagrams, %" PRIu64 " events, %" PRIu64
	        " not IPv4, id stride %u\n",
	        o.pcap, c.n, c.datagrams, c.events, c.non_ipv4, c.id_stride);
	if (o.unit == UNIT_EVENTS && c.events == 0 && o.rate > 0) {
		fprintf(stderr, "afxdp_tx: the file carries no events to pace by\n");
		free(c.buf);
		free(c.frames);
		return 2;
	}
	rc = tx_open(&o, &t);
	if (rc != 0) {
		free(c.buf);
		free(c.frames);
		return 1;
	}
	/* Scripts wait for this line to start their measurement window. */
	fprintf(stderr, "afxdp_tx: sending on %s queue %u (%s mode)\n", o.iface, o.queue,
	        o.zerocopy ? "zero-copy" : "copy");
	fflush(stderr);
	memset(&k, 0, sizeof(k));
	rc = run(&o, &c, &t, &k, &secs);
	memset(&xs, 0, sizeof(xs));
	(void)getsockopt(xsk_socket__fd(t.xsk), SOL_XDP, XDP_STATISTICS, &xs, &xs_len);
	n = o.unit == UNIT_EVENTS ? (double)k.done.events : (double)k.done.frames;
	printf("sent %.0f seconds %.3f rate %.0f\n", n, secs, secs > 0 ? n / secs : 0);
	printf("detail frames %" PRIu64 " events %" PRIu64 " datagrams %" PRIu64 " bytes %" PRIu64
	       " loops %" PRIu64 " submitted %" PRIu64 " tx_busy %" PRIu64 " kicks %" PRIu64
	       " tx_invalid %llu tx_ring_empty %llu cpu %.3f cpu_user %.3f\n",
	        k.done.frames, k.done.events, k.done.datagrams, k.done.bytes, k.loops, k.submitted,
	        k.tx_busy, k.kicks, (unsigned long long)xs.tx_invalid_descs,
	        (unsigned long long)xs.tx_ring_empty_descs,
	        tv_s(k.ru0.ru_utime, k.ru1.ru_utime) + tv_s(k.ru0.ru_stime, k.ru1.ru_stime),
	        tv_s(k.ru0.ru_utime, k.ru1.ru_utime));
	if (k.submitted != k.done.frames)
		fprintf(stderr, "afxdp_tx: %" PRIu64 " frames never completed\n",
		        k.submitted - k.done.frames);
	tx_close(&t);
	free(c.buf);
	free(c.frames);
	return rc != 0 ? 1 : 0;
}
