/* SPDX-License-Identifier: BSD-3-Clause */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libdeflate.h>
#include <zstd.h>

#include "tl_ch.h"
#include "tl_chblock.h"
#include "tl_error.h"
#include "tl_hex.h"
#include "tl_log.h"

#define MS (UINT64_C(1000000))
#define SEC (UINT64_C(1000000000))
/* A password longer than this is almost certainly the wrong file. */
#define PASSWORD_CAP 1024
/* Enough of an error body for its first line and the code; the rest is discarded. */
#define RESP_CAP 1024
#define QUERY_RESP_MAX (UINT64_C(64) << 20)
/* Idle connections older than this are not reused: ClickHouse closes idle keep-alive
 * connections after keep_alive_timeout (3 s in the stock config.xml); reusing one the
 * server is closing makes a request fail after its body went out (an ambiguous outcome
 * for nothing). */
#define MAXAGE_CONN_S 2L
/* libcurl's default upload buffer is 64 KiB; larger chunks mean fewer syscalls for
 * multi-megabyte batches. */
#define UPLOAD_BUFFER (512L << 10)

const char *const tl_ch_compression_names[] = {"none", "gzip", "zstd", "lz4", "auto", NULL};

/* One request in flight: an easy handle and everything it needs, made at open. */
struct slot {
	CURL *easy;
	bool busy;
	/* the insert */
	uint64_t id;
	void *user;
	uint64_t t0;
	/* body as sent (the caller's or zbuf) and the read position */
	const unsigned char *body;
	size_t len;
	size_t off;
	/* Body bytes handed to libcurl, over every connection this transfer used. */
	uint64_t handed;
	bool refused_rewind;
	int encoding; /* enum tl_ch_compression of the body as sent */
	/* a streamed insert: raw bytes pulled so far are off; with LZ4 the compressed
	 * blocks of the last piece wait in zbuf[zoff, zlen) */
	tl_ch_pull_fn pull;
	bool pass; /* the pulled bytes are framed LZ4 blocks already: sent as they are */
	bool paused;
	size_t zoff, zlen;
	/* compressed output, grows to the largest body seen */
	unsigned char *zbuf;
	size_t zcap;
	char *url;
	size_t url_cap;
	/* answer: fixed for inserts, growing for tl_ch_query */
	char resp[RESP_CAP];
	size_t resp_len;
	bool collect;
	bool too_big;
	char *dyn;
	size_t dyn_len, dyn_cap;
	int hdr_code; /* X-ClickHouse-Exception-Code */
	char errbuf[CURL_ERROR_SIZE];
};

struct tl_ch {
	struct tl_uplink_conf conf;
	char base[TL_CH_URL_LEN]; /* URL without database=, ends in '?' or '&' */
	char database[TL_CH_NAME_LEN];
	char password[PASSWORD_CAP];
	size_t password_len;
	bool have_password;
	bool tls; /* https */
	CURLM *multi;
	struct curl_slist *hdr_plain, *hdr_gzip, *hdr_zstd, *hdr_chunked;
	struct libdeflate_compressor *gz;
	ZSTD_CCtx *zc;
	int codec;                          /* effective enum tl_ch_compression, never AUTO */
	char probe_url[TL_CH_URL_LEN + 64]; /* base + wait_end_of_query=1&decompress=1 */
	unsigned n_slots;
	unsigned n_free;
	unsigned *free_idx;
	struct slot *slots;
	struct slot query;
	struct tl_ch_result last;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void
curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* ---- names, URL ------------------------------------------------------------------- */

/* Database and table names are quoted with backquotes; refuse what would break out. */
static bool
valid_name(const char *s)
{
	size_t n = 0;

	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++, n++)
		if (*s == '`' || *s == '\\' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return n < TL_CH_NAME_LEN;
}

static bool
valid_format(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s))
			return false;
	return true;
}

static bool
valid_columns(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* [A-Za-z0-9_.:-]{1,64}: safe in a URL and in a quoted SQL string as is. */
static bool
valid_query_id(const char *id)
{
	size_t n = 0;

	if (id == NULL)
		return false;
	for (; id[n]; n++) {
		unsigned char c = (unsigned char)id[n];

		if (n >= TL_CH_QUERY_ID_MAX)
			return false;
		if (!isalnum(c) && c != '_' && c != '.' && c != ':' && c != '-')
			return false;
	}
	return n > 0;
}

/* Percent-decode [s, s+n) into out (cap bytes). @return 0, or -1 if malformed/too long. */
static int
pct_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -1;
			hi = tl_hexval(s[i + 1]);
			lo = tl_hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+') {
			c = ' ';
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

/*
 * Copy @p url for a message with anything that may be a credential masked: userinfo
 * before an '@' and the value of a password= parameter. A URL that does not parse may
 * still hold one.
 */
static void
redact_url(const char *url, char *out, size_t cap)
{
	const char *scheme_end = strstr(url, "://");
	const char *start = scheme_end ? scheme_end + 3 : url;
	const char *at = strrchr(start, '@');
	const char *pw;
	size_t o;

	if (at) {
		snprintf(out, cap, "%.*s***%s", (int)(start - url), url, at);
	} else {
		snprintf(out, cap, "%s", url);
	}
	pw = strstr(out, "password=");
	if (pw) {
		o = (size_t)(pw - out) + 9;
		if (o < cap)
			snprintf(out + o, cap - o, "***");
	}
}

/*
 * Check @p url and split it into the base every request starts with (without a
 * database= parameter, ending in '?' or '&' so a parameter can follow) and the database
 * it names, if any. Credentials in the URL are refused: URLs end up in logs.
 */
static int
parse_url(const char *url, char *base, size_t base_cap, char *db, size_t db_cap, char *msg,
        size_t msglen)
{
	CURLU *u;
	char *part = NULL, *query = NULL, *full = NULL;
	char kept[TL_CH_URL_LEN];
	char shown[TL_CH_URL_LEN];
	size_t kept_len = 0;
	int rc = -EINVAL;

	db[0] = '\0';
	redact_url(url, shown, sizeof(shown));
	pthread_once(&curl_once, curl_init);
	u = curl_url();
	if (u == NULL) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	/* Before parsing: a password holding '/' or '#' would end the authority early and
	 * hide the '@' from the parser. */
	if (strchr(strstr(url, "://") ? strstr(url, "://") + 3 : url, '@') != NULL) {
		snprintf(msg, msglen,
		        "url must not carry credentials: use user: and "
		        "password_file: or password_env:");
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		snprintf(msg, msglen, "url '%s' does not parse (expected http(s)://host:port/)",
		        shown);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &part, 0) != CURLUE_OK ||
	        (strcasecmp(part, "http") != 0 && strcasecmp(part, "https") != 0)) {
		snprintf(msg, msglen, "url '%s': scheme must be http or https", shown);
		goto out;
	}
	curl_free(part);
	part = NULL;
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	        curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
		/* Do not echo the URL: it holds a credential. */
		snprintf(msg, msglen,
		        "url must not carry credentials: use user: and "
		        "password_file: or password_env:");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
		snprintf(msg, msglen, "url '%s' must not have a #fragment", shown);
		goto out;
	}
	kept[0] = '\0';
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
		const char *p = query;

		while (*p) {
			size_t n = strcspn(p, "&");
			size_t klen = strcspn(p, "=");

			if (klen > n)
				klen = n;
			if ((klen == 8 && strncmp(p, "password", 8) == 0) ||
			        (klen == 4 && strncmp(p, "user", 4) == 0)) {
				snprintf(msg, msglen,
				        "url must not carry credentials: use user: "
				        "and password_file: or password_env:");
				goto out;
			}
			if (klen == 5 && strncmp(p, "query", 5) == 0) {
				snprintf(msg, msglen, "url '%s' must not have a query= parameter",
				        shown);
				goto out;
			}
			if (klen == 8 && strncmp(p, "database", 8) == 0) {
				const char *v = p + klen + (klen < n);
				size_t vlen = n - klen - (klen < n);

				if (pct_decode(v, vlen, db, db_cap) < 0 || !valid_name(db)) {
					snprintf(msg, msglen, "url '%s': bad database name", shown);
					goto out;
				}
			} else if (n > 0) {
				if (kept_len + n + 2 > sizeof(kept)) {
					snprintf(msg, msglen, "url is too long");
					goto out;
				}
				if (kept_len)
					kept[kept_len++] = '&';
				memcpy(kept + kept_len, p, n);
				kept_len += n;
				kept[kept_len] = '\0';
			}
			p += n;
			if (*p == '&')
				p++;
		}
	}
	if (curl_url_set(u, CURLUPART_QUERY, kept_len ? kept : NULL, 0) != CURLUE_OK ||
	        curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
		snprintf(msg, msglen, "url '%s' does not parse", shown);
		goto out;
	}
	if (strlen(full) + 2 > base_cap) {
		snprintf(msg, msglen, "url is too long");
		goto out;
	}
	snprintf(base, base_cap, "%s%c", full, kept_len ? '&' : '?');
	rc = 0;
