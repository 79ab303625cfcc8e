/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline gen`: the load generator and reference producer (raw NDJSON mode).
 *
 * Events come from tl_corpus, are packed into datagrams (NDJSON lines separated by
 * '\n') and go to a kernel UDP socket (--udp), to pcap files (--pcap) or nowhere (the
 * default: generation only, for truth files and timing). --truth and --summary write
 * what the pipeline must extract and count for exactly this output.
 *
 * With --framed the same events go through libtapline-producer instead (tl_producer.h):
 * frames of several events, acknowledged, resent, spilled to --spill-dir; the generator,
 * the truth and the summary do not change.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tl_cmd.h"
#include "tl_corpus.h"
#include "tl_error.h"
#include "tl_opt.h"
#include "tl_pcapw.h"
#include "tl_probe.h"
#include "tl_producer.h"
#include "tl_reason.h"

#ifndef TL_DATA_DIR
#define TL_DATA_DIR "../shared/data"
#endif

#define DEFAULT_COUNT 10000
#define DEFAULT_ACK_WAIT 30.0
#define GEN_EXIT_UNACKED 3   /* --framed: events still unacknowledged after --ack-wait */
#define FRAMED_POLL_EVERY 16 /* events between two non-blocking producer polls */
#define FRAMED_FLUSH_SLICE_MS 100

static volatile sig_atomic_t gen_stop;

static void
on_stop(int sig)
{
	(void)sig;
	gen_stop = 1;
}

static void
gen_usage(FILE *f)
{
	fprintf(f,
	        "usage: tapline gen [options]\n"
	        "\n"
	        "Generate realistic query telemetry (about 5 events per SQL query: TPC-H query\n"
	        "texts, real Hadoop/HDFS/Spark log lines and Spark event-log content, 1-5 KB per\n"
	        "event) as raw NDJSON datagrams, with a share of malformed events and packet "
	        "faults.\n"
	        "Without --udp or --pcap the events are only generated (and truth/summary "
	        "written).\n"
	        "\n"
	        "What and how much:\n"
	        "      --data DIR              shared data folder (default $TAPLINE_DATA or\n"
	        "                              " TL_DATA_DIR ")\n"
	        "      --seed N                same seed, same bytes (default 1)\n"
	        "  -n, --count N               events to generate (default %d unless --queries\n"
	        "                              or --duration bounds the run)\n"
	        "      --queries N             generate N complete queries instead\n"
	        "      --duration SEC          stop after SEC seconds (\"30\", \"1.5s\", \"2m\")\n"
	        "      --rate EVENTS_PER_S     pace the output (0 = as fast as possible); with\n"
	        "                              --pcap it sets the frames' timestamps instead\n"
	        "      --error-share F         share of queries that fail (default 0.1)\n"
	        "      --malformed-share F     share of malformed events (default 0.05)\n"
	        "      --late-share F          share of valid events sent late: event time behind\n"
	        "                              their neighbours' by --late-by (default 0)\n"
	        "      --late-by MS            how far behind, in ms (default 60000)\n"
	        "      --max-event-size SIZE   pipeline.max_event_size to aim at (default 60KiB)\n"
	        "      --max-string SIZE       pipeline.max_string (default 60KiB)\n"
	        "      --max-depth N           pipeline.max_depth (default 32)\n"
	        "      --id-max-len N          max_len of the query_id column (default 256; 0 =\n"
	        "                              unknown); used for json_string_too_long when\n"
	        "                              max_string is too close to max_event_size\n"
	        "      --datagram-size SIZE    NDJSON bytes per ordinary datagram (default 8KiB)\n"
	        "\n"
	        "Where to:\n"
	        "      --udp HOST:PORT         send datagrams with a UDP socket; HOST must be\n"
	        "                              loopback or in 198.18.0.0/15 unless\n"
	        "      --any-destination       is given\n"
	        "      --probe URL             with --udp, measure freshness: every --probe-every "
	        "events\n"
	        "                              (default 1000) send a probe event and poll this\n"
	        "                              ClickHouse (URL?database=DB) until it is visible;\n"
	        "                              prints figure freshness_p50_s/_p95_s/_p99_s\n"
	        "      --probe-wait SEC        how long to wait for the last probes (default 60)\n"
	        "      --probe-netns NAME      poll ClickHouse from this network namespace\n"
	        "      --pcap FILE             write Ethernet frames to FILE (with --shards N:\n"
	        "                              FILE-0.pcap ... FILE-<N-1>.pcap, split by flow)\n"
	        "      --shards N              pcap files, 1..64 (default 1)\n"
	        "      --port N                destination UDP port in pcap files (default 5170)\n"
	        "      --mtu N                 IP MTU for fragmentation, 1280..9000 (default "
	        "1500)\n"
	        "      --ipv6-share F          share of datagrams over IPv6 (default 0.1)\n"
	        "      --vlan-share F          share of senders behind 802.1Q/QinQ (default 0.2)\n"
	        "      --packet-fault-share F  share of datagrams with a bad UDP/IPv4 checksum,\n"
	        "                              an overlapping or a duplicate fragment (default 0)\n"
	        "      --noise-share F         ARP/LLDP, DNS and TCP frames per datagram (default\n"
	        "                              0.01)\n"
	        "\n"
	        "Framed mode (with --udp; not with --pcap or --probe):\n"
	        "      --framed                send through the producer library: frames of\n"
	        "                              several events, acknowledged, resent, spilled\n"
	        "                              to disk\n"
	        "      --spill-dir DIR         the producer's state and spill folder (required;\n"
	        "                              created); frames left there are resent first\n"
	        "      --producer-id N         producer id, non-zero (default 1)\n"
	        "      --key-file FILE         sign frames with the key of --producer-id and\n"
	        "      --key-id N              this key id (default 1) from FILE (the appliance's\n"
	        "                              keys file format)\n"
	        "      --zstd-level N          compress frame bodies, 1..22 (default 0: off)\n"
	        "      --frame-size SIZE       NDJSON bytes per frame at most, 2..%u (default the\n"
	        "                              largest; an event must be smaller: larger ones are\n"
	        "                              skipped, counted and left out of --truth)\n"
	        "      --ack-wait SEC          at the end wait up to SEC for every frame to be\n"
	        "                              acknowledged (default 30; 0: do not wait)\n"
	        "      --ack-timeout MS        first ACK timeout before a resend, doubled per\n"
	        "                              resend (default the library's, 500)\n"
	        "\n"
	        "Reference output:\n"
	        "      --truth FILE            one JSON line per event, in generation order: the\n"
	        "                              verdict and the values the pipeline must extract\n"
	        "      --summary FILE          the counters `tapline run` must print, as JSON\n"
	        "  -h, --help                  this text\n"
	        "\n"
	        "Prints 'figure gen_events N', 'figure gen_datagrams N', 'figure gen_bytes N'\n"
	        "(NDJSON bytes) and with --udp 'figure gen_rate R events/s'; with --framed\n"
	        "gen_datagrams counts frames and the producer's counters follow as\n"
	        "'figure gen_framed_<name> N'.\n"
	        "Exit codes: 0 ok, 1 runtime failure (with --framed: also events rejected by the\n"
	        "appliance), 2 usage error, 3 (--framed) events still unacknowledged after\n"
	        "--ack-wait (they stay in --spill-dir).\n",
	        DEFAULT_COUNT, (unsigned)TL_PRODUCER_FRAME_BYTES_MAX);
}

struct gen_opts {
	const char *data, *udp, *pcap, *truth, *summary, *probe, *probe_netns;
	uint64_t probe_every;
	double probe_wait;
	uint64_t seed, count, queries, datagram_size, max_event_size, max_string, max_depth;
	uint64_t id_max_len, shards, port, mtu;
	double rate, duration, error_share, malformed_share, fault_share, ipv6_share, vlan_share,
	        noise_share, late_share;
	uint64_t late_ms;
	bool any_destination, have_count;
	/* --framed */
	const char *spill_dir, *key_file;
	uint64_t producer_id, key_id, zstd_level, frame_size, ack_timeout_ms;
	double ack_wait;
	bool framed, framed_opts;
};

static int
bad_arg(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "gen: --%s '%s': %s\ntry 'tapline gen --help'\n", opt, val, why);
	return -EINVAL;
}

static int
parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	char *end;
	unsigned long long x;

	errno = 0;
	if (s[0] == '-' || s[0] == '\0')
		return bad_arg(opt, s, "not a non-negative integer");
	x = strtoull(s, &end, 0);
	if (errno || *end != '\0')
		return bad_arg(opt, s, "not a non-negative integer");
	if (x < min || x > max) {
		char why[96];

		snprintf(why, sizeof(why), "out of range %" PRIu64 "..%" PRIu64, min, max);
		return bad_arg(opt, s, why);
	}
	*v = x;
	return 0;
}

static int
parse_size_opt(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	uint64_t x;

	if (tl_parse_size(s, &x) < 0)
		return bad_arg(opt, s, "not a size (e.g. 1500, 16KiB, 1MiB)");
	if (x < min || x > max) {
		char why[96];

		snprintf(why, sizeof(why), "out of range %" PRIu64 "..%" PRIu64 " bytes", min, max);
		return bad_arg(opt, s, why);
	}
	*v = x;
	return 0;
}

static int
parse_double(const char *opt, const char *s, double min, double max, double *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(x))
		return bad_arg(opt, s, "not a number");
	if (x < min || x > max) {
		char why[96];

		snprintf(why, sizeof(why), "out of range %g..%g", min, max);
		return bad_arg(opt, s, why);
	}
	*v = x;
	return 0;
}

/* Seconds: a plain number, or a duration with a unit ("1.5s", "2m"). */
static int
parse_seconds(const char *opt, const char *s, double *v)
{
	uint64_t ns;
	char *end;
	double x;

	errno = 0;
	x = strtod(s, &end);
	if (!errno && end != s && *end == '\0' && isfinite(x) && x > 0) {
		*v = x;
		return 0;
	}
	if (tl_parse_duration(s, &ns) == 0 && ns > 0) {
		*v = (double)ns / 1e9;
		return 0;
	}
	return bad_arg(opt, s, "not a positive duration (e.g. 30, 1.5s, 2m)");
}

static int
check_framed_opts(const struct gen_opts *o)
{
	const char *why = NULL;

	if (!o->framed && o->framed_opts)
		why = "--spill-dir, --producer-id, --key-file, --key-id, --zstd-level, "
		      "--frame-size, --ack-wait and --ack-timeout need --framed";
	else if (o->framed && o->pcap)
		why = "--framed and --pcap are exclusive";
	else if (o->framed && o->probe)
		why = "--framed and --probe are exclusive";
	else if (o->framed && o->udp == NULL)
		why = "--framed needs --udp HOST:PORT";
	else if (o->framed && o->spill_dir == NULL)
		why = "--framed needs --spill-dir DIR (the producer's state and spill)";
	if (why != NULL) {
		fprintf(stderr, "gen: %s\ntry 'tapline gen --help'\n", why);
		return -EINVAL;
	}
	return 0;
}

static int
parse_opts(int argc, char **argv, struct gen_opts *o)
{
	enum {
		O_DATA = 256,
		O_SEED,
		O_QUERIES,
		O_RATE,
		O_DURATION,
		O_UDP,
		O_ANY,
		O_PROBE,
		O_PROBE_EVERY,
		O_PROBE_WAIT,
		O_PROBE_NETNS,
		O_PCAP,
		O_SHARDS,
		O_TRUTH,
		O_SUMMARY,
		O_ERR,
		O_MAL,
		O_LATE,
		O_LATE_BY,
		O_PKT,
		O_MES,
		O_MS,
		O_MD,
		O_IDLEN,
		O_DGS,
		O_MTU,
		O_V6,
		O_VLAN,
		O_PORT,
		O_NOISE,
		O_FRAMED,
		O_SPILL_DIR,
		O_PRODUCER_ID,
		O_KEY_FILE,
		O_KEY_ID,
		O_ZSTD_LEVEL,
		O_FRAME_SIZE,
		O_ACK_WAIT,
		O_ACK_TIMEOUT,
	};
	static const struct option lo[] = {
	        {"data", required_argument, NULL, O_DATA},
	        {"seed", required_argument, NULL, O_SEED},
	        {"count", required_argument, NULL, 'n'},
	        {"queries", required_argument, NULL, O_QUERIES},
	        {"rate", required_argument, NULL, O_RATE},
	        {"duration", required_argument, NULL, O_DURATION},
	        {"udp", required_argument, NULL, O_UDP},
	        {"any-destination", no_argument, NULL, O_ANY},
	        {"probe", required_argument, NULL, O_PROBE},
	        {"probe-every", required_argument, NULL, O_PROBE_EVERY},
	        {"probe-wait", required_argument, NULL, O_PROBE_WAIT},
	        {"probe-netns", required_argument, NULL, O_PROBE_NETNS},
	        {"pcap", required_argument, NULL, O_PCAP},
	        {"shards", required_argument, NULL, O_SHARDS},
	        {"truth", required_argument, NULL, O_TRUTH},
	        {"summary", required_argument, NULL, O_SUMMARY},
	        {"error-share", required_argument, NULL, O_ERR},
	        {"malformed-share", required_argument, NULL, O_MAL},
	        {"late-share", required_argument, NULL, O_LATE},
	        {"late-by", required_argument, NULL, O_LATE_BY},
	        {"packet-fault-share", required_argument, NULL, O_PKT},
	        {"max-event-size", required_argument, NULL, O_MES},
	        {"max-string", required_argument, NULL, O_MS},
	        {"max-depth", required_argument, NULL, O_MD},
	        {"id-max-len", required_argument, NULL, O_IDLEN},
	        {"datagram-size", required_argument, NULL, O_DGS},
	        {"mtu", required_argument, NULL, O_MTU},
	        {"ipv6-share", required_argument, NULL, O_V6},
	        {"vlan-share", required_argument, NULL, O_VLAN},
	        {"port", required_argument, NULL, O_PORT},
	        {"noise-share", required_argument, NULL, O_NOISE},
	        {"framed", no_argument, NULL, O_FRAMED},
	        {"spill-dir", required_argument, NULL, O_SPILL_DIR},
	        {"producer-id", required_argument, NULL, O_PRODUCER_ID},
	        {"key-file", required_argument, NULL, O_KEY_FILE},
	        {"key-id", required_argument, NULL, O_KEY_ID},
	        {"zstd-level", required_argument, NULL, O_ZSTD_LEVEL},
	        {"frame-size", required_argument, NULL, O_FRAME_SIZE},
	        {"ack-wait", required_argument, NULL, O_ACK_WAIT},
	        {"ack-timeout", required_argument, NULL, O_ACK_TIMEOUT},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int c, rc = 0;

	/* 0 makes glibc re-initialise, so the command can run more than once per process. */
	optind = 0;
	while (rc == 0 && (c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (c) {
		case O_DATA:
			o->data = optarg;
			break;
		case O_SEED:
			rc = parse_u64("seed", optarg, 0, UINT64_MAX, &o->seed);
			break;
		case 'n':
			rc = parse_u64("count", optarg, 1, UINT64_MAX, &o->count);
			o->have_count = true;
			break;
		case O_QUERIES:
			rc = parse_u64("queries", optarg, 1, UINT64_MAX, &o->queries);
			break;
		case O_RATE:
			rc = parse_double("rate", optarg, 0, 1e9, &o->rate);
			break;
		case O_DURATION:
			rc = parse_seconds("duration", optarg, &o->duration);
			break;
		case O_UDP:
			o->udp = optarg;
			break;
		case O_ANY:
			o->any_destination = true;
			break;
		case O_PROBE:
			o->probe = optarg;
			break;
		case O_PROBE_EVERY:
			o->probe_every = strtoull(optarg, NULL, 10);
			if (o->probe_every == 0)
				rc = -EINVAL;
			break;
		case O_PROBE_NETNS:
			o->probe_netns = optarg;
			break;
		case O_PROBE_WAIT:
			rc = parse_seconds("probe-wait", optarg, &o->probe_wait);
			break;
		case O_PCAP:
			o->pcap = optarg;
			break;
		case O_SHARDS:
			rc = parse_u64("shards", optarg, 1, TL_PCAPW_MAX_SHARDS, &o->shards);
			break;
		case O_TRUTH:
			o->truth = optarg;
			break;
		case O_SUMMARY:
			o->summary = optarg;
			break;
		case O_ERR:
			rc = parse_double("error-share", optarg, 0, 1, &o->error_share);
			break;
		case O_MAL:
			rc = parse_double("malformed-share", optarg, 0, 1, &o->malformed_share);
			break;
		case O_LATE:
			rc = parse_double("late-share", optarg, 0, 1, &o->late_share);
			break;
		case O_LATE_BY:
			rc = parse_u64("late-by", optarg, 1, 7ull * 86400000, &o->late_ms);
			break;
		case O_PKT:
			rc = parse_double("packet-fault-share", optarg, 0, 1, &o->fault_share);
			break;
		case O_MES:
			rc = parse_size_opt(
			        "max-event-size", optarg, 6144, 1 << 20, &o->max_event_size);
			break;
		case O_MS:
			rc = parse_size_opt("max-string", optarg, 1536, 1 << 20, &o->max_string);
			break;
		case O_MD:
			rc = parse_u64("max-depth", optarg, 8, 1000, &o->max_depth);
			break;
		case O_IDLEN:
			rc = parse_u64("id-max-len", optarg, 0, 65536, &o->id_max_len);
			break;
		case O_DGS:
			rc = parse_size_opt(
			        "datagram-size", optarg, 256, TL_PCAPW_UDP_MAX, &o->datagram_size);
			break;
		case O_MTU:
			rc = parse_u64("mtu", optarg, 1280, 9000, &o->mtu);
			break;
		case O_V6:
			rc = parse_double("ipv6-share", optarg, 0, 1, &o->ipv6_share);
			break;
		case O_VLAN:
			rc = parse_double("vlan-share", optarg, 0, 1, &o->vlan_share);
			break;
		case O_PORT:
			rc = parse_u64("port", optarg, 1, 65535, &o->port);
			break;
		case O_NOISE:
			rc = parse_double("noise-share", optarg, 0, 1, &o->noise_share);
			break;
		case O_FRAMED:
			o->framed = true;
			break;
		case O_SPILL_DIR:
			if (optarg[0] == '\0')
				rc = bad_arg("spill-dir", optarg, "empty path");
			o->spill_dir = optarg;
			o->framed_opts = true;
			break;
		case O_PRODUCER_ID:
			rc = parse_u64("producer-id", optarg, 1, UINT64_MAX, &o->producer_id);
			o->framed_opts = true;
			break;
		case O_KEY_FILE:
			o->key_file = optarg;
			o->framed_opts = true;
			break;
		case O_KEY_ID:
			rc = parse_u64("key-id", optarg, 0, UINT32_MAX, &o->key_id);
			o->framed_opts = true;
			break;
		case O_ZSTD_LEVEL:
			rc = parse_u64("zstd-level", optarg, 0, 22, &o->zstd_level);
			o->framed_opts = true;
			break;
		case O_FRAME_SIZE:
			rc = parse_size_opt("frame-size", optarg, 2, TL_PRODUCER_FRAME_BYTES_MAX,
			        &o->frame_size);
			o->framed_opts = true;
			break;
		case O_ACK_TIMEOUT:
			rc = parse_u64("ack-timeout", optarg, 1, 600000, &o->ack_timeout_ms);
			o->framed_opts = true;
			break;
		case O_ACK_WAIT:
			/* 0 is allowed here (do not wait), unlike the other durations. */
			if (strcmp(optarg, "0") == 0)
				o->ack_wait = 0;
			else
				rc = parse_seconds("ack-wait", optarg, &o->ack_wait);
			o->framed_opts = true;
			break;
		case 'h':
			gen_usage(stdout);
			return 1;
		default:
			fprintf(stderr, "try 'tapline gen --help'\n");
			return -EINVAL;
		}
	}
	if (rc)
		return rc;
	if (optind < argc) {
		fprintf(stderr, "gen: unexpected argument '%s'\ntry 'tapline gen --help'\n",
		        argv[optind]);
		return -EINVAL;
	}
	if (o->probe && (o->truth || o->udp == NULL)) {
		fprintf(stderr, "gen: --probe needs --udp (live load) and no --truth (probes are "
		                "not part of the generated corpus)\n");
		return -EINVAL;
	}
	if (o->udp && o->pcap) {
		fprintf(stderr, "gen: --udp and --pcap are exclusive\n");
		return -EINVAL;
	}
	if (!o->pcap && (o->fault_share > 0 || o->shards > 1)) {
		fprintf(stderr, "gen: --packet-fault-share and --shards need --pcap\n");
		return -EINVAL;
	}
	return check_framed_opts(o);
}

/* ---- UDP destination ---- */

static bool
allowed_v4(const uint8_t *a)
{
	/* 127.0.0.0/8 loopback, 198.18.0.0/15 benchmarking (RFC 2544). */
	return a[0] == 127 || (a[0] == 198 && (a[1] & 0xfe) == 18);
}

static bool
allowed_destination(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return allowed_v4((const uint8_t *)&in->sin_addr);
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		const uint8_t *a = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && allowed_v4(a + 12);
	}
	return false;
}

/* Resolve and check --udp. @return 0, or 2 (usage) after a message. */
static int
resolve_udp(const char *spec, bool any, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[256];
	const char *colon, *port;
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
	int rc;
	size_t hl;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');

		if (rb == NULL || rb[1] != ':')
			goto usage;
		hl = (size_t)(rb - spec - 1);
		memcpy(host, spec + 1, hl < sizeof(host) ? hl : 0);
		port = rb + 2;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			goto usage;
		hl = (size_t)(colon - spec);
		memcpy(host, spec, hl < sizeof(host) ? hl : 0);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host) || port[0] == '\0')
		goto usage;
	host[hl] = '\0';
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "gen: --udp '%s': %s\n", spec, gai_strerror(rc));
		return 2;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	if (!any && !allowed_destination(ss)) {
		fprintf(stderr,
		        "gen: --udp '%s': only loopback and 198.18.0.0/15 destinations are allowed "
		        "(use --any-destination to send elsewhere)\n",
		        spec);
		return 2;
	}
	return 0;
usage:
	fprintf(stderr, "gen: --udp '%s': expected HOST:PORT or [IPv6]:PORT\n", spec);
	return 2;
}

static int
open_udp(const char *spec, bool any, int *fd_out, struct sockaddr_storage *ss, socklen_t *sslen)
{
	int fd, rc, sndbuf = 4 << 20;

	rc = resolve_udp(spec, any, ss, sslen);
	if (rc)
		return rc;
	fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "gen: socket: %s\n", strerror(errno));
		return 1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	*fd_out = fd;
	return 0;
}

/* ---- clocks and pacing ---- */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Token bucket: @p rate events/s, bursts of up to 20 ms worth (or one datagram). */
struct bucket {
	double rate, tokens, burst, last;
};

/* With @p prod (framed mode) the waits poll the producer: ACKs are read, lingering frames
 * sealed and resends made while the pacing holds the generator back. */
static void
bucket_take(struct bucket *b, double n, double deadline, struct tl_producer *prod)
{
	double cap = b->burst > n ? b->burst : n;

	for (;;) {
		double t = now_s(), wait;

		b->tokens += (t - b->last) * b->rate;
		b->last = t;
		if (b->tokens > cap)
			b->tokens = cap;
		if (b->tokens >= n || gen_stop || (deadline > 0 && t >= deadline))
			break;
		wait = (n - b->tokens) / b->rate;
		if (deadline > 0 && t + wait > deadline)
			wait = deadline - t;
		if (prod != NULL && wait >= 0.001) {
			(void)tl_producer_poll(prod, (int)(wait * 1000));
		} else if (wait > 0) {
			struct timespec ts = {.tv_sec = (time_t)wait,
			        .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};

			nanosleep(&ts, NULL);
		}
	}
	b->tokens -= n;
}

/* ---- packing and output ---- */

struct gen_state {
	struct gen_opts *o;
	struct tl_corpus_rng rng;
	struct tl_pcapw *pw;
	int fd;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	FILE *truth;
	struct bucket bucket;
	double deadline;
	uint64_t start_ns;
	/* the datagram being filled */
	uint8_t *buf;
	uint32_t len, n_events;
	struct tl_pcapw_plan plan;
	bool crlf;
	char lost[128];
	/* --framed */
	struct tl_producer *prod;
	uint32_t mem_frames, since_poll;
	uint64_t unsent; /* events larger than a frame: skipped */
	bool framed_stop, gave_up;
	/* totals */
	uint64_t events, datagrams, bytes, send_errors;
	uint64_t valid, rejected, error_events, event_bytes;
	uint64_t reason[TL_REASON_MAX];
};

static int
flush_datagram(struct gen_state *s)
{
	int rc = 0;

	if (s->n_events == 0)
		return 0;
	/* Many syslog-style senders end the last line too; the pipeline skips empty lines. */
	if (tl_corpus_rng_chance(&s->rng, 0.2) && s->len + 2 <= TL_PCAPW_UDP_MAX) {
		if (s->crlf)
			s->buf[s->len++] = '\r';
		s->buf[s->len++] = '\n';
	}
	if (s->pw) {
		uint64_t ts = s->start_ns;

		if (s->o->rate > 0)
			ts += (uint64_t)((double)(s->events - s->n_events) * 1e9 / s->o->rate);
		rc = tl_pcapw_write(s->pw, &s->plan, s->buf, s->len, ts);
	} else if (s->fd >= 0) {
		if (s->o->rate > 0)
			bucket_take(&s->bucket, s->n_events, s->deadline, NULL);
		for (;;) {
			ssize_t n = sendto(
			        s->fd, s->buf, s->len, 0, (struct sockaddr *)&s->dst, s->dstlen);

			if (n >= 0)
				break;
			if (errno == EINTR && !gen_stop)
				continue;
			if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) {
				/* The kernel (or an ICMP error from a previous datagram) says
				 * slow down; the datagram is lost, as on any UDP path. */
				s->send_errors++;
				break;
			}
			fprintf(stderr, "gen: sendto: %s\n", strerror(errno));
			rc = -errno;
			break;
		}
	}
	s->datagrams++;
	s->bytes += s->len;
	s->len = 0;
	s->n_events = 0;
	return rc;
}

static void
next_plan(struct gen_state *s)
{
	if (s->pw) {
		tl_pcapw_plan(s->pw, &s->plan);
	} else {
		memset(&s->plan, 0, sizeof(s->plan));
		s->plan.max_payload = (uint32_t)s->o->datagram_size;
	}
	s->crlf = tl_corpus_rng_chance(&s->rng, 0.05);
}

/* Count an event that reaches the output (summary) and write its truth line. */
static void
account_event(struct gen_state *s, const struct tl_corpus_event *ev)
{
	if (ev->reason == TL_REASON_OK) {
		s->valid++;
		s->event_bytes += ev->len;
		s->error_events += ev->is_error;
	} else {
		s->rejected++;
		s->reason[ev->reason]++;
	}
	if (s->truth) {
		fwrite(ev->truth, 1, ev->truth_len, s->truth);
		fputc('\n', s->truth);
	}
}

static int
add_event(struct gen_state *s, const struct tl_corpus_event *ev)
{
	int rc;

	if (s->n_events && s->len + (s->crlf ? 2 : 1) + ev->len > s->plan.max_payload) {
		rc = flush_datagram(s);
		if (rc)
			return rc;
	}
	if (s->n_events == 0) {
		next_plan(s);
	} else {
		if (s->crlf)
			s->buf[s->len++] = '\r';
		s->buf[s->len++] = '\n';
	}
	memcpy(s->buf + s->len, ev->data, ev->len);
	s->len += ev->len;
	s->n_events++;
	s->events++;

	if (tl_pcapw_fault_loses(s->plan.fault)) {
		if (s->truth) {
			size_t n = tl_corpus_truth_lost(
			        ev->seq, s->plan.fault, s->lost, sizeof(s->lost));

			fwrite(s->lost, 1, n, s->truth);
			fputc('\n', s->truth);
		}
	} else {
		account_event(s, ev);
	}
	if (s->plan.single)
		return flush_datagram(s);
	return 0;
}

/* ---- framed mode (libtapline-producer) ---- */

/* Open the producer on the resolved --udp address. @return an exit code (0: opened). */
static int
framed_open(struct gen_state *s)
{
	const struct gen_opts *o = s->o;
	struct tl_producer_conf pc;
	struct tl_producer_stats st;
	struct tl_frame_keys *keys = NULL;
	char err[512];
	int rc, exit_code = TL_EXIT_USAGE;

	tl_producer_conf_init(&pc);
	pc.addr = (const struct sockaddr *)&s->dst;
	pc.addrlen = s->dstlen;
	pc.producer_id = o->producer_id;
	pc.zstd_level = (int)o->zstd_level;
	pc.frame_bytes = (uint32_t)o->frame_size;
	if (o->ack_timeout_ms)
		pc.ack_timeout_ms = (uint32_t)o->ack_timeout_ms;
	pc.spill_dir = o->spill_dir;
	if (o->key_file) {
		rc = tl_frame_keys_load(o->key_file, false, &keys, err, sizeof(err));
		if (rc) {
			if (rc == -ENOMEM)
				snprintf(err, sizeof(err), "out of memory");
			fprintf(stderr, "gen: --key-file: %s\n", err);
			return rc == -ENOMEM ? TL_EXIT_FAIL : TL_EXIT_USAGE;
		}
		pc.key = tl_frame_keys_find(keys, o->producer_id, (uint32_t)o->key_id, &pc.key_len);
		if (pc.key == NULL) {
			fprintf(stderr,
			        "gen: --key-file %s: no key for producer %" PRIu64
			        " key id %" PRIu64 "\n",
			        o->key_file, o->producer_id, o->key_id);
			goto out;
		}
		pc.key_id = (uint32_t)o->key_id;
	}
	/* The producer copies the key: the key set can go right after. */
	rc = tl_producer_open(&pc, &s->prod);
	if (rc) {
		switch (rc) {
		case -EEXIST:
			fprintf(stderr,
			        "gen: --spill-dir %s: belongs to another producer id (its state "
			        "file): give that --producer-id or another folder\n",
			        o->spill_dir);
			break;
		case -EBUSY:
			fprintf(stderr, "gen: --spill-dir %s: in use by another producer\n",
			        o->spill_dir);
			exit_code = TL_EXIT_FAIL;
			break;
		case -EBADMSG:
			fprintf(stderr,
			        "gen: --spill-dir %s: corrupt state file (the last sequence used "
			        "is unknown): move the folder aside\n",
			        o->spill_dir);
			exit_code = TL_EXIT_FAIL;
			break;
		default:
			fprintf(stderr, "gen: producer (--spill-dir %s): %s\n", o->spill_dir,
			        strerror(-rc));
			exit_code = rc == -EINVAL ? TL_EXIT_USAGE : TL_EXIT_FAIL;
		}
		goto out;
	}
	s->mem_frames = pc.mem_frames;
	tl_producer_stats(s->prod, &st);
	if (st.pending_disk > 0)
		fprintf(stderr,
		        "gen: note: --spill-dir %s holds %" PRIu64 " frames of an earlier run: "
		        "they are sent first\n",
		        o->spill_dir, st.pending_disk);
	exit_code = TL_EXIT_OK;
out:
	tl_frame_keys_free(keys);
	return exit_code;
}

/*
 * Poll without waiting, then keep the loop closed: with the in-memory queue full, the next
 * frame would go to the spill although the appliance is only slower than the generator.
 * Wait for ACKs instead. A stall (no progress for the producer's unreachable time) ends
 * the wait, and the producer spills from then on, as it is meant to.
 */
static void
framed_service(struct gen_state *s)
{
	struct tl_producer_stats st;

	(void)tl_producer_poll(s->prod, 0);
	for (;;) {
		tl_producer_stats(s->prod, &st);
		if (st.stalled || st.pending_mem + st.pending_disk + 2 < s->mem_frames ||
		        gen_stop || (s->deadline > 0 && now_s() >= s->deadline))
			break;
		(void)tl_producer_poll(s->prod, 5);
	}
}

/*
 * Hand one event to the producer. The truth file and the summary count exactly the events
 * the producer took. Sets framed_stop (and gave_up) when the producer stays full.
 * @return 0 or a -errno from the producer (after a message).
 */
static int
send_framed(struct gen_state *s, const struct tl_corpus_event *ev)
{
	double give_up = 0;
	int rc;

	if (s->o->rate > 0)
		bucket_take(&s->bucket, 1, s->deadline, s->prod);
	for (;;) {
		double t;

		rc = tl_producer_send(s->prod, ev->data, ev->len);
		if (rc != -ENOBUFS)
			break;
		/* Memory and spill are full: only ACKs make room. Wait for them, but never
		 * past the run's end or --ack-wait. */
		t = now_s();
		if (give_up == 0)
			give_up = t + s->o->ack_wait;
		if (gen_stop || (s->deadline > 0 && t >= s->deadline)) {
			s->framed_stop = true;
			return 0;
		}
		if (t >= give_up) {
			fprintf(stderr,
			        "gen: the producer's memory and spill stayed full for --ack-wait "
			        "%gs: generation stopped after %" PRIu64 " events\n",
			        s->o->ack_wait, s->events);
			s->framed_stop = true;
			s->gave_up = true;
			return 0;
		}
		(void)tl_producer_poll(s->prod, 10);
	}
	s->events++;
	if (rc == -EMSGSIZE) {
		if (s->unsent++ == 0)
			fprintf(stderr,
			        "gen: note: event %" PRIu64 " (%u bytes) does not fit a frame "
			        "(--frame-size %" PRIu64 "): skipped, left out of --truth and "
			        "--summary\n",
			        ev->seq, ev->len, s->o->frame_size);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "gen: producer: %s\n", strerror(-rc));
		return rc;
	}
	s->bytes += (uint64_t)ev->len + 1;
	account_event(s, ev);
	if (++s->since_poll >= FRAMED_POLL_EVERY) {
		s->since_poll = 0;
		framed_service(s);
	}
	return 0;
}

/*
 * Wait up to --ack-wait for every frame to be answered (a signal ends the wait), take the
 * counters, then close: what is still unanswered is written to the spill directory.
 */
static void
framed_finish(struct gen_state *s, struct tl_producer_stats *st, int *close_rc)
{
	double end = now_s() + s->o->ack_wait;
	int rc, last_err = 0;

	for (;;) {
		double left = end - now_s();
		int ms = left > 0 ? (int)(left * 1000) : 0;

		if (ms > FRAMED_FLUSH_SLICE_MS)
			ms = FRAMED_FLUSH_SLICE_MS;
		rc = tl_producer_flush(s->prod, ms);
		if (rc == 0 || gen_stop || now_s() >= end)
			break;
		if (rc != -ETIMEDOUT && rc != last_err) {
			/* A spill error: the producer retries it; say so once. */
			fprintf(stderr, "gen: producer: %s\n", strerror(-rc));
			last_err = rc;
		}
	}
	tl_producer_stats(s->prod, st);
	*close_rc = tl_producer_close(s->prod, 0);
	s->prod = NULL;
}

static void
print_framed(const struct gen_state *s, const struct tl_producer_stats *st, int close_rc)
{
	/* close() wrote the frames held only in memory to the spill (unless it failed). */
	uint64_t spilled = st->frames_spilled + (close_rc == 0 ? st->pending_mem_only : 0);

	printf("figure gen_framed_producer_id %" PRIu64 "\n", st->producer_id);
	printf("figure gen_framed_sent %" PRIu64 " events\n", st->events_queued);
	printf("figure gen_framed_acked %" PRIu64 " events\n", st->events_acked);
	printf("figure gen_framed_rejected %" PRIu64 " events\n", st->events_rejected);
	printf("figure gen_framed_pending %" PRIu64 " events\n", st->events_pending);
	printf("figure gen_framed_unsent %" PRIu64 " events\n", s->unsent);
	printf("figure gen_framed_frames %" PRIu64 " frames\n", st->frames_sealed);
	printf("figure gen_framed_resent %" PRIu64 " frames\n", st->frames_resent);
	printf("figure gen_framed_duplicate %" PRIu64 " frames\n", st->frames_duplicate);
	printf("figure gen_framed_retry_later %" PRIu64 " acks\n", st->retry_later);
	printf("figure gen_framed_spilled %" PRIu64 " frames\n", spilled);
	printf("figure gen_framed_replayed %" PRIu64 " frames\n", st->frames_replayed);
	printf("figure gen_framed_stalls %" PRIu64 "\n", st->stalls);
	for (int r = 1; r < TL_FRAME_REASON_MAX; r++)
		if (st->rejected[r])
			printf("figure gen_framed_rejected_%s %" PRIu64 " frames\n",
			        tl_frame_reason_name((enum tl_frame_reason)r), st->rejected[r]);
	/* Rare ones only when they happen: each points at a problem worth a look. */
	if (st->acks_invalid)
		printf("figure gen_framed_acks_invalid %" PRIu64 "\n", st->acks_invalid);
	if (st->acks_unauthenticated)
		printf("figure gen_framed_acks_unauthenticated %" PRIu64 "\n",
		        st->acks_unauthenticated);
	if (st->acks_foreign)
		printf("figure gen_framed_acks_foreign %" PRIu64 "\n", st->acks_foreign);
	if (st->send_errors)
		printf("figure gen_framed_send_errors %" PRIu64 "\n", st->send_errors);
	if (st->spill_errors)
		printf("figure gen_framed_spill_errors %" PRIu64 "\n", st->spill_errors);
	if (st->spill_torn)
		printf("figure gen_framed_spill_torn %" PRIu64 " frames\n", st->spill_torn);
}

/* @return the exit code of a framed run whose figures are printed, after a message. */
static int
framed_exit_code(const struct gen_state *s, const struct tl_producer_stats *st, int close_rc)
{
	if (close_rc != 0)
		fprintf(stderr, "gen: --spill-dir %s: %s: unacknowledged frames were lost\n",
		        s->o->spill_dir, strerror(-close_rc));
	if (st->events_pending > 0) {
		fprintf(stderr,
		        "gen: %" PRIu64 " events not acknowledged after --ack-wait %gs: kept in "
		        "%s, sent again by the next run with this --spill-dir\n",
		        st->events_pending, s->o->ack_wait, s->o->spill_dir);
		return GEN_EXIT_UNACKED;
	}
	if (st->events_rejected > 0) {
		fprintf(stderr,
		        "gen: the appliance rejected %" PRIu64 " events in %" PRIu64
		        " frames (figure gen_framed_rejected_*)\n",
		        st->events_rejected, st->frames_rejected);
		return TL_EXIT_FAIL;
	}
	return s->gave_up || close_rc != 0 ? TL_EXIT_FAIL : TL_EXIT_OK;
}

static int
write_summary(const struct gen_state *s, const struct tl_pcapw_stats *ps, const char *path)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (f == NULL) {
		rc = -errno;
		fprintf(stderr, "gen: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	fprintf(f,
	        "{\n  \"events_valid\": %" PRIu64 ",\n  \"events_rejected\": %" PRIu64
	        ",\n  \"error_events\": %" PRIu64 ",\n  \"event_bytes\": %" PRIu64 ",\n",
	        s->valid, s->rejected, s->error_events, s->event_bytes);
	if (ps) {
		fprintf(f, "  \"frames\": %" PRIu64 ",\n  \"bytes\": %" PRIu64 ",\n", ps->frames,
		        ps->bytes);
		fprintf(f, "  \"datagrams\": %" PRIu64 ",\n  \"reassembled\": %" PRIu64 ",\n",
		        ps->datagrams, ps->reassembled);
	} else if (s->fd >= 0) {
		fprintf(f, "  \"datagrams\": %" PRIu64 ",\n", s->datagrams);
	}
	for (int r = 1; r < TL_REASON_MAX; r++) {
		uint64_t n = s->reason[r] + (ps ? ps->reason[r] : 0);

		if (tl_reason_is_ignored((enum tl_reason)r))
			fprintf(f, "  \"%s\": %" PRIu64 "%s\n", tl_reason_name((enum tl_reason)r),
			        n, r + 1 < TL_REASON_MAX ? "," : "");
		else
			fprintf(f, "  \"rejected_%s\": %" PRIu64 "%s\n",
			        tl_reason_name((enum tl_reason)r), n,
			        r + 1 < TL_REASON_MAX ? "," : "");
	}
	fprintf(f, "}\n");
	if (ferror(f))
		rc = -EIO;
	if (fclose(f) != 0)
		rc = -EIO;
	if (rc)
		fprintf(stderr, "gen: %s: write failed\n", path);
	return rc;
}

int
tl_cmd_gen(int argc, char **argv)
{
	struct gen_opts o = {
	        .probe_every = 1000,
	        .probe_wait = 60,
	        .seed = 1,
	        .datagram_size = 8192,
	        .max_event_size = 60 * 1024,
	        .max_string = 60 * 1024,
	        .max_depth = 32,
	        .id_max_len = 256,
	        .shards = 1,
	        .port = 5170,
	        .mtu = 1500,
	        .error_share = 0.1,
	        .malformed_share = 0.05,
	        .late_ms = 60000,
	        .ipv6_share = 0.1,
	        .vlan_share = 0.2,
	        .noise_share = 0.01,
	        .producer_id = 1,
	        .key_id = 1,
	        .frame_size = TL_PRODUCER_FRAME_BYTES_MAX,
	        .ack_wait = DEFAULT_ACK_WAIT,
	};
	struct gen_state s;
	struct tl_producer_stats fst = {0};
	int close_rc = 0;
	struct tl_pcapw_stats pst;
	bool have_pst = false;
	struct tl_corpus *corpus = NULL;
	struct tl_probe *probe = NULL;
	struct tl_corpus_gen *gen = NULL;
	struct tl_corpus_conf cc;
	struct sigaction sa = {.sa_handler = on_stop}, old_int, old_term;
	char msg[512];
	double t0, secs;
	int rc, exit_code = TL_EXIT_FAIL;

	memset(&s, 0, sizeof(s));
	s.fd = -1;
	rc = parse_opts(argc, argv, &o);
	if (rc > 0)
		return TL_EXIT_OK;
	if (rc < 0)
		return TL_EXIT_USAGE;
	if (o.data == NULL)
		o.data = getenv("TAPLINE_DATA");
	if (o.data == NULL || o.data[0] == '\0')
		o.data = TL_DATA_DIR;
	if (!o.have_count && o.queries == 0 && o.duration == 0)
		o.count = DEFAULT_COUNT;

	tl_corpus_conf_defaults(&cc);
	cc.seed = o.seed;
	cc.max_queries = o.queries;
	cc.error_share = o.error_share;
	cc.malformed_share = o.malformed_share;
	cc.late_share = o.late_share;
	cc.late_ms = o.late_ms;
	cc.max_event_size = o.max_event_size;
	cc.max_string = o.max_string;
	cc.max_depth = o.max_depth;
	cc.id_max_len = o.id_max_len;
	cc.truth = o.truth != NULL;

	s.o = &o;
	tl_corpus_rng_seed(&s.rng, o.seed ^ 0x67656eull);
	if (o.udp) {
		/* Framed: the producer makes its own socket to the checked address. */
		if (o.framed)
			rc = resolve_udp(o.udp, o.any_destination, &s.dst, &s.dstlen);
		else
			rc = open_udp(o.udp, o.any_destination, &s.fd, &s.dst, &s.dstlen);
		if (rc)
			return rc == 2 ? TL_EXIT_USAGE : TL_EXIT_FAIL;
	}
	rc = tl_corpus_load(o.data, &corpus, msg, sizeof(msg));
	if (rc) {
		fprintf(stderr, "gen: data: %s\n", rc == -ENOMEM ? "out of memory" : msg);
		goto out;
	}
	rc = tl_corpus_gen_create(corpus, &cc, &gen);
	if (rc) {
		fprintf(stderr, "gen: these limits leave no room for the events: %s\n",
		        tl_strerror(rc));
		exit_code = TL_EXIT_USAGE;
		goto out;
	}
	if (o.malformed_share > 0) {
		uint32_t m = tl_corpus_gen_faults(gen);

		if (!(m & (1u << TL_FAULT_STRING_LONG)))
			fprintf(stderr, "gen: note: no json_string_too_long events (max_string is "
			                "too close to max_event_size and --id-max-len is 0)\n");
		if (!(m & (1u << TL_FAULT_TOO_LARGE)))
			fprintf(stderr, "gen: note: no event_too_large events (max_event_size "
			                "leaves no room in a UDP datagram)\n");
	}
	s.buf = malloc(TL_PCAPW_UDP_MAX + 16);
	if (s.buf == NULL) {
		fprintf(stderr, "gen: out of memory\n");
		goto out;
	}
	if (o.pcap) {
		struct tl_pcapw_conf pc;

		tl_pcapw_conf_defaults(&pc);
		pc.path = o.pcap;
		pc.shards = (uint32_t)o.shards;
		pc.port = (uint16_t)o.port;
		pc.mtu = (uint32_t)o.mtu;
		pc.datagram_size = (uint32_t)o.datagram_size;
		pc.ipv6_share = o.ipv6_share;
		pc.vlan_share = o.vlan_share;
		pc.fault_share = o.fault_share;
		pc.noise_share = o.noise_share;
		pc.seed = o.seed;
		rc = tl_pcapw_open(&pc, &s.pw, msg, sizeof(msg));
		if (rc) {
			fprintf(stderr, "gen: pcap: %s\n", msg);
			exit_code = rc == -EINVAL ? TL_EXIT_USAGE : TL_EXIT_FAIL;
			goto out;
		}
		s.start_ns = pc.start_ns;
	}
	if (o.framed) {
		exit_code = framed_open(&s);
		if (exit_code != TL_EXIT_OK)
			goto out;
		exit_code = TL_EXIT_FAIL;
	}
	if (o.truth) {
		s.truth = fopen(o.truth, "w");
		if (s.truth == NULL) {
			fprintf(stderr, "gen: %s: %s\n", o.truth, strerror(errno));
			goto out;
		}
		setvbuf(s.truth, NULL, _IOFBF, 1 << 20);
	}

	gen_stop = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	t0 = now_s();
	s.deadline = o.duration > 0 ? t0 + o.duration : 0;
	s.bucket = (struct bucket){
	        .rate = o.rate, .burst = o.rate / 50 > 64 ? o.rate / 50 : 64, .last = t0};
	rc = 0;
	if (o.probe) {
		uint64_t max = o.count ? o.count / o.probe_every + 2 : 1u << 20;

		rc = tl_probe_start(o.probe, (uint32_t)(max < (1u << 20) ? max : 1u << 20),
		        o.probe_netns, &probe);
		if (rc < 0) {
			fprintf(stderr, "gen: --probe %s: %s\n", o.probe, strerror(-rc));
			goto out;
		}
	}
	while (!gen_stop && !s.framed_stop && (o.count == 0 || s.events < o.count)) {
		struct tl_corpus_event ev;

		if (probe && s.events % o.probe_every == 0) {
			/* A probe is an ordinary valid event: it rides the same datagrams. */
			static char line[1024];
			struct tl_corpus_event pe = {.reason = TL_REASON_OK};

			pe.len = tl_probe_make(probe, line, sizeof(line));
			pe.data = (const uint8_t *)line;
			pe.seq = s.events;
			if (pe.len && (rc = add_event(&s, &pe)) != 0)
				break;
			if (o.count && s.events >= o.count)
				break;
		}

		if (s.deadline > 0 && (s.events & 63) == 0 && now_s() >= s.deadline)
			break;
		rc = tl_corpus_next(gen, &ev);
		if (rc == -ENODATA) {
			rc = 0;
			break;
		}
		rc = s.prod ? send_framed(&s, &ev) : add_event(&s, &ev);
		if (rc)
			break;
	}
	if (rc == 0)
		rc = flush_datagram(&s);
	secs = now_s() - t0;
	/* Still under the signal handlers: SIGINT ends the wait for ACKs. */
	if (rc == 0 && s.prod) {
		framed_finish(&s, &fst, &close_rc);
		s.datagrams = fst.frames_sealed;
	}
	if (probe) {
		tl_probe_finish(probe, (uint64_t)(o.probe_wait * 1e9), stdout);
		probe = NULL;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (rc)
		goto out;
	if (s.truth) {
		FILE *f = s.truth;

		s.truth = NULL;
		if (ferror(f) | fclose(f)) {
			fprintf(stderr, "gen: %s: write failed\n", o.truth);
			goto out;
		}
	}
	if (s.pw) {
		struct tl_pcapw *pw = s.pw;

		/* Keep the writer's counters for the summary; closing frees them. */
		pst = *tl_pcapw_stats(pw);
		s.pw = NULL;
		if (tl_pcapw_close(pw) != 0) {
			fprintf(stderr, "gen: %s: write failed\n", o.pcap);
			goto out;
		}
		have_pst = true;
	}
	if (o.summary && write_summary(&s, have_pst ? &pst : NULL, o.summary) != 0)
		goto out;
	printf("figure gen_events %" PRIu64 "\n", s.events);
	printf("figure gen_datagrams %" PRIu64 "\n", s.datagrams);
	printf("figure gen_bytes %" PRIu64 "\n", s.bytes);
	if (o.udp) {
		printf("figure gen_rate %.0f events/s\n", secs > 0 ? (double)s.events / secs : 0.0);
		if (s.send_errors)
			printf("figure gen_send_errors %" PRIu64 "\n", s.send_errors);
	}
	if (o.framed)
		print_framed(&s, &fst, close_rc);
	fflush(stdout);
	exit_code = o.framed ? framed_exit_code(&s, &fst, close_rc) : TL_EXIT_OK;
out:
	if (probe)
		tl_probe_finish(probe, 0, stderr);
	if (s.truth)
		fclose(s.truth);
	tl_pcapw_close(s.pw);
	if (s.fd >= 0)
		close(s.fd);
	/* An early exit: keep what is unanswered on disk for the next run. */
	tl_producer_close(s.prod, 0);
	free(s.buf);
	tl_corpus_gen_free(gen);
	tl_corpus_free(corpus);
	return exit_code;
}
