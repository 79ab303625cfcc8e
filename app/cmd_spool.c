/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline spool stat|dump|replay`: look into the LMDB spool and drain it.
 *
 * stat and dump open the spool read-only, so they work beside a running appliance (LMDB
 * readers never block its writer). Records are copied out of the read transaction before
 * anything slow (inflating, printing) happens, so a paused pipe never pins the
 * appliance's pages. Every record is treated as hostile: tl_batch_parse() validates the
 * batch frame and the RowBinary decoder below checks every length against the row's end
 * before reading, so a damaged or foreign record is reported, never trusted.
 *
 * replay opens the spool read-write (refused with -EBUSY while an appliance holds it) and
 * runs the ordinary uplink thread until the spool is empty or the timeout passes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tl_app.h"
#include "tl_batch.h"
#include "tl_classify.h"
#include "tl_cmd.h"
#include "tl_encode.h"
#include "tl_error.h"
#include "tl_log.h"
#include "tl_opt.h"
#include "tl_spool.h"
#include "tl_uplink.h"

#define NSEC UINT64_C(1000000000)
#define DEFAULT_REPLAY_TIMEOUT (300 * NSEC)
/* Records per read transaction while scanning headers (stat). */
#define SCAN_CHUNK 1024
/* Bytes of a quarantined or invalid record shown as hex. */
#define HEX_PREFIX 32

enum sub { SUB_STAT, SUB_DUMP, SUB_REPLAY };

static const char *const sub_names[] = {"stat", "dump", "replay"};

/* Which options a subcommand accepts (bit per option letter index below). */
#define O_CONFIG 0x001u
#define O_SPOOL 0x002u
#define O_FROM 0x004u
#define O_COUNT 0x008u
#define O_ROWS 0x010u
#define O_QUAR 0x020u
#define O_CH 0x040u
#define O_TIMEOUT 0x080u

static const unsigned sub_allowed[] = {
        [SUB_STAT] = O_CONFIG | O_SPOOL,
        [SUB_DUMP] = O_CONFIG | O_SPOOL | O_FROM | O_COUNT | O_ROWS | O_QUAR,
        [SUB_REPLAY] = O_CONFIG | O_SPOOL | O_CH | O_TIMEOUT,
};

struct spool_opts {
	const char *config;
	const char *spool_dir;
	uint64_t from_key;
	uint64_t count; /* 0: all */
	bool rows;
	bool quarantine;
	const char *clickhouse;
	uint64_t timeout_ns;
};

static volatile sig_atomic_t stop_flag;

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* ---- usage ---- */

static void
spool_usage(FILE *f)
{
	fprintf(f, "usage: tapline spool stat|dump|replay [options]\n"
	           "\n"
	           "Inspect and drain the durable LMDB spool between the pipeline and the uplink.\n"
	           "\n"
	           "  stat     records, size, age and per-table rows of what the spool holds\n"
	           "  dump     one line per record (or per row with --rows)\n"
	           "  replay   deliver everything the spool holds to ClickHouse, then stop\n"
	           "\n"
	           "'tapline spool <command> --help' describes a command's options.\n"
	           "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n");
}

static void
stat_usage(FILE *f)
{
	fprintf(f, "usage: tapline spool stat [--config PROFILE | --spool DIR]\n"
	           "\n"
	           "Open the spool read-only (safe while the appliance runs) and print its state:\n"
	           "records, bytes, age of the oldest record, next key, map size / used / max,\n"
	           "high-water mark, quarantined records and, per table, batches, rows and the\n"
	           "oldest and newest event time; then the same as 'figure spool_<name> <value>'\n"
	           "lines.\n"
	           "\n"
	           "  -c, --config FILE   profile or site file: its spool.path and sizes\n"
	           "  -s, --spool DIR     the spool's folder (overrides spool.path)\n"
	           "  -v, --verbose       debug logging\n"
	           "  -h, --help          this text\n"
	           "\n"
	           "Exit codes: 0 ok, 1 the spool cannot be opened or read, 2 usage error.\n");
}

static void
dump_usage(FILE *f)
{
	fprintf(f,
	        "usage: tapline spool dump [--config PROFILE | --spool DIR] [--from KEY]\n"
	        "                          [--count N] [--rows] [--quarantine]\n"
	        "\n"
	        "Print one line per spool record, in key order: key, created time, producer,\n"
	        "table, rows, batch id, body bytes stored/uncompressed, compression, event\n"
	        "time range. Opens the spool read-only (safe while the appliance runs).\n"
	        "\n"
	        "  -c, --config FILE   profile or site file (its spool.path; its schema for "
	        "--rows)\n"
	        "  -s, --spool DIR     the spool's folder (overrides spool.path)\n"
	        "  -f, --from KEY      start at this key (default: the oldest record)\n"
	        "  -n, --count N       at most N records (default: all)\n"
	        "  -r, --rows          after each record line, its rows as one JSON object per\n"
	        "                      line (needs --config: the profile's schema decodes them;\n"
	        "                      'grep ^{' keeps only the rows)\n"
	        "  -q, --quarantine    list the quarantine instead: key, length and the first\n"
	        "                      %d bytes in hex of each damaged record\n"
	        "  -v, --verbose       debug logging\n"
	        "  -h, --help          this text\n"
	        "\n"
	        "Exit codes: 0 every record shown; 1 the spool cannot be opened, or a record is\n"
	        "not a valid batch or does not decode (reported, the dump goes on); 2 usage.\n",
	        HEX_PREFIX);
}

static void
replay_usage(FILE *f)
{
	fprintf(f, "usage: tapline spool replay --config PROFILE [--spool DIR] [--clickhouse URL]\n"
	           "                            [--timeout DUR]\n"
	           "\n"
	           "Deliver everything the spool holds to ClickHouse without capturing (after\n"
	           "the appliance is retired, or to ship what a dead uplink left), then stop.\n"
	           "Needs the spool to itself: stop the appliance first.\n"
	           "\n"
	           "  -c, --config FILE      profile or site file (required: schema and uplink)\n"
	           "  -s, --spool DIR        the spool's folder (overrides spool.path)\n"
	           "  -C, --clickhouse URL   deliver to this ClickHouse (overrides uplink.url),\n"
	           "                         e.g. http://127.0.0.1:8123/?database=telemetry\n"
	           "  -t, --timeout DUR      longest wait for delivery (default 300s)\n"
	           "  -v, --verbose          debug logging\n"
	           "  -h, --help             this text\n"
	           "\n"
	           "Prints 'figure delivered_rows_<table> N' and 'figure quarantined_rows N'.\n"
	           "Exit codes: 0 the spool is empty afterwards, 1 records are left (or the\n"
	           "spool cannot be opened), 2 usage or configuration error.\n");
}

static void (*const sub_usage[])(FILE *) = {
        [SUB_STAT] = stat_usage,
        [SUB_DUMP] = dump_usage,
        [SUB_REPLAY] = replay_usage,
};

/* ---- options ---- */

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return (*end || errno) ? -EINVAL : 0;
}

/* @return 0 to go on, 1 after --help (exit 0), -EINVAL on a usage error (reported). */
static int
parse_opts(enum sub sub, int argc, char **argv, struct spool_opts *o)
{
	static const struct option lo[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"spool", required_argument, NULL, 's'},
	        {"from", required_argument, NULL, 'f'},
	        {"count", required_argument, NULL, 'n'},
	        {"rows", no_argument, NULL, 'r'},
	        {"quarantine", no_argument, NULL, 'q'},
	        {"clickhouse", required_argument, NULL, 'C'},
	        {"timeout", required_argument, NULL, 't'},
	        {"verbose", no_argument, NULL, 'v'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *name = sub_names[sub];
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_ns = DEFAULT_REPLAY_TIMEOUT;
	/* Options follow the subcommand: parse argv[1..] with it as the program name. */
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "c:s:f:n:rqC:t:vh", lo, NULL)) != -1) {
		unsigned bit = 0;

		switch (c) {
		case 'c':
			bit = O_CONFIG;
			o->config = optarg;
			break;
		case 's':
			bit = O_SPOOL;
			o->spool_dir = optarg;
			break;
		case 'f':
			bit = O_FROM;
			if (parse_u64(optarg, &o->from_key) < 0) {
				fprintf(stderr, "tapline spool %s: --from takes a key (a number)\n",
				        name);
				return -EINVAL;
			}
			break;
		case 'n':
			bit = O_COUNT;
			if (parse_u64(optarg, &o->count) < 0 || o->count == 0) {
				fprintf(stderr, "tapline spool %s: --count takes a number >= 1\n",
				        name);
				return -EINVAL;
			}
			break;
		case 'r':
			bit = O_ROWS;
			o->rows = true;
			break;
		case 'q':
			bit = O_QUAR;
			o->quarantine = true;
			break;
		case 'C':
			bit = O_CH;
			o->clickhouse = optarg;
			break;
		case 't':
			bit = O_TIMEOUT;
			if (tl_parse_duration(optarg, &o->timeout_ns) < 0) {
				fprintf(stderr,
				        "tapline spool %s: --timeout: '%s' is not a duration\n",
				        name, optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			tl_log_set_level(TL_LOG_DEBUG);
			break;
		case 'h':
			sub_usage[sub](stdout);
			return 1;
		default:
			sub_usage[sub](stderr);
			return -EINVAL;
		}
		if (bit && !(sub_allowed[sub] & bit)) {
			const char *opt = "?";

			for (const struct option *l = lo; l->name; l++)
				if (l->val == c)
					opt = l->name;
			fprintf(stderr, "tapline spool %s: --%s does not apply to %s\n", name, opt,
			        name);
			sub_usage[sub](stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "tapline spool %s: unexpected argument '%s'\n", name,
		        argv[optind + 1]);
		sub_usage[sub](stderr);
		return -EINVAL;
	}
	if (o->config == NULL && o->spool_dir == NULL) {
		fprintf(stderr, "tapline spool %s: %s\n", name,
		        sub == SUB_REPLAY ? "--config is required" : "give --config or --spool");
		sub_usage[sub](stderr);
		return -EINVAL;
	}
	if (sub == SUB_REPLAY && o->config == NULL) {
		fprintf(stderr, "tapline spool replay: --config is required (the schema and the "
		                "uplink settings come from the profile)\n");
		return -EINVAL;
	}
	if (o->rows && o->config == NULL) {
		fprintf(stderr, "tapline spool dump: --rows needs --config (rows are decoded with "
		                "the profile's schema)\n");
		return -EINVAL;
	}
	if (o->rows && o->quarantine) {
		fprintf(stderr, "tapline spool dump: --rows and --quarantine exclude each other "
		                "(quarantined records failed verification: only their bytes are "
		                "shown)\n");
		return -EINVAL;
	}
	if (o->spool_dir && strlen(o->spool_dir) >= TL_SPOOL_PATH_LEN) {
		fprintf(stderr, "tapline spool %s: --spool: path longer than %d bytes\n", name,
		        TL_SPOOL_PATH_LEN - 1);
		return -EINVAL;
	}
	return 0;
}

/*
 * The spool settings (and, if asked, the schema) from --config, or the defaults with
 * --spool alone. @return an exit code, or -1 to go on.
 */
static int
load_conf(enum sub sub, const struct spool_opts *o, struct tl_app_config *cfg,
        struct tl_schema **schema)
{
	int rc;

	if (o->config) {
		rc = tl_app_load(o->config, cfg, schema, stderr);
		if (rc < 0) {
			if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
				fprintf(stderr, "%s: %s\n", o->config, tl_strerror(rc));
			return rc == -ENOMEM ? TL_EXIT_FAIL : TL_EXIT_USAGE;
		}
	} else {
		memset(cfg, 0, sizeof(*cfg));
		rc = tl_opt_defaults(tl_spool_opts, &cfg->spool);
		if (rc < 0) {
			fprintf(stderr, "tapline spool %s: spool defaults: %s\n", sub_names[sub],
			        tl_strerror(rc));
			return TL_EXIT_FAIL;
		}
	}
	if (o->spool_dir)
		snprintf(cfg->spool.path, sizeof(cfg->spool.path), "%s", o->spool_dir);
	return -1;
}

/* Say why a spool could not be opened, in an operator's terms. */
static void
explain_open_error(const char *path, int rc)
{
	struct stat st;
	char file[TL_SPOOL_PATH_LEN + 16];

	/* LMDB reports an empty or cut-short data file as an odd errno (EBADF, EINVAL). */
	snprintf(file, sizeof(file), "%s/data.mdb", path);
	if (rc != -ENOENT && rc != -EBUSY && rc != -EACCES && rc != -EPERM &&
	        stat(file, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < 2 * 4096)
		rc = TL_E_SPOOL_CORRUPT;
	switch (rc) {
	case -ENOENT:
		if (stat(path, &st) != 0)
			fprintf(stderr, "tapline spool: %s: no such folder\n", path);
		else if (!S_ISDIR(st.st_mode))
			fprintf(stderr, "tapline spool: %s: not a folder\n", path);
		else {
			if (access(file, F_OK) != 0)
				fprintf(stderr,
				        "tapline spool: %s: no spool in this folder (data.mdb "
				        "is missing)\n",
				        path);
			else
				fprintf(stderr,
				        "tapline spool: %s: not a tapline spool (its "
				        "databases are missing)\n",
				        path);
		}
		break;
	case -EACCES:
	case -EPERM:
	case -EROFS:
		fprintf(stderr,
		        "tapline spool: %s: permission denied (%s): run as the "
		        "appliance's user or root\n",
		        path, strerror(-rc));
		break;
	case -EBUSY:
		fprintf(stderr,
		        "tapline spool: %s is held by a running appliance (or another "
		        "replay): stop it first\n",
		        path);
		break;
	case TL_E_SPOOL_CORRUPT:
		fprintf(stderr,
		        "tapline spool: %s is damaged (data.mdb is not an intact LMDB file): "
		        "move the folder aside\n",
		        path);
		break;
	default:
		fprintf(stderr, "tapline spool: %s: %s\n", path, tl_strerror(rc));
		break;
	}
}

/* ---- formatting ---- */

/* ISO-8601 UTC with milliseconds; values gmtime cannot express print as raw ns. */
static void
fmt_time_ns(int64_t ns, char *buf, size_t len)
{
	int64_t sec = ns / (int64_t)NSEC, rem = ns % (int64_t)NSEC;
	struct tm tm;
	time_t t;

	if (rem < 0) {
		rem += (int64_t)NSEC;
		sec--;
	}
	t = (time_t)sec;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
		snprintf(buf, len, "%" PRId64 "ns", ns);
		return;
	}
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(rem / 1000000));
}

/* Seconds since the epoch with millisecond precision, for figure lines. */
static void
fmt_secs(int64_t ns, char *buf, size_t len)
{
	uint64_t abs = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;

	snprintf(buf, len, "%s%" PRIu64 ".%03u", ns < 0 ? "-" : "", abs / NSEC,
	        (unsigned)(abs % NSEC / 1000000));
}

static void
fmt_bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else
		snprintf(buf, len, "%.1f %s", d, unit[u]);
}

static void
put_hex(FILE *f, const uint8_t *p, size_t n)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		fputc(hx[p[i] >> 4], f);
		fputc(hx[p[i] & 15], f);
	}
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, surrogates, > 10FFFF). */
static size_t
utf8_len(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* A JSON string; bytes that are not UTF-8 (ClickHouse Strings are bytes) become U+FFFD. */
static void
put_json_str(FILE *f, const uint8_t *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		size_t l;

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c == '\n') {
			fputs("\\n", f);
			i++;
		} else if (c == '\r') {
			fputs("\\r", f);
			i++;
		} else if (c == '\t') {
			fputs("\\t", f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if ((l = utf8_len(s + i, n - i)) > 0) {
			fwrite(s + i, 1, l, f);
			i += l;
		} else {
			fputs("\\ufffd", f);
			i++;
		}
	}
	fputc('"', f);
}

/* ---- RowBinary rows ---- */

enum col_kind {
	K_STRING,
	K_INT64,
	K_UINT64,
	K_FLOAT64,
	K_UINT8,
	K_DATETIME,
	K_FIXED16,
	K_STRINGS,  /* Array(String) */
	K_SEVERITY, /* Enum8 of the classification's severities */
};

struct col_dec {
	const char *name;
	uint8_t kind;
	bool nullable;
};

/* One table's decoder, built from tl_encode_columns(). */
struct table_dec {
	struct tl_encode_col *cols;
	struct col_dec *dec;
	uint32_t n;
};

static int
parse_type(const char *type, struct col_dec *c)
{
	static const struct {
		const char *name;
		enum col_kind kind;
	} types[] = {
	        {"String", K_STRING},
	        {"Int64", K_INT64},
	        {"UInt64", K_UINT64},
	        {"Float64", K_FLOAT64},
	        {"UInt8", K_UINT8},
	        {"DateTime", K_DATETIME},
	        {"FixedString(16)", K_FIXED16},
	        {"Array(String)", K_STRINGS},
	        {TL_ENCODE_SEVERITY_TYPE, K_SEVERITY},
	};
	char inner[32];
	size_t len = strlen(type);

	c->nullable = false;
	if (strncmp(type, "Nullable(", 9) == 0 && len > 10 && type[len - 1] == ')' &&
	        len - 10 < sizeof(inner)) {
		memcpy(inner, type + 9, len - 10);
		inner[len - 10] = '\0';
		type = inner;
		c->nullable = true;
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i].name) == 0) {
			c->kind = (uint8_t)types[i].kind;
			return 0;
		}
	return -EINVAL;
}

static void
table_dec_fini(struct table_dec *td)
{
	free(td->cols);
	free(td->dec);
	memset(td, 0, sizeof(*td));
}

static int
table_dec_init(struct table_dec *td, const struct tl_schema *s, enum tl_batch_table t)
{
	int rc;

	memset(td, 0, sizeof(*td));
	td->cols = calloc(TL_ENCODE_MAX_COLS, sizeof(*td->cols));
	td->dec = calloc(TL_ENCODE_MAX_COLS, sizeof(*td->dec));
	if (td->cols == NULL || td->dec == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = tl_encode_columns(s, t, td->cols, TL_ENCODE_MAX_COLS, &td->n);
	if (rc < 0)
		goto fail;
	for (uint32_t i = 0; i < td->n; i++) {
		td->dec[i].name = td->cols[i].name;
		if (parse_type(td->cols[i].type, &td->dec[i]) < 0) {
			fprintf(stderr,
			        "tapline spool dump: %s column %s has type %s, which this "
			        "build cannot decode\n",
			        tl_batch_table_name(t), td->cols[i].name, td->cols[i].type);
			table_dec_fini(td);
			return -ENOTSUP;
		}
	}
	return 0;
fail:
	fprintf(stderr, "tapline spool dump: %s columns: %s\n", tl_batch_table_name(t),
	        rc == TL_E_SCHEMA ? "a profile column's name collides with one of tapline's"
	                          : tl_strerror(rc));
	table_dec_fini(td);
	return rc;
}

struct rd {
	const uint8_t *p, *end;
};

static int
rd_take(struct rd *r, size_t n, const uint8_t **at)
{
	if ((size_t)(r->end - r->p) < n)
		return -EBADMSG;
	*at = r->p;
	r->p += n;
	return 0;
}

/* RowBinary string length: unsigned LEB128, at most 10 bytes, not past the row. */
static int
rd_varint(struct rd *r, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b;

		if (r->p >= r->end)
			return -EBADMSG;
		b = *r->p++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EBADMSG;
}

/*
 * Decode one row; with @p f NULL only check that it decodes and ends exactly at its end,
 * so a row is printed only once it is known to be whole.
 * @return 0, or -EBADMSG with the failing column's index in *bad_col (n: trailing bytes).
 */
static int
decode_row(FILE *f, const struct table_dec *td, const uint8_t *row, size_t len, uint32_t *bad_col)
{
	struct rd r = {row, row + len};

	if (f)
		fputc('{', f);
	for (uint32_t i = 0; i < td->n; i++) {
		const struct col_dec *c = &td->dec[i];
		const uint8_t *p;
		uint64_t v;

		*bad_col = i;
		if (f) {
			if (i)
				fputc(',', f);
			put_json_str(f, (const uint8_t *)c->name, strlen(c->name));
			fputc(':', f);
		}
		if (c->nullable) {
			if (rd_take(&r, 1, &p) < 0 || p[0] > 1)
				return -EBADMSG;
			if (p[0] == 1) {
				if (f)
					fputs("null", f);
				continue;
			}
		}
		switch (c->kind) {
		case K_STRING:
			if (rd_varint(&r, &v) < 0 || v > (uint64_t)(r.end - r.p) ||
			        rd_take(&r, (size_t)v, &p) < 0)
				return -EBADMSG;
			if (f)
				put_json_str(f, p, (size_t)v);
			break;
		case K_INT64:
			if (rd_take(&r, 8, &p) < 0)
				return -EBADMSG;
			if (f)
				fprintf(f, "%" PRId64, (int64_t)tl_batch_le64(p));
			break;
		case K_UINT64:
			if (rd_take(&r, 8, &p) < 0)
				return -EBADMSG;
			if (f)
				fprintf(f, "%" PRIu64, tl_batch_le64(p));
			break;
		case K_FLOAT64: {
			double d;

			if (rd_take(&r, 8, &p) < 0)
				return -EBADMSG;
			v = tl_batch_le64(p);
			memcpy(&d, &v, sizeof(d));
			if (f) {
				/* JSON has no NaN or infinity. */
				if (isfinite(d))
					fprintf(f, "%.17g", d);
				else
					fputs("null", f);
			}
			break;
		}
		case K_UINT8:
			if (rd_take(&r, 1, &p) < 0)
				return -EBADMSG;
			if (f)
				fprintf(f, "%u", p[0]);
			break;
		case K_DATETIME: {
			char ts[64];
			struct tm tm;
			time_t t;

			if (rd_take(&r, 4, &p) < 0)
				return -EBADMSG;
			if (f) {
				t = (time_t)tl_batch_le32(p);
				if (gmtime_r(&t, &tm) == NULL)
					snprintf(ts, sizeof(ts), "%u", tl_batch_le32(p));
				else
					snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02dZ",
					        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
					        tm.tm_hour, tm.tm_min, tm.tm_sec);
				put_json_str(f, (const uint8_t *)ts, strlen(ts));
			}
			break;
		}
		case K_FIXED16:
			if (rd_take(&r, 16, &p) < 0)
				return -EBADMSG;
			if (f) {
				fputc('"', f);
				put_hex(f, p, 16);
				fputc('"', f);
			}
			break;
		case K_STRINGS: {
			uint64_t k;

			/* Every element takes a byte at least: a count beyond the row is no row. */
			if (rd_varint(&r, &k) < 0 || k > (uint64_t)(r.end - r.p))
				return -EBADMSG;
			if (f)
				fputc('[', f);
			for (uint64_t j = 0; j < k; j++) {
				if (rd_varint(&r, &v) < 0 || v > (uint64_t)(r.end - r.p) ||
				        rd_take(&r, (size_t)v, &p) < 0)
					return -EBADMSG;
				if (f) {
					if (j)
						fputc(',', f);
					put_json_str(f, p, (size_t)v);
				}
			}
			if (f)
				fputc(']', f);
			break;
		}
		case K_SEVERITY: {
			const char *name;

			if (rd_take(&r, 1, &p) < 0 || p[0] >= TL_CLASSIFY_SEV_MAX)
				return -EBADMSG;
			name = tl_classify_severity_name(p[0]);
			if (f)
				put_json_str(f, (const uint8_t *)name, strlen(name));
			break;
		}
		default:
			return -EBADMSG;
		}
	}
	*bad_col = td->n;
	if (r.p != r.end)
		return -EBADMSG;
	if (f)
		fputs("}\n", f);
	return 0;
}

/* ---- reading records ---- */

/* A record copied out of the read transaction. */
struct rec_copy {
	struct tl_spool_rec rec;
	uint8_t *buf;
	size_t cap;
	int err;
};

static int
copy_rec(void *arg, const struct tl_spool_rec *rec)
{
	struct rec_copy *c = arg;

	if (rec->len > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		uint8_t *b;

		while (cap < rec->len)
			cap *= 2;
		b = realloc(c->buf, cap);
		if (b == NULL) {
			c->err = -ENOMEM;
			return -1;
		}
		c->buf = b;
		c->cap = cap;
	}
	if (rec->len)
		memcpy(c->buf, rec->data, rec->len);
	c->rec = *rec;
	c->rec.data = c->buf;
	/* One record per transaction: the caller's printing happens outside it. */
	return 1;
}

/* ---- stat ---- */

struct table_sum {
	uint64_t batches, rows, stored, raw;
	int64_t oldest_ns, newest_ns;
};

struct scan {
	struct table_sum t[TL_BATCH_TABLE_MAX];
	uint64_t records, bytes, invalid;
};

static int
scan_rec(void *arg, const struct tl_spool_rec *rec)
{
	struct scan *s = arg;
	struct tl_batch_view v;
	struct table_sum *t;

	s->records++;
	s->bytes += rec->len;
	if (tl_batch_parse(rec->data, rec->len, &v) != 0) {
		s->invalid++;
		return 0;
	}
	t = &s->t[v.hdr.table];
	if (t->batches == 0 || v.hdr.min_event_ns < t->oldest_ns)
		t->oldest_ns = v.hdr.min_event_ns;
	if (t->batches == 0 || v.hdr.max_event_ns > t->newest_ns)
		t->newest_ns = v.hdr.max_event_ns;
	t->batches++;
	t->rows += v.hdr.rows;
	t->stored += v.hdr.body_len;
	t->raw += v.raw_len;
	return 0;
}

static int
do_stat(const struct tl_app_config *cfg, bool from_profile)
{
	struct tl_spool *sp = NULL;
	struct tl_spool_stats st;
	struct scan s;
	uint64_t next = 0;
	char a[64], b[64], c[64], d[64];
	int rc, n;

	rc = tl_spool_open(&cfg->spool, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp);
	if (rc < 0) {
		explain_open_error(cfg->spool.path, rc);
		return TL_EXIT_FAIL;
	}
	tl_spool_stats(sp, &st);
	memset(&s, 0, sizeof(s));
	do {
		n = tl_spool_read(sp, next, SCAN_CHUNK, scan_rec, &s, &next);
	} while (n > 0);
	tl_spool_close(sp);
	if (n < 0) {
		fprintf(stderr, "tapline spool stat: reading %s: %s\n", cfg->spool.path,
		        tl_strerror(n));
		return TL_EXIT_FAIL;
	}

	printf("spool %s (read-only snapshot)\n", cfg->spool.path);
	fmt_bytes(st.bytes, a, sizeof(a));
	printf("  records      %" PRIu64 " (%s of batches)", st.records, a);
	if (st.records)
		printf(", oldest written %.1f s ago", (double)st.oldest_age_ns / 1e9);
	printf("\n  next key     %" PRIu64 "\n", st.next_key);
	fmt_bytes(st.map_size, a, sizeof(a));
	fmt_bytes(st.used_bytes, b, sizeof(b));
	fmt_bytes(st.max_size, c, sizeof(c));
	fmt_bytes(st.high_water_bytes, d, sizeof(d));
	printf("  map          %s, %s used, max %s, high-water %s%s%s\n", a, b, c, d,
	        st.full ? " (FULL: the full policy applies)" : "",
	        from_profile ? ""
	                     : "\n               (max and high-water are the defaults: "
	                       "give --config for the profile's)");
	printf("  quarantine   %" PRIu64 " record(s)", st.quarantine_records);
	if (st.quarantined)
		printf("; %" PRIu64 " damaged record(s) not yet quarantined (the appliance "
		       "moves them at its next start)",
		        st.quarantined);
	printf("\n");
	if (s.invalid)
		printf("  invalid      %" PRIu64 " record(s) are not valid batches "
		       "(the uplink quarantines them)\n",
		        s.invalid);
	printf("  %-13s %9s %12s %12s  %-24s  %s\n", "table", "batches", "rows", "stored",
	        "oldest event", "newest event");
	for (unsigned t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		const struct table_sum *ts = &s.t[t];

		fmt_bytes(ts->stored, c, sizeof(c));
		if (ts->batches) {
			fmt_time_ns(ts->oldest_ns, a, sizeof(a));
			fmt_time_ns(ts->newest_ns, b, sizeof(b));
		} else {
			snprintf(a, sizeof(a), "-");
			snprintf(b, sizeof(b), "-");
		}
		printf("  %-13s %9" PRIu64 " %12" PRIu64 " %12s  %-24s  %s\n",
		        tl_batch_table_name(t), ts->batches, ts->rows, c, a, b);
	}

	printf("figure spool_records %" PRIu64 "\n", st.records);
	printf("figure spool_bytes %" PRIu64 "\n", st.bytes);
	printf("figure spool_oldest_age_s %.3f\n", (double)st.oldest_age_ns / 1e9);
	printf("figure spool_next_key %" PRIu64 "\n", st.next_key);
	printf("figure spool_map_size_bytes %" PRIu64 "\n", st.map_size);
	printf("figure spool_map_used_bytes %" PRIu64 "\n", st.used_bytes);
	printf("figure spool_map_max_bytes %" PRIu64 "\n", st.max_size);
	printf("figure spool_high_water_bytes %" PRIu64 "\n", st.high_water_bytes);
	printf("figure spool_full %" PRIu64 "\n", st.full);
	printf("figure spool_quarantined_records %" PRIu64 "\n", st.quarantine_records);
	printf("figure spool_damaged_records %" PRIu64 "\n", st.quarantined);
	printf("figure spool_invalid_batches %" PRIu64 "\n", s.invalid);
	for (unsigned t = 0; t < TL_BATCH_TABLE_MAX; t++) {
		const struct table_sum *ts = &s.t[t];
		const char *name = tl_batch_table_name(t);

		printf("figure spool_batches_%s %" PRIu64 "\n", name, ts->batches);
		printf("figure spool_rows_%s %" PRIu64 "\n", name, ts->rows);
		if (ts->batches) {
			fmt_secs(ts->oldest_ns, a, sizeof(a));
			fmt_secs(ts->newest_ns, b, sizeof(b));
			printf("figure spool_oldest_event_%s %s s\n", name, a);
			printf("figure spool_newest_event_%s %s s\n", name, b);
		}
	}
	return fflush(stdout) == 0 ? TL_EXIT_OK : TL_EXIT_FAIL;
}

/* ---- dump ---- */

struct dumper {
	struct table_dec td[TL_BATCH_TABLE_MAX];
	bool rows;
	uint8_t *raw;
	size_t raw_cap;
	uint64_t bad;
};

static void
dump_rows(struct dumper *d, const struct tl_spool_rec *rec, const struct tl_batch_view *v)
{
	const struct table_dec *td = &d->td[v->hdr.table];
	const uint8_t *body;
	uint32_t bad_col;
	int rc;

	if (v->hdr.flags & TL_BATCH_F_COMPRESSED && v->raw_len > d->raw_cap) {
		uint8_t *b = realloc(d->raw, v->raw_len);

		if (b == NULL) {
			fprintf(stderr,
			        "tapline spool dump: key %" PRIu64 ": no memory to inflate %u "
			        "bytes\n",
			        rec->key, v->raw_len);
			d->bad++;
			return;
		}
		d->raw = b;
		d->raw_cap = v->raw_len;
	}
	rc = tl_batch_inflate(v, d->raw, d->raw_cap, &body);
	if (rc < 0) {
		fprintf(stderr, "tapline spool dump: key %" PRIu64 ": body does not inflate: %s\n",
		        rec->key, tl_strerror(rc));
		d->bad++;
		return;
	}
	for (uint32_t i = 0; i < v->hdr.rows; i++) {
		uint32_t s = tl_batch_row_start(v, i), e = tl_batch_row_end(v, i);

		/* tl_batch_parse checked the ends increase and the last is raw_len. */
		if (decode_row(NULL, td, body + s, e - s, &bad_col) < 0) {
			fprintf(stderr,
			        "tapline spool dump: key %" PRIu64 " row %u: does not decode "
			        "as the profile's %s row (at column %s): rest of the batch "
			        "skipped\n",
			        rec->key, i, tl_batch_table_name(v->hdr.table),
			        bad_col < td->n ? td->dec[bad_col].name : "(trailing bytes)");
			d->bad++;
			return;
		}
		decode_row(stdout, td, body + s, e - s, &bad_col);
	}
}

static void
dump_record(struct dumper *d, const struct tl_spool_rec *rec)
{
	struct tl_batch_view v;
	char created[64], lo[64], hi[64];
	int rc;

	fmt_time_ns((int64_t)rec->created_ns, created, sizeof(created));
	rc = tl_batch_parse(rec->data, rec->len, &v);
	if (rc < 0) {
		printf("key=%" PRIu64 " created=%s producer=%u len=%u invalid=\"%s\" head=",
		        rec->key, created, rec->producer, rec->len,
		        rc == -EPROTONOSUPPORT ? "newer batch format" : "not a valid batch");
		put_hex(stdout, rec->data, rec->len < HEX_PREFIX ? rec->len : HEX_PREFIX);
		putchar('\n');
		d->bad++;
		return;
	}
	fmt_time_ns(v.hdr.min_event_ns, lo, sizeof(lo));
	fmt_time_ns(v.hdr.max_event_ns, hi, sizeof(hi));
	printf("key=%" PRIu64 " created=%s producer=%u table=%s rows=%u batch_id=%" PRIu64
	       " body=%u/%u compression=%s events=%s..%s\n",
	        rec->key, created, rec->producer, tl_batch_table_name(v.hdr.table), v.hdr.rows,
	        v.hdr.batch_id, v.hdr.body_len, v.raw_len,
	        (v.hdr.flags & TL_BATCH_F_GZIP)  ? "gzip"
	        : (v.hdr.flags & TL_BATCH_F_LZ4) ? "lz4"
	                                         : "none",
	        lo, hi);
	if (d->rows)
		dump_rows(d, rec, &v);
}

static void
dump_quarantined(const struct tl_spool_rec *rec)
{
	const uint8_t *p = rec->data;

	printf("key=%" PRIu64 " len=%u head=", rec->key, rec->len);
	put_hex(stdout, p, rec->len < HEX_PREFIX ? rec->len : HEX_PREFIX);
	printf("%s\n", rec->len > HEX_PREFIX ? "..." : "");
}

static int
do_dump(const struct tl_app_config *cfg, const struct tl_schema *schema, const struct spool_opts *o)
{
	struct tl_spool *sp = NULL;
	struct dumper d;
	struct rec_copy c = {0};
	uint64_t next = o->from_key, shown = 0;
	int rc, n = 0, code = TL_EXIT_OK;

	memset(&d, 0, sizeof(d));
	d.rows = o->rows;
	for (unsigned t = 0; d.rows && t < TL_BATCH_TABLE_MAX; t++) {
		rc = table_dec_init(&d.td[t], schema, (enum tl_batch_table)t);
		if (rc < 0) {
			code = rc == TL_E_SCHEMA ? TL_EXIT_USAGE : TL_EXIT_FAIL;
			goto out;
		}
	}
	rc = tl_spool_open(&cfg->spool, 0, TL_SPOOL_RDONLY, NULL, NULL, &sp);
	if (rc < 0) {
		explain_open_error(cfg->spool.path, rc);
		code = TL_EXIT_FAIL;
		goto out;
	}
	while (o->count == 0 || shown < o->count) {
		n = o->quarantine ? tl_spool_read_quarantine(sp, next, 1, copy_rec, &c, &next)
		                  : tl_spool_read(sp, next, 1, copy_rec, &c, &next);
		if (c.err < 0)
			n = c.err;
		if (n <= 0)
			break;
		if (o->quarantine)
			dump_quarantined(&c.rec);
		else
			dump_record(&d, &c.rec);
		shown++;
		/* A quarantined record with a malformed key reads as key 0: do not loop on it. */
		if (o->quarantine && c.rec.key == 0)
			break;
	}
	if (n < 0) {
		fprintf(stderr, "tapline spool dump: reading %s: %s\n", cfg->spool.path,
		        tl_strerror(n));
		code = TL_EXIT_FAIL;
	}
	if (d.bad) {
		fprintf(stderr,
		        "tapline spool dump: %" PRIu64 " record(s) could not be shown "
		        "completely\n",
		        d.bad);
		code = TL_EXIT_FAIL;
	}
	if (fflush(stdout) != 0)
		code = TL_EXIT_FAIL;
out:
	tl_spool_close(sp);
	free(c.buf);
	free(d.raw);
	for (unsigned t = 0; t < TL_BATCH_TABLE_MAX; t++)
		table_dec_fini(&d.td[t]);
	return code;
}

/* ---- replay ---- */

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static int
do_replay(struct tl_app_config *cfg, const struct tl_schema *schema, const struct spool_opts *o)
{
	struct tl_spool *sp = NULL;
	struct tl_uplink *u = NULL;
	struct tl_spool_stats before, after;
	struct tl_uplink_stats us;
	char file[TL_SPOOL_PATH_LEN + 16];
	uint64_t end;
	int rc, code = TL_EXIT_FAIL;

	/* A read-write open creates a missing spool: replaying nothing must be an error. */
	snprintf(file, sizeof(file), "%s/data.mdb", cfg->spool.path);
	if (access(file, F_OK) != 0) {
		explain_open_error(cfg->spool.path, -ENOENT);
		return TL_EXIT_FAIL;
	}
	if (o->clickhouse) {
		if (strlen(o->clickhouse) >= sizeof(cfg->uplink.url)) {
			fprintf(stderr, "tapline spool replay: --clickhouse: URL too long\n");
			return TL_EXIT_USAGE;
		}
		snprintf(cfg->uplink.url, sizeof(cfg->uplink.url), "%s", o->clickhouse);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* A peer closing an HTTP connection must not kill the replay. */
	signal(SIGPIPE, SIG_IGN);

	rc = tl_spool_open(&cfg->spool, 0, 0, NULL, NULL, &sp);
	if (rc < 0) {
		explain_open_error(cfg->spool.path, rc);
		return TL_EXIT_FAIL;
	}
	tl_spool_stats(sp, &before);
	TL_INFO("spool %s: %" PRIu64 " record(s), %" PRIu64 " bytes to deliver", cfg->spool.path,
	        before.records, before.bytes);
	rc = tl_uplink_start(&cfg->uplink, schema, sp, &u);
	if (rc < 0) {
		fprintf(stderr, "tapline spool replay: uplink: %s\n", tl_strerror(rc));
		goto out;
	}
	/* Drain in slices so SIGINT/SIGTERM end the wait promptly. */
	end = mono_ns() + o->timeout_ns;
	for (;;) {
		uint64_t now = mono_ns(), slice;

		if (stop_flag) {
			fprintf(stderr, "tapline spool replay: interrupted\n");
			break;
		}
		if (now >= end) {
			fprintf(stderr, "tapline spool replay: not everything was delivered within "
			                "--timeout\n");
			break;
		}
		slice = end - now < NSEC ? end - now : NSEC;
		if (tl_uplink_drain(u, slice) == 0)
			break;
	}
	tl_uplink_stats(u, &us);
	tl_uplink_stop(u);
	u = NULL;
	/* Acks the uplink queued are applied by the spool's writer: wait for them. */
	rc = tl_spool_flush(sp, 30 * NSEC);
	if (rc < 0)
		fprintf(stderr, "tapline spool replay: spool: final commit: %s\n", tl_strerror(rc));
	tl_spool_stats(sp, &after);
	if (after.records && !us.connected)
		fprintf(stderr, "tapline spool replay: ClickHouse never accepted the tables' DDL "
		                "(unreachable or refusing): check --clickhouse / uplink.url\n");
	for (unsigned t = 0; t < TL_BATCH_TABLE_MAX; t++)
		printf("figure delivered_rows_%s %" PRIu64 "\n", tl_batch_table_name(t),
		        us.rows_delivered[t]);
	printf("figure delivered_records %" PRIu64 "\n", us.records_delivered);
	printf("figure quarantined_rows %" PRIu64 "\n", us.rows_quarantined);
	printf("figure quarantined_records %" PRIu64 "\n", us.records_quarantined);
	printf("figure spool_damaged_records %" PRIu64 "\n", after.quarantined);
	printf("figure uplink_retries %" PRIu64 "\n", us.inserts_retry);
	printf("figure spool_records %" PRIu64 "\n", after.records);
	if (fflush(stdout) != 0)
		goto out;
	if (after.records == 0)
		code = TL_EXIT_OK;
	else
		fprintf(stderr, "tapline spool replay: %" PRIu64 " record(s) left in %s\n",
		        after.records, cfg->spool.path);
out:
	tl_uplink_stop(u);
	tl_spool_close(sp);
	return code;
}

/* ---- entry ---- */

int
tl_cmd_spool(int argc, char **argv)
{
	static struct tl_app_config cfg;
	struct tl_schema *schema = NULL;
	struct spool_opts o;
	enum sub sub;
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	                         strcmp(argv[1], "help") == 0)) {
		spool_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc < 2) {
		spool_usage(stderr);
		return TL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "stat") == 0) {
		sub = SUB_STAT;
	} else if (strcmp(argv[1], "dump") == 0) {
		sub = SUB_DUMP;
	} else if (strcmp(argv[1], "replay") == 0) {
		sub = SUB_REPLAY;
	} else {
		fprintf(stderr, "tapline spool: unknown command '%s'\n\n", argv[1]);
		spool_usage(stderr);
		return TL_EXIT_USAGE;
	}
	rc = parse_opts(sub, argc, argv, &o);
	if (rc != 0)
		return rc > 0 ? TL_EXIT_OK : TL_EXIT_USAGE;
	/* stat needs no schema; compiling it would only add failure modes. */
	rc = load_conf(sub, &o, &cfg, sub == SUB_STAT ? NULL : &schema);
	if (rc >= 0)
		return rc;
	switch (sub) {
	case SUB_STAT:
		rc = do_stat(&cfg, o.config != NULL);
		break;
	case SUB_DUMP:
		rc = do_dump(&cfg, schema, &o);
		break;
	case SUB_REPLAY:
	default:
		rc = do_replay(&cfg, schema, &o);
		break;
	}
	tl_schema_free(schema);
	return rc;
}