out:
	curl_free(part);
	curl_free(query);
	curl_free(full);
	curl_url_cleanup(u);
	return rc;
}

/* ---- configuration ---------------------------------------------------------------- */

int
tl_uplink_check(const void *obj, char *msg, size_t msglen)
{
	const struct tl_uplink_conf *c = obj;
	char base[TL_CH_URL_LEN], db[TL_CH_NAME_LEN];

	if (parse_url(c->url, base, sizeof(base), db, sizeof(db), msg, msglen) < 0)
		return 1;
	if (!valid_name(c->database)) {
		snprintf(msg, msglen, "database '%s' is not a usable name", c->database);
		return 1;
	}
	if (c->password_file[0] && c->password_env[0]) {
		snprintf(msg, msglen, "set password_file or password_env, not both");
		return 1;
	}
	if (c->backoff_initial > c->backoff_max) {
		snprintf(msg, msglen, "backoff_initial is larger than backoff_max");
		return 1;
	}
	for (uint32_t i = 0; i < c->failover.n_targets; i++) {
		char m[160];

		if (parse_url(c->failover.targets[i], base, sizeof(base), db, sizeof(db), m,
		            sizeof(m)) < 0) {
			snprintf(msg, msglen, "failover.targets[%u]: %s", i, m);
			return 1;
		}
	}
	return 0;
}

/* Neither password option holds the secret itself (only where to find it), so neither
 * is TL_OPT_F_SECRET: config show may print them. */
const struct tl_opt tl_uplink_opts[] = {
        {.name = "url",
                .type = TL_OPT_STRING,
                .def = "http://127.0.0.1:8123/",
                .offset = offsetof(struct tl_uplink_conf, url),
                .size = sizeof(((struct tl_uplink_conf *)0)->url),
                .desc = "ClickHouse HTTP(S) endpoint; a ?database= parameter overrides database"},
        {.name = "database",
                .type = TL_OPT_STRING,
                .def = "telemetry",
                .offset = offsetof(struct tl_uplink_conf, database),
                .size = sizeof(((struct tl_uplink_conf *)0)->database),
                .desc = "database the tables live in"},
        {.name = "user",
                .type = TL_OPT_STRING,
                .def = "default",
                .offset = offsetof(struct tl_uplink_conf, user),
                .size = sizeof(((struct tl_uplink_conf *)0)->user),
                .desc = "ClickHouse user (HTTP basic auth)"},
        {.name = "password_file",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_uplink_conf, password_file),
                .size = sizeof(((struct tl_uplink_conf *)0)->password_file),
                .desc = "file holding the password (trailing newline ignored)"},
        {.name = "password_env",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_uplink_conf, password_env),
                .size = sizeof(((struct tl_uplink_conf *)0)->password_env),
                .desc = "environment variable holding the password"},
        {.name = "ca_file",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct tl_uplink_conf, ca_file),
                .size = sizeof(((struct tl_uplink_conf *)0)->ca_file),
                .desc = "PEM CA bundle to verify an https server (default: system CAs)"},
        {.name = "tls_verify",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct tl_uplink_conf, tls_verify),
                .desc = "verify the https server's certificate and name"},
        {.name = "connect_timeout",
                .type = TL_OPT_DURATION,
                .def = "2s",
                .offset = offsetof(struct tl_uplink_conf, connect_timeout),
                .min = MS,
                .max = 600 * SEC,
                .desc = "TCP and TLS connect timeout"},
        {.name = "timeout",
                .type = TL_OPT_DURATION,
                .def = "30s",
                .offset = offsetof(struct tl_uplink_conf, timeout),
                .min = MS,
                .max = 3600 * SEC,
                .desc = "whole-request timeout (then the insert is ambiguous)"},
        {.name = "max_in_flight",
                .type = TL_OPT_UINT,
                .def = "4",
                .offset = offsetof(struct tl_uplink_conf, max_in_flight),
                .min = 1,
                .max = TL_CH_MAX_IN_FLIGHT,
                .desc = "inserts in flight at once"},
        {.name = "backoff_initial",
                .type = TL_OPT_DURATION,
                .def = "100ms",
                .offset = offsetof(struct tl_uplink_conf, backoff_initial),
                .min = MS,
                .max = 3600 * SEC,
                .desc = "largest delay before the first retry"},
        {.name = "backoff_max",
                .type = TL_OPT_DURATION,
                .def = "30s",
                .offset = offsetof(struct tl_uplink_conf, backoff_max),
                .min = MS,
                .max = 3600 * SEC,
                .desc = "largest delay before any retry"},
        {.name = "compression",
                .type = TL_OPT_ENUM,
                .def = "auto",
                .offset = offsetof(struct tl_uplink_conf, compression),
                .enums = tl_ch_compression_names,
                .desc = "body compression: auto (zstd if the server takes it, else gzip), "
                        "none, gzip, zstd, lz4 (ClickHouse's framing; fastest)"},
        {.name = "gzip_level",
                .type = TL_OPT_UINT,
                .def = "1",
                .offset = offsetof(struct tl_uplink_conf, gzip_level),
                .min = 1,
                .max = 12,
                .desc = "libdeflate level, 1 (fast) to 12 (small)"},
        {.name = "zstd_level",
                .type = TL_OPT_UINT,
                .def = "1",
                .offset = offsetof(struct tl_uplink_conf, zstd_level),
                .min = 1,
                .max = 19,
                .desc = "libzstd level, 1 (fast) to 19 (small)"},
        {.name = "insert_bytes",
                .type = TL_OPT_SIZE,
                .def = "256MiB",
                .offset = offsetof(struct tl_uplink_conf, insert_bytes),
                .min = 1 << 20,
                .max = 256 << 20,
                .desc = "largest INSERT (uncompressed RowBinary); each of max_in_flight "
                        "slots holds up to this much"},
        {.name = "insert_delay",
                .type = TL_OPT_DURATION,
                .def = "1s",
                .offset = offsetof(struct tl_uplink_conf, insert_delay),
                .max = 60000000000ull,
                .desc = "longest a partly filled INSERT waits for more rows while other "
                        "INSERTs are in flight (an idle uplink sends at once)"},
        {.name = "stream",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct tl_uplink_conf, stream),
                .desc = "stream INSERTs: an INSERT starts with its first record and takes "
                        "more as they commit, until full, insert_delay old or idle (one "
                        "part per INSERT however the rows arrive); codec none or lz4 only"},
        {.name = "streams",
                .type = TL_OPT_UINT,
                .def = "2",
                .offset = offsetof(struct tl_uplink_conf, streams),
                .min = 1,
                .max = 16,
                .desc = "streamed INSERTs open at once per table under load (ClickHouse "
                        "parses each INSERT on one thread; each is one part); at most "
                        "max_in_flight"},
        {.name = "verify_rows",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct tl_uplink_conf, verify_rows),
                .desc = "check every row against its table's column types before sending "
                        "(a corrupt row is dead-lettered, never merged into its neighbours)"},
        {.name = "failover",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct tl_uplink_conf, failover),
                .sub = tl_failover_opts,
                .check = tl_failover_check,
                .desc = "more ClickHouse targets: circuit breakers, health checks, a "
                        "delivery policy per table"},
        {.name = NULL},
};

/* ---- classification --------------------------------------------------------------- */

bool
tl_ch_is_data_error(int code)
{
	switch (code) {
	case 6:   /* CANNOT_PARSE_TEXT */
	case 19:  /* SIZE_OF_FIXED_STRING_DOESNT_MATCH */
	case 25:  /* CANNOT_PARSE_ESCAPE_SEQUENCE */
	case 26:  /* CANNOT_PARSE_QUOTED_STRING */
	case 27:  /* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
	case 32:  /* ATTEMPT_TO_READ_AFTER_EOF */
	case 33:  /* CANNOT_READ_ALL_DATA: truncated RowBinary */
	case 38:  /* CANNOT_PARSE_DATE */
	case 39:  /* TOO_LARGE_SIZE_COMPRESSED: a framed block's size is damaged */
	case 40:  /* CHECKSUM_DOESNT_MATCH: a framed block is damaged */
	case 41:  /* CANNOT_PARSE_DATETIME */
	case 53:  /* TYPE_MISMATCH */
	case 69:  /* ARGUMENT_OUT_OF_BOUND */
	case 70:  /* CANNOT_CONVERT_TYPE */
	case 72:  /* CANNOT_PARSE_NUMBER */
	case 117: /* INCORRECT_DATA */
	case 128: /* TOO_LARGE_ARRAY_SIZE */
	case 130: /* CANNOT_READ_ARRAY_FROM_TEXT */
	case 131: /* TOO_LARGE_STRING_SIZE (also FixedString overflow) */
	case 190: /* SIZES_OF_ARRAYS_DOESNT_MATCH */
	case 271: /* CANNOT_DECOMPRESS: a framed block's LZ4 data is damaged */
	case 321: /* VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE */
	case 349: /* CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN */
	case 354: /* ZLIB_INFLATE_FAILED: the gzip body is corrupt */
	case 376: /* CANNOT_PARSE_UUID */
	case 407: /* DECIMAL_OVERFLOW */
	case 441: /* CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING */
	case 467: /* CANNOT_PARSE_BOOL */
	case 561: /* ZSTD_DECODER_FAILED: the zstd body is corrupt */
	case 691: /* UNKNOWN_ELEMENT_OF_ENUM */
		return true;
	default:
		return false;
	}
}

static bool
is_auth_code(int code)
{
	switch (code) {
	case 192: /* UNKNOWN_USER */
	case 193: /* WRONG_PASSWORD */
	case 194: /* REQUIRED_PASSWORD */
	case 195: /* IP_ADDRESS_NOT_ALLOWED */
	case 291: /* DATABASE_ACCESS_DENIED */
	case 497: /* ACCESS_DENIED (grants) */
	case 516: /* AUTHENTICATION_FAILED (current releases) */
		return true;
	default:
		return false;
	}
}

static bool
is_schema_code(int code)
{
	switch (code) {
	case 8:  /* THERE_IS_NO_COLUMN */
	case 16: /* NO_SUCH_COLUMN_IN_TABLE */
	case 47: /* UNKNOWN_IDENTIFIER */
	case 60: /* UNKNOWN_TABLE */
	case 81: /* UNKNOWN_DATABASE */
		return true;
	default:
		return false;
	}
}

/* The body's compression, not its rows, is what the server refused. */
static bool
is_encoding_code(int code)
{
	switch (code) {
	case 39:  /* TOO_LARGE_SIZE_COMPRESSED */
	case 40:  /* CHECKSUM_DOESNT_MATCH */
	case 89:  /* UNKNOWN_COMPRESSION_METHOD: Content-Encoding or block method */
	case 271: /* CANNOT_DECOMPRESS */
	case 354: /* ZLIB_INFLATE_FAILED */
	case 561: /* ZSTD_DECODER_FAILED */
		return true;
	default:
		return false;
	}
}

static bool
is_tls_error(int curl_code)
{
	switch (curl_code) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		return true;
	default:
		return false;
	}
}

enum tl_ch_outcome
tl_ch_classify(int curl_code, int http_status, int ch_code, bool body_sent, uint32_t *flags)
{
	uint32_t f = 0;
	enum tl_ch_outcome o;

	if (http_status != 0 && http_status != 200 && ch_code != 0) {
		/* ClickHouse said why it failed: the INSERT failed as a whole, even if the
		 * connection broke while the rest of the body was still going out. */
		if (tl_ch_is_data_error(ch_code)) {
			o = TL_CH_REJECT;
			if (is_encoding_code(ch_code))
				f |= TL_CH_F_ENCODING;
		} else if (ch_code == 319) {
			/* UNKNOWN_STATUS_OF_INSERT: replicated commit lost its session. */
			o = TL_CH_AMBIGUOUS;
		} else {
			o = TL_CH_RETRY;
			if (is_auth_code(ch_code))
				f |= TL_CH_F_AUTH;
			if (is_schema_code(ch_code))
				f |= TL_CH_F_SCHEMA;
			if (ch_code == 241)
				f |= TL_CH_F_MAYBE_DATA;
			/* UNKNOWN_COMPRESSION_METHOD: most likely the server no longer takes
			 * the Content-Encoding (re-negotiate), which retrying with the same
			 * body cannot fix, and a damaged block method byte is the body. Never
			 * a reject: that would quarantine good rows for a server's lack. */
			if (ch_code == 89)
				f |= TL_CH_F_ENCODING | TL_CH_F_MAYBE_DATA;
			/* QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING: this attempt never started,
			 * but the earlier one with this id is still running. */
			if (ch_code == 216)
				f |= TL_CH_F_QUERY_RUNNING;
		}
	} else if (curl_code != 0 || http_status == 0) {
		if (http_status == 0)
			f |= TL_CH_F_TRANSPORT;
		if (is_tls_error(curl_code))
			f |= TL_CH_F_TLS;
		o = body_sent ? TL_CH_AMBIGUOUS : TL_CH_RETRY;
	} else if (http_status == 200) {
		o = TL_CH_OK;
	} else if (http_status >= 500) {
		/* Not ClickHouse's own answer (it always says "Code: N"): a proxy's 502/504
		 * may come after the server behind it wrote the rows. */
		o = body_sent ? TL_CH_AMBIGUOUS : TL_CH_RETRY;
	} else {
		/* A 4xx without a code: whatever answered refused the request itself. */
		o = TL_CH_RETRY;
		if (http_status == 401 || http_status == 403)
			f |= TL_CH_F_AUTH;
		if (http_status == 413)
			f |= TL_CH_F_MAYBE_DATA;
	}
	if (flags)
		*flags = f;
	return o;
}

const char *
tl_ch_outcome_name(enum tl_ch_outcome o)
{
	switch (o) {
	case TL_CH_OK:
		return "ok";
	case TL_CH_RETRY:
		return "retry";
	case TL_CH_REJECT:
		return "reject";
	case TL_CH_AMBIGUOUS:
		return "ambiguous";
	}
	return "?";
}

int
tl_ch_parse_code(const char *text, size_t len)
{
	static const char key[] = "Code: ";
	const size_t klen = sizeof(key) - 1;

	for (size_t i = 0; i + klen < len; i++) {
		size_t j = i + klen;
		long v = 0;

		if (memcmp(text + i, key, klen) != 0)
			continue;
		while (j < len && text[j] >= '0' && text[j] <= '9' && v < 100000)
			v = v * 10 + (text[j++] - '0');
		/* 18.16: "Code: 60, e.displayText()"; current: "Code: 60. DB::Exception".
		 * Without the terminator the number may be cut short. */
		if (j > i + klen && j < len && (text[j] == ',' || text[j] == '.') && v > 0 &&
		        v < 100000)
			return (int)v;
		return 0;
	}
	return 0;
}

uint64_t
tl_ch_backoff_ns(const struct tl_uplink_conf *conf, unsigned attempt, uint64_t random64)
{
	uint64_t cap = conf->backoff_initial;
	uint64_t max = conf->backoff_max;

	/* Double without overflow; stop as soon as the cap is reached. */
	for (unsigned i = 0; i < attempt && cap < max; i++)
		cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
	if (cap > max)
		cap = max;
	/* Scale onto [0, cap] with a multiply-high: uniform, no modulo bias, and
	 * random64 = UINT64_MAX maps to cap itself. */
	return (uint64_t)(((unsigned __int128)random64 * ((unsigned __int128)cap + 1)) >> 64);
}

/* ---- libcurl callbacks ------------------------------------------------------------- */

/* Streamed LZ4: one pulled piece at most this long becomes one set of blocks. */
#define STREAM_PIECE (1u << 20)

/*
 * A streamed insert's next bytes: pulled from the caller as they come, LZ4-framed per
 * piece when the codec is lz4. No bytes yet: pause until tl_ch_resume().
 */
static size_t
read_stream(struct slot *s, char *buf, size_t want)
{
	const uint8_t *p;
	long n;

	if (s->zoff == s->zlen) {
		n = s->pull(s->user, s->off, &p);
		if (n == -EAGAIN) {
			s->paused = true;
			return CURL_READFUNC_PAUSE;
		}
		if (n <= 0)
			return n == 0 ? 0 : CURL_READFUNC_ABORT;
		if (s->encoding == TL_CH_COMPRESS_NONE || s->pass) {
			if (want > (size_t)n)
				want = (size_t)n;
			memcpy(buf, p, want);
			s->off += want;
			s->handed += want;
			return want;
		}
		if ((size_t)n > STREAM_PIECE)
			n = STREAM_PIECE;
		/* zbuf was sized for STREAM_PIECE at submit */
		if (tl_chblock_compress(p, (size_t)n, s->zbuf, s->zcap, &s->zlen) < 0)
			return CURL_READFUNC_ABORT;
		s->zoff = 0;
		s->off += (size_t)n;
	}
	if (want > s->zlen - s->zoff)
		want = s->zlen - s->zoff;
	memcpy(buf, s->zbuf + s->zoff, want);
	s->zoff += want;
	s->handed += want;
	return want;
}

static size_t
read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct slot *s = arg;
	size_t want = size * nitems;
	size_t left = s->len - s->off;

	if (s->pull)
		return read_stream(s, buf, want);

	if (want > left)
		want = left;
	memcpy(buf, s->body + s->off, want);
	s->off += want;
	s->handed += want;
	return want;
}

/*
 * libcurl rewinds the body to send it again: at the start of a transfer (harmless), or
 * to resend it on a fresh connection after a reused one died without answering. In the
 * second case the server may have applied the first copy: refuse, and the transfer ends
 * as ambiguous instead of possibly inserting twice.
 */
static int
seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct slot *s = arg;

	if (origin != SEEK_SET || offset < 0 || (!s->pull && (size_t)offset > s->len) ||
	        (s->pull && offset != 0))
		return CURL_SEEKFUNC_CANTSEEK;
	if (s->handed > 0) {
		s->refused_rewind = true;
		return CURL_SEEKFUNC_FAIL;
	}
	s->off = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct slot *s = arg;
	size_t n = size * nmemb;

	if (s->collect) {
		if (s->dyn_len + n + 1 > s->dyn_cap) {
			size_t cap = s->dyn_cap ? s->dyn_cap : 4096;
			char *p;

			if (s->dyn_len + n + 1 > QUERY_RESP_MAX) {
				s->too_big = true;
				return 0;
			}
			while (cap < s->dyn_len + n + 1)
				cap *= 2;
			p = realloc(s->dyn, cap);
			if (p == NULL)
				return 0;
			s->dyn = p;
			s->dyn_cap = cap;
		}
		memcpy(s->dyn + s->dyn_len, data, n);
		s->dyn_len += n;
		s->dyn[s->dyn_len] = '\0';
		return n;
	}
	if (s->resp_len < sizeof(s->resp) - 1) {
		size_t take = sizeof(s->resp) - 1 - s->resp_len;

		if (take > n)
			take = n;
		memcpy(s->resp + s->resp_len, data, take);
		s->resp_len += take;
		s->resp[s->resp_len] = '\0';
	}
	return n;
}

static size_t
header_cb(char *data, size_t size, size_t nitems, void *arg)
{
	static const char key[] = "X-ClickHouse-Exception-Code:";
	struct slot *s = arg;
	size_t n = size * nitems;
	size_t klen = sizeof(key) - 1;

	if (n > klen && strncasecmp(data, key, klen) == 0) {
		int v = 0;
		size_t i = klen;

		while (i < n && (data[i] == ' ' || data[i] == '\t'))
			i++;
		while (i < n && data[i] >= '0' && data[i] <= '9' && v < 100000)
			v = v * 10 + (data[i++] - '0');
		if (v > 0 && v < 100000)
			s->hdr_code = v;
	}
	return n;
}

/* ---- results ------------------------------------------------------------------------- */

/* Replace every occurrence of the password in @p msg (defence in depth: nothing this
 * client builds contains it, but a server or proxy could echo it). */
static void
scrub(const struct tl_ch *ch, char *msg)
{
	char *p;

	if (!ch->have_password || ch->password_len == 0)
		return;
	while ((p = strstr(msg, ch->password)) != NULL) {
		size_t tail = strlen(p + ch->password_len);

		memcpy(p, "***", 3);
		memmove(p + 3, p + ch->password_len, tail + 1);
	}
}

/* Copy the first line of [text, text+len) into @p out, printable ASCII only. */
static void
first_line(char *out, size_t cap, const char *prefix, const char *text, size_t len)
{
	size_t o = 0;

	if (prefix)
		o = (size_t)snprintf(out, cap, "%s", prefix);
	if (o >= cap)
		o = cap - 1;
	for (size_t i = 0; i < len && o + 1 < cap; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n' || c == '\r' || c == '\0')
			break;
		out[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	out[o] = '\0';
}

static void
finish(struct tl_ch *ch, struct slot *s, CURLcode cc, struct tl_ch_result *r)
{
	long status = 0;
	const char *text = s->collect ? s->dyn : s->resp;
	size_t tlen = s->collect ? s->dyn_len : s->resp_len;
	const char *prefix = NULL;

	memset(r, 0, sizeof(*r));
	r->id = s->id;
	r->user = s->user;
	r->curl_code = (int)cc;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = (int)status;
	if (status != 0 && status != 200)
		r->ch_code = s->hdr_code ? s->hdr_code : tl_ch_parse_code(text ? text : "", tlen);
	r->bytes_sent = s->handed;
	r->encoding = s->encoding;
	r->latency_ns = now_ns() - s->t0;
	r->outcome =
	        tl_ch_classify(r->curl_code, r->http_status, r->ch_code, s->handed > 0, &r->flags);
	if (cc != CURLE_OK && status == 0 && ch->tls) {
		long port = 0;
		curl_off_t tls = 0;

		/* TCP connected (a local port is recorded only then) but the handshake never
		 * finished, through a timeout or reset rather than a TLS error code: still a
		 * TLS problem, e.g. https to a plain HTTP port that waits for a line. */
		curl_easy_getinfo(s->easy, CURLINFO_LOCAL_PORT, &port);
		curl_easy_getinfo(s->easy, CURLINFO_APPCONNECT_TIME_T, &tls);
		if (port != 0 && tls == 0)
			r->flags |= TL_CH_F_TLS;
	}
	if (r->outcome == TL_CH_OK)
		return;
	if (r->flags & TL_CH_F_AUTH)
		prefix = "authentication failed: ";
	if (status != 0 && status != 200 && tlen > 0 && text) {
		first_line(r->message, sizeof(r->message), prefix, text, tlen);
	} else if (cc != CURLE_OK) {
		char m[CURL_ERROR_SIZE + 64];

		snprintf(m, sizeof(m), "%s%s",
		        s->refused_rewind ? "connection lost after the body was sent: " : "",
		        s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc));
		first_line(r->message, sizeof(r->message), prefix, m, strlen(m));
	} else {
		char m[64];

		snprintf(m, sizeof(m), "HTTP %ld without a ClickHouse error text", status);
		first_line(r->message, sizeof(r->message), prefix, m, strlen(m));
	}
	scrub(ch, r->message);
}

/* ---- open/close ---------------------------------------------------------------------- */

static int
read_password(const struct tl_uplink_conf *c, char *pw, size_t cap, size_t *len)
{
	if (c->password_env[0]) {
		const char *v = getenv(c->password_env);

		if (v == NULL) {
			TL_ERR("uplink: password_env %s is not set", c->password_env);
			return -ENOENT;
		}
		*len = strlen(v);
		if (*len >= cap) {
			TL_ERR("uplink: the password in %s is too long", c->password_env);
			return -E2BIG;
		}
		memcpy(pw, v, *len + 1);
		return 0;
	}
	if (c->password_file[0]) {
		struct stat st;
		ssize_t n;
		size_t got = 0;
		int fd = open(c->password_file, O_RDONLY | O_CLOEXEC);
		int rc = 0;

		if (fd < 0) {
			rc = -errno;
			TL_ERR("uplink: cannot read password_file %s: %s", c->password_file,
			        strerror(-rc));
			return rc;
		}
		if (fstat(fd, &st) == 0 && (st.st_mode & 077))
			TL_WARN("uplink: password_file %s is readable by group or others",
			        c->password_file);
		while ((n = read(fd, pw + got, cap - got)) > 0 && (got += (size_t)n) < cap)
			;
		if (n < 0)
			rc = -errno;
		close(fd);
		if (rc == 0 && got >= cap)
			rc = -E2BIG;
		if (rc == 0 && memchr(pw, '\0', got) != NULL)
			rc = -EINVAL;
		if (rc < 0) {
			explicit_bzero(pw, cap);
			TL_ERR("uplink: password_file %s: %s", c->password_file,
			        rc == -E2BIG    ? "longer than 1023 bytes"
			        : rc == -EINVAL ? "contains a NUL byte"
			                        : strerror(-rc));
			return rc;
		}
		while (got > 0 && (pw[got - 1] == '\n' || pw[got - 1] == '\r'))
			got--;
		pw[got] = '\0';
		*len = got;
		return 0;
	}
	*len = 0;
	pw[0] = '\0';
	return 0;
}

#define SETOPT(h, opt, val)                                                                        \
	do {                                                                                       \
		if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK)                               \
			return -EIO;                                                               \
	} while (0)

/* Options every request of @p s shares, set once. */
static int
setup_easy(struct tl_ch *ch, struct slot *s)
{
	const struct tl_uplink_conf *c = &ch->conf;
	long cto = (long)((c->connect_timeout + MS - 1) / MS);
	long to = (long)((c->timeout + MS - 1) / MS);

	s->easy = curl_easy_init();
	if (s->easy == NULL)
		return -ENOMEM;
	SETOPT(s->easy, CURLOPT_NOSIGNAL, 1L);
	SETOPT(s->easy, CURLOPT_PRIVATE, (void *)s);
	SETOPT(s->easy, CURLOPT_POST, 1L);
	SETOPT(s->easy, CURLOPT_READFUNCTION, read_cb);
	SETOPT(s->easy, CURLOPT_READDATA, (void *)s);
	SETOPT(s->easy, CURLOPT_SEEKFUNCTION, seek_cb);
	SETOPT(s->easy, CURLOPT_SEEKDATA, (void *)s);
	SETOPT(s->easy, CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(s->easy, CURLOPT_WRITEDATA, (void *)s);
	SETOPT(s->easy, CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(s->easy, CURLOPT_HEADERDATA, (void *)s);
	SETOPT(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
	SETOPT(s->easy, CURLOPT_CONNECTTIMEOUT_MS, cto > 0 ? cto : 1L);
	SETOPT(s->easy, CURLOPT_TIMEOUT_MS, to > 0 ? to : 1L);
	SETOPT(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SETOPT(s->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(s->easy, CURLOPT_MAXAGE_CONN, MAXAGE_CONN_S);
	SETOPT(s->easy, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
	SETOPT(s->easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(s->easy, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
	SETOPT(s->easy, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
	if (c->ca_file[0])
		SETOPT(s->easy, CURLOPT_CAINFO, c->ca_file);
	if (c->user[0]) {
		/* Basic auth works on 18.16 and current releases; the URL stays clean. */
		SETOPT(s->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SETOPT(s->easy, CURLOPT_USERNAME, c->user);
		SETOPT(s->easy, CURLOPT_PASSWORD, ch->password);
	}
	return 0;
}

/* Request headers of a body with Content-Encoding @p enc. */
static struct curl_slist *
headers(const char *enc)
{
	char line[64];
	struct curl_slist *h, *n;

	snprintf(line, sizeof(line), "Content-Encoding: %s", enc);
	h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	if (h == NULL)
		return NULL;
	/* No "Expect: 100-continue" round trip before large bodies. */
	if ((n = curl_slist_append(h, "Expect:")) == NULL ||
	        (n = curl_slist_append(h, line)) == NULL) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h;
}

int
tl_ch_open(const struct tl_uplink_conf *conf, struct tl_ch **out)
{
	struct tl_ch *ch;
	char msg[256];
	int rc;

	*out = NULL;
	/* Levels are checked whatever the codec: auto, zstd and lz4 may fall back to gzip. */
	if (conf->max_in_flight < 1 || conf->max_in_flight > TL_CH_MAX_IN_FLIGHT ||
	        conf->compression < TL_CH_COMPRESS_NONE ||
	        conf->compression > TL_CH_COMPRESS_AUTO ||
	        (conf->compression != TL_CH_COMPRESS_NONE &&
	                (conf->gzip_level < 1 || conf->gzip_level > 12)) ||
	        ((conf->compression == TL_CH_COMPRESS_ZSTD ||
	                 conf->compression == TL_CH_COMPRESS_AUTO) &&
	                (conf->zstd_level < 1 || conf->zstd_level > 19))) {
		TL_ERR("uplink: max_in_flight, compression, gzip_level or zstd_level out of range");
		return -EINVAL;
	}
	if (tl_uplink_check(conf, msg, sizeof(msg)) != 0) {
		TL_ERR("uplink: %s", msg);
		return -EINVAL;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		TL_ERR("uplink: libcurl initialisation failed");
		return -EIO;
	}
	ch = calloc(1, sizeof(*ch));
	if (ch == NULL)
		return -ENOMEM;
	ch->conf = *conf;
	rc = parse_url(conf->url, ch->base, sizeof(ch->base), ch->database, sizeof(ch->database),
	        msg, sizeof(msg));
	if (rc < 0) {
		TL_ERR("uplink: %s", msg);
		goto fail;
	}
	if (ch->database[0] == '\0')
		snprintf(ch->database, sizeof(ch->database), "%s", conf->database);
	ch->tls = strncasecmp(ch->base, "https:", 6) == 0;
	rc = read_password(conf, ch->password, sizeof(ch->password), &ch->password_len);
	if (rc < 0)
		goto fail;
	ch->have_password = conf->password_file[0] || conf->password_env[0];

	rc = -ENOMEM;
	ch->multi = curl_multi_init();
	ch->hdr_plain = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	/* No "Expect: 100-continue" round trip before large bodies. */
	if (ch->hdr_plain)
		ch->hdr_plain = curl_slist_append(ch->hdr_plain, "Expect:");
	ch->hdr_gzip = headers("gzip");
	ch->hdr_zstd = headers("zstd");
	ch->hdr_chunked = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	if (ch->hdr_chunked)
		ch->hdr_chunked = curl_slist_append(ch->hdr_chunked, "Expect:");
	if (ch->hdr_chunked)
		ch->hdr_chunked = curl_slist_append(ch->hdr_chunked, "Transfer-Encoding: chunked");
	if (ch->multi == NULL || ch->hdr_plain == NULL || ch->hdr_gzip == NULL ||
	        ch->hdr_zstd == NULL || ch->hdr_chunked == NULL)
		goto fail;
	ch->n_slots = (unsigned)conf->max_in_flight;
	curl_multi_setopt(ch->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)ch->n_slots);
	curl_multi_setopt(ch->multi, CURLMOPT_MAXCONNECTS, (long)ch->n_slots);
	ch->slots = calloc(ch->n_slots, sizeof(*ch->slots));
	ch->free_idx = calloc(ch->n_slots, sizeof(*ch->free_idx));
	if (ch->slots == NULL || ch->free_idx == NULL)
		goto fail;
	for (unsigned i = 0; i < ch->n_slots; i++) {
		struct slot *s = &ch->slots[i];

		rc = setup_easy(ch, s);
		if (rc < 0)
			goto fail;
		rc = -ENOMEM;
		s->url_cap = strlen(ch->base) + 1024;
		s->url = malloc(s->url_cap);
		if (s->url == NULL)
			goto fail;
		ch->free_idx[ch->n_free++] = ch->n_slots - 1 - i;
	}
	rc = setup_easy(ch, &ch->query);
	if (rc < 0)
		goto fail;
	ch->query.collect = true;
	rc = -ENOMEM;
	ch->query.url_cap = strlen(ch->base) + 32;
	ch->query.url = malloc(ch->query.url_cap);
	if (ch->query.url == NULL)
		goto fail;
	snprintf(ch->query.url, ch->query.url_cap, "%swait_end_of_query=1", ch->base);
	snprintf(ch->probe_url, sizeof(ch->probe_url), "%swait_end_of_query=1&decompress=1",
	        ch->base);
	/* Every codec but none may end up as gzip (auto's default, the fallback of zstd
	 * and lz4), so the gzip compressor is made for all of them. */
	if (conf->compression != TL_CH_COMPRESS_NONE) {
		ch->gz = libdeflate_alloc_compressor((int)conf->gzip_level);
		if (ch->gz == NULL)
			goto fail;
	}
	if (conf->compression == TL_CH_COMPRESS_ZSTD || conf->compression == TL_CH_COMPRESS_AUTO) {
		ch->zc = ZSTD_createCCtx();
		if (ch->zc == NULL)
			goto fail;
		if (ZSTD_isError(ZSTD_CCtx_setParameter(
		            ch->zc, ZSTD_c_compressionLevel, (int)conf->zstd_level))) {
			rc = -EIO;
			goto fail;
		}
	}
	ch->codec =
	        conf->compression == TL_CH_COMPRESS_AUTO ? TL_CH_COMPRESS_GZIP : conf->compression;
	TL_INFO("uplink: ClickHouse %.*s database %s user %s%s%s, compression %s%s",
	        (int)strlen(ch->base) - 1, ch->base, ch->database,
	        conf->user[0] ? conf->user : "(none)",
	        conf->password_file[0]  ? ", password from file "
	        : conf->password_env[0] ? ", password from $"
	                                : "",
	        conf->password_file[0] ? conf->password_file : conf->password_env,
	        tl_ch_compression_names[conf->compression],
	        conf->compression == TL_CH_COMPRESS_AUTO ? " (gzip until negotiated)" : "");
	*out = ch;
	return 0;
fail:
	tl_ch_close(ch);
	return rc;
}

static void
free_slot(struct slot *s)
{
	if (s->easy)
		curl_easy_cleanup(s->easy);
	free(s->zbuf);
	free(s->url);
	free(s->dyn);
}

void
tl_ch_close(struct tl_ch *ch)
{
	if (ch == NULL)
		return;
	for (unsigned i = 0; ch->slots && i < ch->n_slots; i++)
		if (ch->slots[i].busy)
			curl_multi_remove_handle(ch->multi, ch->slots[i].easy);
	if (ch->multi)
		curl_multi_cleanup(ch->multi);
	for (unsigned i = 0; ch->slots && i < ch->n_slots; i++)
		free_slot(&ch->slots[i]);
	free_slot(&ch->query);
	free(ch->slots);
	free(ch->free_idx);
	curl_slist_free_all(ch->hdr_plain);
	curl_slist_free_all(ch->hdr_gzip);
	curl_slist_free_all(ch->hdr_zstd);
	curl_slist_free_all(ch->hdr_chunked);
	libdeflate_free_compressor(ch->gz);
	ZSTD_freeCCtx(ch->zc);
	explicit_bzero(ch->password, sizeof(ch->password));
	free(ch);
}

const char *
tl_ch_database(const struct tl_ch *ch)
{
	return ch->database;
}

int
tl_ch_set_database(struct tl_ch *ch, const char *db)
{
	if (db == NULL || !valid_name(db) || strlen(db) >= sizeof(ch->database))
		return -EINVAL;
	snprintf(ch->database, sizeof(ch->database), "%s", db);
	return 0;
}

unsigned
tl_ch_in_flight(const struct tl_ch *ch)
{
	return ch->n_slots - ch->n_free;
}

const struct tl_ch_result *
tl_ch_last_error(const struct tl_ch *ch)
{
	return &ch->last;
}

/* ---- synchronous query --------------------------------------------------------------- */

static int
result_errno(const struct tl_ch_result *r)
{
	if (r->outcome == TL_CH_OK)
		return 0;
	if (r->http_status != 0 && r->http_status != 200)
		return (r->flags & TL_CH_F_AUTH) ? -EACCES : -EREMOTEIO;
	if (r->flags & TL_CH_F_TLS)
		return -EPROTO;
	switch (r->curl_code) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SEND_FAIL_REWIND:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* POST @p body to @p url on the query handle and wait for the whole answer. */
static int
sync_request(struct tl_ch *ch, const char *url, struct curl_slist *hdr, int encoding,
        const void *body, size_t blen, char **out, size_t *len)
{
	struct slot *s = &ch->query;
	CURLcode cc;
	int rc;

	if (out)
		*out = NULL;
	if (len)
		*len = 0;
	s->body = body;
	s->len = blen;
	s->encoding = encoding;
	s->off = 0;
	s->handed = 0;
	s->refused_rewind = false;
	s->hdr_code = 0;
	s->errbuf[0] = '\0';
	s->dyn_len = 0;
	s->too_big = false;
	s->id = 0;
	s->user = NULL;
	s->t0 = now_ns();
	if (curl_easy_setopt(s->easy, CURLOPT_URL, url) != CURLE_OK ||
	        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdr) != CURLE_OK ||
	        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->len) !=
	                CURLE_OK)
		return -EIO;
	cc = curl_easy_perform(s->easy);
	finish(ch, s, cc, &ch->last);
	if (s->too_big) {
		snprintf(ch->last.message, sizeof(ch->last.message),
		        "answer larger than %llu bytes", (unsigned long long)QUERY_RESP_MAX);
		return -EFBIG;
	}
	rc = result_errno(&ch->last);
	if (rc < 0)
		return rc;
	if (out) {
		if (s->dyn == NULL) {
			s->dyn = malloc(1);
			if (s->dyn == NULL)
				return -ENOMEM;
			s->dyn[0] = '\0';
		}
		*out = s->dyn;
		s->dyn = NULL;
		s->dyn_cap = 0;
	}
	if (len)
		*len = s->dyn_len;
	s->dyn_len = 0;
	return 0;
}

int
tl_ch_query(struct tl_ch *ch, const char *sql, char **out, size_t *len)
{
	if (out)
		*out = NULL;
	if (len)
		*len = 0;
	if (sql == NULL || *sql == '\0')
		return -EINVAL;
	return sync_request(
	        ch, ch->query.url, ch->hdr_plain, TL_CH_COMPRESS_NONE, sql, strlen(sql), out, len);
}

int
tl_ch_ping(struct tl_ch *ch, uint64_t timeout_ns)
{
	static const char sql[] = "SELECT 1";
	long ms = (long)(timeout_ns / 1000000ull);
	int rc;

	if (ch == NULL)
		return -EINVAL;
	if (ms < 1)
		ms = 1;
	/* The query handle's own timeouts are uplink.timeout's: shortened for this one. */
	if (curl_easy_setopt(ch->query.easy, CURLOPT_TIMEOUT_MS, ms) != CURLE_OK ||
	        curl_easy_setopt(ch->query.easy, CURLOPT_CONNECTTIMEOUT_MS, ms) != CURLE_OK)
		return -EIO;
	rc = sync_request(ch, ch->query.url, ch->hdr_plain, TL_CH_COMPRESS_NONE, sql,
	        sizeof(sql) - 1, NULL, NULL);
	ms = (long)((ch->conf.timeout + MS - 1) / MS);
	curl_easy_setopt(ch->query.easy, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
	ms = (long)((ch->conf.connect_timeout + MS - 1) / MS);
	curl_easy_setopt(ch->query.easy, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1L);
	return rc;
}

int
tl_ch_version(struct tl_ch *ch, struct tl_ch_server_version *v)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	memset(v, 0, sizeof(*v));
	rc = tl_ch_query(ch, "SELECT version()", &text, &len);
	if (rc < 0)
		return rc;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	if (len == 0 || len >= sizeof(v->text) ||
	        sscanf(text, "%u.%u.%u", &v->major, &v->minor, &v->patch) != 3) {
		free(text);
		return -EPROTO;
	}
	memcpy(v->text, text, len + 1);
	free(text);
	return 0;
}

/* ---- negotiation, query ids ---------------------------------------------------------- */

/* The answer to a probe says the server cannot read the encoding (rather than, say,
 * refusing the credentials or being overloaded, which says nothing about it). */
static bool
probe_refused(const struct tl_ch_result *r)
{
	switch (r->ch_code) {
	case 39:  /* TOO_LARGE_SIZE_COMPRESSED */
	case 40:  /* CHECKSUM_DOESNT_MATCH */
	case 62:  /* SYNTAX_ERROR: the body was read without decoding it */
	case 89:  /* UNKNOWN_COMPRESSION_METHOD: "Unknown Content-Encoding" (18.16) */
	case 115: /* UNKNOWN_SETTING: decompress= taken for a setting */
	case 271: /* CANNOT_DECOMPRESS */
	case 354: /* ZLIB_INFLATE_FAILED */
	case 561: /* ZSTD_DECODER_FAILED */
		return true;
	case 0:
		/* No ClickHouse code: a proxy in front refusing the encoding. */
		return r->http_status == 415;
	default:
		return false;
	}
}

/*
 * POST a compressed `SELECT 1`. @return 1 if the server answered "1", 0 if it refused the
 * encoding, or the error of the request (nothing learnt).
 */
static int
probe(struct tl_ch *ch, int codec)
{
	static const char sql[] = "SELECT 1";
	unsigned char buf[128];
	char *answer = NULL;
	size_t n = 0, alen = 0;
	int rc;

	if (codec == TL_CH_COMPRESS_ZSTD) {
		n = ZSTD_compress2(ch->zc, buf, sizeof(buf), sql, sizeof(sql) - 1);
		if (ZSTD_isError(n))
			return -EIO;
		rc = sync_request(ch, ch->query.url, ch->hdr_zstd, codec, buf, n, &answer, &alen);
	} else {
		rc = tl_chblock_compress(sql, sizeof(sql) - 1, buf, sizeof(buf), &n);
		if (rc < 0)
			return -EIO;
		rc = sync_request(ch, ch->probe_url, ch->hdr_plain, codec, buf, n, &answer, &alen);
	}
	if (rc == -EREMOTEIO && probe_refused(&ch->last))
		return 0;
	if (rc < 0)
		return rc;
	/* A 200 with anything but "1" is a server (or proxy) that did not run our query. */
	rc = alen >= 1 && answer[0] == '1' && (alen == 1 || answer[1] == '\n');
	if (!rc)
		snprintf(ch->last.message, sizeof(ch->last.message),
		        "unexpected answer to SELECT 1");
	free(answer);
	return rc;
}

int
tl_ch_negotiate(struct tl_ch *ch, int *effective)
{
	int want = ch->conf.compression;
	int rc = 0;

	switch (want) {
	case TL_CH_COMPRESS_NONE:
	case TL_CH_COMPRESS_GZIP:
		ch->codec = want;
		break;
	case TL_CH_COMPRESS_AUTO:
	case TL_CH_COMPRESS_ZSTD:
	case TL_CH_COMPRESS_LZ4: {
		int probed = want == TL_CH_COMPRESS_LZ4 ? TL_CH_COMPRESS_LZ4 : TL_CH_COMPRESS_ZSTD;
		int ok = probe(ch, probed);

		if (ok < 0) {
			TL_WARN("uplink: cannot probe ClickHouse for %s: %s (%s); compression "
			        "stays %s",
			        tl_ch_compression_names[probed], tl_strerror(ok), ch->last.message,
			        tl_ch_compression_names[ch->codec]);
			rc = ok;
			break;
		}
		if (ok) {
			ch->codec = probed;
			TL_INFO("uplink: compression %s%s: the server takes it",
			        tl_ch_compression_names[probed],
			        want == TL_CH_COMPRESS_AUTO ? " (auto)" : "");
			break;
		}
		ch->codec = TL_CH_COMPRESS_GZIP;
		if (want == TL_CH_COMPRESS_AUTO) {
			TL_INFO("uplink: compression gzip (auto): the server does not take zstd "
			        "(%s)",
			        ch->last.message);
			break;
		}
		TL_ERR("uplink: compression %s is not supported by this ClickHouse (%s); "
		       "sending gzip instead",
		        tl_ch_compression_names[want], ch->last.message);
		rc = -ENOTSUP;
		break;
	}
	default:
		rc = -EINVAL;
		break;
	}
	if (effective)
		*effective = ch->codec;
	return rc;
}

int
tl_ch_compression(const struct tl_ch *ch)
{
	return ch->codec;
}

int
tl_ch_query_running(struct tl_ch *ch, const char *query_id, bool *running)
{
	char sql[128 + TL_CH_QUERY_ID_MAX];
	char *out = NULL, *end;
	unsigned long long n;
	int rc;

	*running = false;
	if (!valid_query_id(query_id))
		return -EINVAL;
	/* The id needs no quoting beyond the quotes: valid_query_id allows no quote or
	 * backslash. The query itself runs under a fresh id of its own. */
	snprintf(sql, sizeof(sql), "SELECT count() FROM system.processes WHERE query_id = '%s'",
	        query_id);
	rc = tl_ch_query(ch, sql, &out, NULL);
	if (rc < 0)
		return rc;
	errno = 0;
	n = strtoull(out, &end, 10);
	rc = end == out || (*end != '\n' && *end != '\0') || errno ? -EPROTO : 0;
	free(out);
	if (rc == 0)
		*running = n > 0;
	return rc;
}

/* ---- asynchronous inserts ------------------------------------------------------------ */

static bool
unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Append @p s percent-encoded at url[*o]; the caller reserved 3 bytes per char. */
static void
pct_append(char *url, size_t *o, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (unreserved(c)) {
			url[(*o)++] = (char)c;
		} else {
			url[(*o)++] = '%';
			url[(*o)++] = hex[c >> 4];
			url[(*o)++] = hex[c & 15];
		}
	}
}

static int
grow(void *pp, size_t *cap, size_t need)
{
	void **p = pp;
	size_t c = *cap ? *cap : 4096;
	void *n;

	if (need <= *cap)
		return 0;
	while (c < need)
		c = c > SIZE_MAX / 2 ? need : c * 2;
	n = realloc(*p, c);
	if (n == NULL)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

/* Build base + "query=INSERT INTO `db`.`t` (cols) FORMAT fmt" [+ "&decompress=1"]
 * [+ "&query_id=id"] into the slot's URL. The id needs no escaping (valid_query_id). */
static int
build_url(struct tl_ch *ch, struct slot *s, const char *db, const struct tl_ch_insert *ins,
        bool framed)
{
	const char *cols = ins->columns && *ins->columns ? ins->columns : NULL;
	size_t raw = strlen(db) + strlen(ins->table) + strlen(ins->format) + 40 +
	             (cols ? strlen(cols) : 0);
	size_t blen = strlen(ch->base);
	size_t o = blen;
	int rc;

	rc = grow(&s->url, &s->url_cap,
	        blen + 6 + 3 * raw + sizeof("&decompress=1&query_id=") + TL_CH_QUERY_ID_MAX + 1);
	if (rc < 0)
		return rc;
	memcpy(s->url, ch->base, blen);
	memcpy(s->url + o, "query=", 6);
	o += 6;
	pct_append(s->url, &o, "INSERT INTO `");
	pct_append(s->url, &o, db);
	pct_append(s->url, &o, "`.`");
	pct_append(s->url, &o, ins->table);
	pct_append(s->url, &o, "` ");
	if (cols) {
		pct_append(s->url, &o, "(");
		pct_append(s->url, &o, cols);
		pct_append(s->url, &o, ") ");
	}
	pct_append(s->url, &o, "FORMAT ");
	pct_append(s->url, &o, ins->format);
	if (framed) {
		memcpy(s->url + o, "&decompress=1", 13);
		o += 13;
	}
	if (ins->query_id) {
		size_t n = strlen(ins->query_id);

		memcpy(s->url + o, "&query_id=", 10);
		o += 10;
		memcpy(s->url + o, ins->query_id, n);
		o += n;
	}
	s->url[o] = '\0';
	return 0;
}

/* Compress @p len bytes at @p body into the slot's buffer with @p codec. */
static int
compress_body(struct tl_ch *ch, struct slot *s, int codec, const void *body, size_t len)
{
	size_t bound, n = 0;
	int rc;

	switch (codec) {
	case TL_CH_COMPRESS_GZIP:
		bound = libdeflate_gzip_compress_bound(ch->gz, len);
		break;
	case TL_CH_COMPRESS_ZSTD:
		bound = ZSTD_compressBound(len);
		break;
	case TL_CH_COMPRESS_LZ4:
		bound = tl_chblock_bound(len);
		if (bound == 0)
			return -ENOMEM;
		break;
	default:
		return -EINVAL;
	}
	rc = grow(&s->zbuf, &s->zcap, bound);
	if (rc < 0)
		return rc;
	switch (codec) {
	case TL_CH_COMPRESS_GZIP:
		n = libdeflate_gzip_compress(ch->gz, body, len, s->zbuf, s->zcap);
		if (n == 0)
			return -EIO;
		break;
	case TL_CH_COMPRESS_ZSTD:
		/* One frame with its content size; the context keeps its workspace. */
		n = ZSTD_compress2(ch->zc, s->zbuf, s->zcap, body, len);
		if (ZSTD_isError(n))
			return -EIO;
		break;
	default:
		rc = tl_chblock_compress(body, len, s->zbuf, s->zcap, &n);
		if (rc < 0)
			return -EIO;
		break;
	}
	s->body = s->zbuf;
	s->len = n;
	return 0;
}

int
tl_ch_submit(struct tl_ch *ch, const struct tl_ch_insert *ins)
{
	const char *db = ins->database ? ins->database : ch->database;
	struct curl_slist *hdr = ch->hdr_plain;
	int enc;
	struct slot *s;
	int rc;

	if (ins->table == NULL || !valid_name(ins->table) || !valid_name(db) ||
	        !valid_format(ins->format) || !valid_columns(ins->columns) ||
	        (!ins->pull && (ins->body == NULL || ins->len == 0)) ||
	        (ins->pull && ins->kind != TL_CH_BODY_PLAIN && ins->kind != TL_CH_BODY_CHLZ4) ||
	        (ins->query_id && !valid_query_id(ins->query_id)))
		return -EINVAL;
	if (ins->pull && ins->kind == TL_CH_BODY_PLAIN && !tl_ch_can_stream(ch))
		return -ENOTSUP;
	switch (ins->kind) {
	case TL_CH_BODY_PLAIN:
		enc = ch->codec;
		break;
	case TL_CH_BODY_GZIP:
		enc = TL_CH_COMPRESS_GZIP;
		break;
	case TL_CH_BODY_CHLZ4:
		enc = TL_CH_COMPRESS_LZ4;
		break;
	default:
		return -EINVAL;
	}
	if (ch->n_free == 0)
		return -EBUSY;
	s = &ch->slots[ch->free_idx[ch->n_free - 1]];
	rc = build_url(ch, s, db, ins, enc == TL_CH_COMPRESS_LZ4);
	if (rc < 0)
		return rc;
	s->body = ins->body;
	s->len = ins->len;
	s->pull = ins->pull;
	s->pass = ins->kind == TL_CH_BODY_CHLZ4;
	s->paused = false;
	s->zoff = s->zlen = 0;
	if (ins->pull) {
		s->body = NULL;
		s->len = 0;
		if (enc == TL_CH_COMPRESS_LZ4 && !s->pass &&
		        (rc = grow(&s->zbuf, &s->zcap, tl_chblock_bound(STREAM_PIECE))) < 0)
			return rc;
		hdr = ch->hdr_chunked;
	} else if (ins->kind == TL_CH_BODY_PLAIN && enc != TL_CH_COMPRESS_NONE) {
		rc = compress_body(ch, s, enc, ins->body, ins->len);
		if (rc < 0)
			return rc;
	}
	if (enc == TL_CH_COMPRESS_GZIP)
		hdr = ch->hdr_gzip;
	else if (enc == TL_CH_COMPRESS_ZSTD)
		hdr = ch->hdr_zstd;
	s->encoding = enc;
	s->id = ins->id;
	s->user = ins->user;
	s->off = 0;
	s->handed = 0;
	s->refused_rewind = false;
	s->resp_len = 0;
	s->resp[0] = '\0';
	s->hdr_code = 0;
	s->errbuf[0] = '\0';
	if (curl_easy_setopt(s->easy, CURLOPT_URL, s->url) != CURLE_OK ||
	        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdr) != CURLE_OK ||
	        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE,
	                s->pull ? (curl_off_t)-1 : (curl_off_t)s->len) != CURLE_OK)
		return -EIO;
	s->t0 = now_ns();
	if (curl_multi_add_handle(ch->multi, s->easy) != CURLM_OK)
		return -EIO;
	s->busy = true;
	ch->n_free--;
	return 0;
}

bool
tl_ch_can_stream(const struct tl_ch *ch)
{
	return ch->codec == TL_CH_COMPRESS_NONE || ch->codec == TL_CH_COMPRESS_LZ4;
}

int
tl_ch_resume(struct tl_ch *ch, void *user)
{
	for (unsigned i = 0; i < ch->n_slots; i++) {
		struct slot *s = &ch->slots[i];

		if (!s->busy || !s->pull || s->user != user)
			continue;
		if (s->paused) {
			s->paused = false;
			/* May call read_cb at once: the caller's buffer is ready. */
			if (curl_easy_pause(s->easy, CURLPAUSE_CONT) != CURLE_OK)
				return -EIO;
		}
		return 0;
	}
	return -ENOENT;
}

/* Move completed transfers into @p res; free their slots. */
static unsigned
drain(struct tl_ch *ch, struct tl_ch_result *res, unsigned max)
{
	unsigned n = 0;
	CURLMsg *m;
	int queued;

	while (n < max && (m = curl_multi_info_read(ch->multi, &queued)) != NULL) {
		struct slot *s = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
		/* m is invalid once the handle is removed: finish first. */
		finish(ch, s, m->data.result, &res[n++]);
		curl_multi_remove_handle(ch->multi, s->easy);
		s->busy = false;
		s->body = NULL;
		s->pull = NULL;
		ch->free_idx[ch->n_free++] = (unsigned)(s - ch->slots);
	}
	return n;
}

int
tl_ch_poll(struct tl_ch *ch, int timeout_ms, struct tl_ch_result *results, unsigned max)
{
	uint64_t deadline = now_ns() + (timeout_ms > 0 ? (uint64_t)timeout_ms * MS : 0);
	unsigned n = 0;

	if (max == 0 || results == NULL)
		return -EINVAL;
	for (;;) {
		int running;
		uint64_t t;

		if (curl_multi_perform(ch->multi, &running) != CURLM_OK)
			return -EIO;
		n += drain(ch, results + n, max - n);
		if (n > 0 || tl_ch_in_flight(ch) == 0)
			return (int)n;
		t = now_ns();
		if (t >= deadline)
			return 0;
		if (curl_multi_poll(ch->multi, NULL, 0, (int)((deadline - t + MS - 1) / MS),
		            NULL) != CURLM_OK)
			return -EIO;
	}
}
