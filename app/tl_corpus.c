/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tl_corpus.h"
#include "tl_error.h"

#define TPCH_QUERIES 22
#define ACTIVE_QUERIES 8             /* queries in flight: their events interleave */
#define MAX_ERROR_TEXT 1500          /* escaped bytes of one metadata.error line */
#define MAX_INFO_TEXT 4096           /* escaped bytes of one payload log line */
#define UDP_MAX 65507                /* largest UDP payload over IPv4 */
#define BASE_TIME_MS 1710028800000ll /* 2024-03-10T00:00:00Z */

/* Escaped JSON string contents (no quotes), or verbatim JSON text for spark lines. */
struct text {
	const char *p;
	uint32_t len;
	uint8_t plain; /* no escapes, no multi-byte UTF-8: may be cut anywhere */
	uint8_t src;   /* error lines: enum src */
};

struct spark {
	const char *p; /* one event-log line: a JSON object, verbatim */
	uint32_t len;
	uint32_t depth;   /* nesting, the object itself = 1 */
	uint32_t max_str; /* longest string in it, bytes as written */
};

enum src { SRC_HADOOP, SRC_HDFS, SRC_SPARK_LOG, SRC_SPARK_EVENTLOG };
static const char *const src_names[] = {"hadoop", "hdfs", "spark", "spark-eventlog"};

struct tl_corpus {
	struct text query[TPCH_QUERIES][2]; /* [0] as in the file, [1] indented with tabs */
	struct text *info;                  /* INFO log lines */
	struct text *err;                   /* WARN/ERROR/FATAL/exception lines + spark failures */
	struct spark *spark;
	uint32_t n_info, n_err, n_spark;
	uint32_t first_spark_err; /* spark failures follow the loghub error lines in err[] */
	uint32_t cap_info, cap_err, cap_spark;
	void **blocks; /* every allocation the texts point into */
	uint32_t n_blocks, cap_blocks;
};

/* ---------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------- */

static int set_msg(char *msg, size_t msglen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return TL_E_DATA;
}

static int
grow(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
	void *p;
	uint32_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	p = realloc(*arr, (size_t)ncap * elem);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* Remember @p p so tl_corpus_free() releases it; frees it on failure. */
static void *
own(struct tl_corpus *c, void *p)
{
	if (p == NULL)
		return NULL;
	if (grow((void **)&c->blocks, &c->cap_blocks, c->n_blocks, sizeof(void *)) < 0) {
		free(p);
		return NULL;
	}
	c->blocks[c->n_blocks++] = p;
	return p;
}

static int
read_file(struct tl_corpus *c, const char *dir, const char *name, char **buf, size_t *len,
        char *msg, size_t msglen)
{
	char path[4096];
	struct stat st;
	ssize_t n;
	size_t got = 0;
	char *b;
	int fd, e;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return set_msg(msg, msglen, "%s/%s: path too long", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return set_msg(msg, msglen, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
		close(fd);
		return set_msg(msg, msglen, "%s: not a regular file of at most 64 MiB", path);
	}
	b = own(c, malloc((size_t)st.st_size + 1));
	if (b == NULL) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = errno;
			close(fd);
			return set_msg(
			        msg, msglen, "%s: %s", path, n < 0 ? strerror(e) : "short read");
		}
		got += (size_t)n;
	}
	close(fd);
	b[got] = '\0';
	*buf = b;
	*len = got;
	return 0;
}

/* Escape @p n bytes as JSON string contents; UTF-8 passes through. @return bytes written
 * (at most 6 * n). */
static size_t
json_escape(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = in[i];

		if (ch == '"' || ch == '\\') {
			*o++ = '\\';
			*o++ = (char)ch;
		} else if (ch >= 0x20) {
			*o++ = (char)ch;
		} else {
			*o++ = '\\';
			switch (ch) {
			case '\n':
				*o++ = 'n';
				break;
			case '\t':
				*o++ = 't';
				break;
			case '\r':
				*o++ = 'r';
				break;
			case '\b':
				*o++ = 'b';
				break;
			case '\f':
				*o++ = 'f';
				break;
			default:
				*o++ = 'u';
				*o++ = '0';
				*o++ = '0';
				*o++ = hex[ch >> 4];
				*o++ = hex[ch & 15];
			}
		}
	}
	return (size_t)(o - out);
}

static int
is_plain(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\\' || (uint8_t)p[i] >= 0x80)
			return 0;
	return 1;
}

static int
add_text(struct text **arr, uint32_t *n, uint32_t *cap, const char *esc, size_t len, uint8_t src)
{
	if (grow((void **)arr, cap, *n, sizeof(struct text)) < 0)
		return -ENOMEM;
	(*arr)[*n] = (struct text){
	        .p = esc, .len = (uint32_t)len, .plain = (uint8_t)is_plain(esc, len), .src = src};
	(*n)++;
	return 0;
}

static int
has(const char *p, size_t n, const char *needle)
{
	/* p is never NULL here, but gcc -O2 with sanitizers cannot prove it (-Wnonnull). */
	return p != NULL && memmem(p, n, needle, strlen(needle)) != NULL;
}

/* Split a log file into lines (CR LF or LF), escape them, and sort them into the INFO
 * pool or the error pool (WARN/ERROR/FATAL level or an exception mentioned). */
static int
load_log(struct tl_corpus *c, const char *dir, const char *name, uint8_t src, char *msg,
        size_t msglen)
{
	char *buf, *esc, *o, *line, *end;
	size_t len;
	int rc;

	rc = read_file(c, dir, name, &buf, &len, msg, msglen);
	if (rc)
		return rc;
	esc = own(c, malloc(len * 6 + 1));
	if (esc == NULL)
		return -ENOMEM;
	o = esc;
	for (line = buf, end = buf + len; line < end;) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = (size_t)((nl ? nl : end) - line), e;
		int is_err;

		if (n && line[n - 1] == '\r')
			n--;
		if (n) {
			is_err = has(line, n, " WARN ") || has(line, n, " ERROR ") ||
			         has(line, n, " FATAL ") || has(line, n, "Exception") ||
			         has(line, n, "exception");
			e = json_escape((const uint8_t *)line, n, o);
			if (is_err && e <= MAX_ERROR_TEXT)
				rc = add_text(&c->err, &c->n_err, &c->cap_err, o, e, src);
			else if (!is_err && e <= MAX_INFO_TEXT)
				rc = add_text(&c->info, &c->n_info, &c->cap_info, o, e, src);
			if (rc)
				return rc;
			o += e;
		}
		line = nl ? nl + 1 : end;
	}
	return 0;
}

/* End of the JSON string whose contents start at @p p (index of the closing quote). */
static const char *
string_end(const char *p, const char *end)
{
	while (p < end && *p != '"')
		p += (*p == '\\') ? 2 : 1;
	return p < end ? p : NULL;
}

/* Nesting depth and longest string of one JSON line. */
static void
spark_measure(struct spark *s)
{
	const char *p = s->p, *end = s->p + s->len, *q;
	uint32_t d = 0;

	s->depth = 0;
	s->max_str = 0;
	while (p < end) {
		switch (*p) {
		case '{':
		case '[':
			if (++d > s->depth)
				s->depth = d;
			p++;
			break;
		case '}':
		case ']':
			d--;
			p++;
			break;
		case '"':
			q = string_end(p + 1, end);
			if (q == NULL)
				return;
			if ((uint32_t)(q - p - 1) > s->max_str)
				s->max_str = (uint32_t)(q - p - 1);
			p = q + 1;
			break;
		default:
			p++;
		}
	}
}

/* Next "\n" escape in escaped text [p, end), walking whole escapes (so the "\\" of
 * "C:\\new" is not mistaken for one). */
static const char *
next_nl_escape(const char *p, const char *end)
{
	while (p < end) {
		if (*p != '\\') {
			p++;
			continue;
		}
		if (p + 1 < end && p[1] == 'n')
			return p;
		p += 2;
	}
	return NULL;
}

/* Failure messages of the Spark event log ("Full Stack Trace", "Failure Reason",
 * "Message"): their first line, every "Caused by:" line, and the first line with the
 * next stack frames, all kept escaped exactly as the log wrote them. */
static int
add_spark_failures(struct tl_corpus *c, const char *line, size_t len)
{
	static const char *const keys[] = {
	        "\"Full Stack Trace\":\"", "\"Failure Reason\":\"", "\"Message\":\""};
	const char *end = line + len;

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		const char *p = line;

		while ((p = memmem(p, (size_t)(end - p), keys[k], strlen(keys[k]))) != NULL) {
			const char *s = p + strlen(keys[k]), *e = string_end(s, end), *l;
			int nth = 0;

			if (e == NULL)
				break;
			for (l = s; l < e; nth++) {
				const char *nl = next_nl_escape(l, e), *le = nl ? nl : e, *t = le;
				size_t n = (size_t)(le - l);
				bool keep =
				        nth == 0 || (n > 10 && memcmp(l, "Caused by:", 10) == 0);

				if (keep && n <= MAX_ERROR_TEXT &&
				        add_text(&c->err, &c->n_err, &c->cap_err, l, n,
				                SRC_SPARK_EVENTLOG))
					return -ENOMEM;
				if (nth == 0) {
					/* The first line with up to six stack frames below it. */
					for (int f = 0; f < 6 && t < e; f++) {
						const char *nx = next_nl_escape(t + 2, e);

						t = nx ? nx : e;
					}
					if (t > le && (size_t)(t - l) <= MAX_ERROR_TEXT &&
					        add_text(&c->err, &c->n_err, &c->cap_err, l,
					                (size_t)(t - l), SRC_SPARK_EVENTLOG))
						return -ENOMEM;
				}
				l = nl ? nl + 2 : e;
			}
			p = e;
		}
	}
	return 0;
}

static int
load_spark(struct tl_corpus *c, const char *dir, char *msg, size_t msglen)
{
	char *buf, *line, *end;
	size_t len;
	int rc;

	rc = read_file(c, dir, "spark-eventlog/complex_dec_eventlog", &buf, &len, msg, msglen);
	if (rc)
		return rc;
	for (line = buf, end = buf + len; line < end;) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = (size_t)((nl ? nl : end) - line);

		if (n && line[n - 1] == '\r')
			n--;
		if (n > 2 && line[0] == '{' && line[n - 1] == '}') {
			if (grow((void **)&c->spark, &c->cap_spark, c->n_spark,
			            sizeof(struct spark)))
				return -ENOMEM;
			c->spark[c->n_spark] = (struct spark){.p = line, .len = (uint32_t)n};
			spark_measure(&c->spark[c->n_spark]);
			c->n_spark++;
			rc = add_spark_failures(c, line, n);
			if (rc)
				return rc;
		}
		line = nl ? nl + 1 : end;
	}
	return 0;
}

static int
load_queries(struct tl_corpus *c, const char *dir, char *msg, size_t msglen)
{
	for (int i = 0; i < TPCH_QUERIES; i++) {
		char name[32], *buf, *tabbed, *t, *esc;
		size_t len, e0, e1;
		int rc;

		snprintf(name, sizeof(name), "tpch/q%02d.sql", i + 1);
		rc = read_file(c, dir, name, &buf, &len, msg, msglen);
		if (rc)
			return rc;
		if (len == 0)
			return set_msg(msg, msglen, "%s/%s: empty", dir, name);
		/* A second form with leading indentation in tabs: exercises \t escapes. */
		tabbed = own(c, malloc(len + 1));
		esc = own(c, malloc(len * 12 + 2));
		if (tabbed == NULL || esc == NULL)
			return -ENOMEM;
		t = tabbed;
		for (size_t j = 0; j < len;) {
			if ((j == 0 || buf[j - 1] == '\n' || t[-1] == '\t') && j + 4 <= len &&
			        memcmp(buf + j, "    ", 4) == 0) {
				*t++ = '\t';
				j += 4;
			} else {
				*t++ = buf[j++];
			}
		}
		e0 = json_escape((const uint8_t *)buf, len, esc);
		e1 = json_escape((const uint8_t *)tabbed, (size_t)(t - tabbed), esc + e0);
		c->query[i][0] = (struct text){.p = esc, .len = (uint32_t)e0};
		c->query[i][1] = (struct text){.p = esc + e0, .len = (uint32_t)e1};
	}
	return 0;
}

int
tl_corpus_load(const char *data_dir, struct tl_corpus **out, char *msg, size_t msglen)
{
	static const struct {
		const char *name;
		uint8_t src;
	} logs[] = {
	        {"loghub/Hadoop_2k.log", SRC_HADOOP},
	        {"loghub/HDFS_2k.log", SRC_HDFS},
	        {"loghub/Spark_2k.log", SRC_SPARK_LOG},
	};
	struct tl_corpus *c;
	int rc;

	if (out == NULL || data_dir == NULL)
		return -EINVAL;
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	rc = load_queries(c, data_dir, msg, msglen);
	for (size_t i = 0; rc == 0 && i < sizeof(logs) / sizeof(logs[0]); i++)
		rc = load_log(c, data_dir, logs[i].name, logs[i].src, msg, msglen);
	c->first_spark_err = c->n_err;
	if (rc == 0)
		rc = load_spark(c, data_dir, msg, msglen);
	if (rc == 0 && (c->n_info < 16 || c->n_err < 16 || c->n_spark < 4))
		rc = set_msg(msg, msglen,
		        "%s: too little usable text (%u INFO lines, %u error lines, %u spark "
		        "events)",
		        data_dir, c->n_info, c->n_err, c->n_spark);
	if (rc) {
		if (rc == -ENOMEM)
			set_msg(msg, msglen, "out of memory");
		tl_corpus_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
tl_corpus_free(struct tl_corpus *c)
{
	if (c == NULL)
		return;
	for (uint32_t i = 0; i < c->n_blocks; i++)
		free(c->blocks[i]);
	free(c->blocks);
	free(c->info);
	free(c->err);
	free(c->spark);
	free(c);
}

/* ---------------------------------------------------------------------------------------
 * Faults
 * ------------------------------------------------------------------------------------- */

static const struct {
	const char *name;
	enum tl_reason reason;
} faults[TL_FAULT_MAX] = {
        [TL_FAULT_NONE] = {"none", TL_REASON_OK},
        [TL_FAULT_SYNTAX_CUT] = {"syntax_cut", TL_REASON_EV_JSON_SYNTAX},
        [TL_FAULT_SYNTAX_COMMA] = {"syntax_comma", TL_REASON_EV_JSON_SYNTAX},
        [TL_FAULT_SYNTAX_TRAILING] = {"syntax_trailing", TL_REASON_EV_JSON_SYNTAX},
        [TL_FAULT_UTF8_BYTE] = {"utf8_byte", TL_REASON_EV_JSON_UTF8},
        [TL_FAULT_UTF8_OVERLONG] = {"utf8_overlong", TL_REASON_EV_JSON_UTF8},
        [TL_FAULT_UTF8_SURROGATE] = {"utf8_surrogate", TL_REASON_EV_JSON_UTF8},
        [TL_FAULT_DEPTH] = {"depth", TL_REASON_EV_JSON_DEPTH},
        [TL_FAULT_STRING_LONG] = {"string_long", TL_REASON_EV_JSON_STRING_TOO_LONG},
        [TL_FAULT_TOO_LARGE] = {"too_large", TL_REASON_EV_TOO_LARGE},
        [TL_FAULT_DUP_KEY] = {"dup_key", TL_REASON_EV_JSON_DUPLICATE_KEY},
        [TL_FAULT_NUMBER_RANGE] = {"number_range", TL_REASON_EV_NUMBER_RANGE},
        [TL_FAULT_TYPE_STRING] = {"type_string", TL_REASON_EV_FIELD_TYPE},
        [TL_FAULT_TYPE_FLOAT] = {"type_float", TL_REASON_EV_FIELD_TYPE},
        [TL_FAULT_TS_FEB29] = {"ts_feb29", TL_REASON_EV_TIMESTAMP},
        [TL_FAULT_TS_NOZONE] = {"ts_nozone", TL_REASON_EV_TIMESTAMP},
        [TL_FAULT_MISSING_ID] = {"missing_id", TL_REASON_EV_MISSING_FIELD},
        [TL_FAULT_NULL_TYPE] = {"null_type", TL_REASON_EV_MISSING_FIELD},
        [TL_FAULT_NOT_OBJECT] = {"not_object", TL_REASON_EV_JSON_NOT_OBJECT},
};

enum tl_reason
tl_corpus_fault_reason(enum tl_corpus_fault f)
{
	return (unsigned)f < TL_FAULT_MAX ? faults[f].reason : TL_REASON_OK;
}

const char *
tl_corpus_fault_name(enum tl_corpus_fault f)
{
	return (unsigned)f < TL_FAULT_MAX ? faults[f].name : "invalid";
}

/* ---------------------------------------------------------------------------------------
 * Generator
 * ------------------------------------------------------------------------------------- */

/* Users and databases: decoded UTF-8, its minimal JSON escaping, and (some) an
 * all-\u-escaped spelling that the event uses now and then. */
struct name {
	const char *raw_json; /* minimal escaping: what the truth shows */
	const char *alt_json; /* another valid spelling of the same value, or NULL */
};

static const struct name users[] = {
        {"alice", NULL},
        {"bob", NULL},
        {"svc_etl", NULL},
        {"analyst-07", NULL},
        {"dbt_runner", NULL},
        {"jos\xc3\xa9", "jos\\u00e9"},
        {"\xe3\x83\x87\xe3\x83\xbc\xe3\x82\xbf", "\\u30c7\\u30fc\\u30bf"},
        {"m\xc3\xbcller.k", "m\\u00fcller.k"},
        {"ops_\xf0\x9f\x9a\x80", "ops_\\ud83d\\ude80"},
        {"li.wei_\xe6\x9d\x8e", "li.wei_\\u674e"},
        {"CORP\\\\svc_bi", "CORP\\u005csvc_bi"},
        {"o'brien", NULL},
};

static const struct name databases[] = {
        {"tpch_sf1", NULL},
        {"tpch_sf100", NULL},
        {"sales", NULL},
        {"analytics", NULL},
        {"finance_eu", NULL},
        {"lakehouse.prod", NULL},
        {"\xe3\x83\x87\xe3\x83\xbc\xe3\x82\xbf\xe3\x83\x99\xe3\x83\xbc\xe3\x82\xb9",
                "\\u30c7\\u30fc\\u30bf\\u30d9\\u30fc\\u30b9"},
        {"m\xc3\xbcnchen_dw", "m\\u00fcnchen_dw"},
};

static const struct {
	int16_t min;
	const char *text;
} zones[] = {
        {0, "Z"},
        {330, "+05:30"},
        {-480, "-08:00"},
        {0, "+00:00"},
        {60, "+01:00"},
        {540, "+09:00"},
        {-300, "-05:00"},
};

static const char *const engine_versions[] = {"3.4.1-e6", "3.5.0-e6", "3.5.2-e6-rc1"};
static const char *const clusters_str[] = {
        "\"edge-eu-1\"", "\"edge-ap-south-2\"", "\"onprem-dc3\""};
static const char *const clusters_obj[] = {
        "{\"name\":\"edge-eu-1\",\"az\":\"eu-central-1a\",\"nodes\":12}",
        "{\"name\":\"onprem-dc3\",\"rack\":\"r17\",\"nodes\":4}",
};

enum term { TERM_FINISHED, TERM_FAILED, TERM_CANCELLED };

struct qstate {
	bool live;
	uint64_t index;
	char id[40];
	uint8_t id_len;
	uint8_t q, qvar, user, user_alt, db, db_alt, zone;
	uint8_t step, n_events, term;
	uint8_t engine;  /* 0 none, else 1 + index */
	uint8_t cluster; /* 0 none, 1 string, 2 object */
	uint8_t cluster_idx;
	int64_t t0, t;
	uint64_t rows;
};

/* What the event holds, for the truth line. Pointers into the value arena. */
enum vkind { V_ABSENT, V_NULL, V_STRING, V_RAW };

struct fields {
	const char *qid, *type, *qtext, *user, *db;
	uint32_t qid_len, type_len, qtext_len;
	int64_t time_ms;
	uint64_t duration, rows;
	bool has_rows;
	uint8_t err_kind, pay_kind;
	const char *err, *pay; /* V_STRING: escaped contents; V_RAW: JSON text */
	uint32_t err_len, pay_len;
	const char *engine, *cluster, *trace; /* extra values as JSON text, or NULL */
	uint32_t engine_len, trace_len;
};

struct member {
	const char *key;
	uint32_t klen;
	uint32_t voff, vlen; /* in the value arena */
};

struct tl_corpus_gen {
	const struct tl_corpus *c;
	struct tl_corpus_conf conf;
	struct tl_corpus_rng rng;
	uint32_t fault_mask;
	uint8_t fault_list[TL_FAULT_MAX];
	uint32_t n_faults;
	struct qstate q[ACTIVE_QUERIES];
	uint64_t started, done, seq;
	int64_t clock_ms;
	uint32_t *spark_ok; /* spark lines usable under max_depth / max_string */
	uint32_t n_spark_ok;
	uint32_t *query_ok; /* TPC-H queries whose text fits max_string */
	uint32_t n_query_ok;
	char *ev; /* the event */
	size_t ev_cap;
	char *vals; /* value arena, reset per event */
	size_t vals_len, vals_cap;
	char *truth;
	size_t truth_cap, truth_len;
};

void
tl_corpus_conf_defaults(struct tl_corpus_conf *conf)
{
	*conf = (struct tl_corpus_conf){
	        .seed = 1,
	        .error_share = 0.1,
	        .malformed_share = 0.05,
	        .max_event_size = 60 * 1024,
	        .max_string = 60 * 1024,
	        .max_depth = 32,
	        .id_max_len = 256,
	        .min_size = 1024,
	        .max_size = 5120,
	        .late_ms = 60000,
	};
}

static bool
string_long_by_payload(const struct tl_corpus_conf *cf)
{
	/* The other members take at most ~3.2 KB (query text, an error line, extras). */
	return cf->max_string + 4096 <= cf->max_event_size;
}

static bool
string_long_by_id(const struct tl_corpus_conf *cf)
{
	return cf->id_max_len > 0 && cf->id_max_len + 64 < cf->max_string &&
	       cf->id_max_len + 4096 < cf->max_event_size;
}

static uint32_t
feasible_faults(const struct tl_corpus_conf *cf)
{
	uint32_t m = 0;

	for (int f = 1; f < TL_FAULT_MAX; f++)
		m |= 1u << f;
	if (!string_long_by_payload(cf) && !string_long_by_id(cf))
		m &= ~(1u << TL_FAULT_STRING_LONG);
	if (cf->max_event_size + 64 > UDP_MAX)
		m &= ~(1u << TL_FAULT_TOO_LARGE);
	if (cf->fault_mask)
		m &= cf->fault_mask;
	return m;
}

static int
check_conf(const struct tl_corpus_conf *cf)
{
	if (!(cf->error_share >= 0 && cf->error_share <= 1) ||
	        !(cf->malformed_share >= 0 && cf->malformed_share <= 1))
		return -EINVAL;
	if (cf->min_size > cf->max_size || cf->max_size < 1024 || cf->max_size > cf->max_event_size)
		return -EINVAL;
	if (cf->max_string < 1536 || cf->max_depth < 8 || cf->max_depth > 1000)
		return -EINVAL;
	if (cf->max_event_size < 6144 || cf->max_event_size > (1u << 20))
		return -EINVAL;
	if (cf->malformed_share > 0 && feasible_faults(cf) == 0)
		return -EINVAL;
	return 0;
}

int
tl_corpus_gen_create(
        const struct tl_corpus *c, const struct tl_corpus_conf *conf, struct tl_corpus_gen **out)
{
	struct tl_corpus_gen *g;
	int rc;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (c == NULL || conf == NULL)
		return -EINVAL;
	rc = check_conf(conf);
	if (rc)
		return rc;
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->c = c;
	g->conf = *conf;
	tl_corpus_rng_seed(&g->rng, conf->seed);
	g->fault_mask = feasible_faults(conf);
	for (int f = 1; f < TL_FAULT_MAX; f++)
		if (g->fault_mask & (1u << f))
			g->fault_list[g->n_faults++] = (uint8_t)f;
	g->clock_ms = BASE_TIME_MS + (int64_t)(conf->seed % 97) * 86400000ll;

	g->ev_cap = (conf->max_event_size > 65536 ? conf->max_event_size : 65536) + 8192;
	g->vals_cap = g->ev_cap * 2 + 65536;
	g->truth_cap = g->ev_cap * 7 + 65536;
	g->ev = malloc(g->ev_cap);
	g->vals = malloc(g->vals_cap);
	g->truth = conf->truth ? malloc(g->truth_cap) : NULL;
	g->spark_ok = calloc(c->n_spark, sizeof(uint32_t));
	g->query_ok = calloc(TPCH_QUERIES, sizeof(uint32_t));
	if (g->ev == NULL || g->vals == NULL || (conf->truth && g->truth == NULL) ||
	        g->spark_ok == NULL || g->query_ok == NULL) {
		tl_corpus_gen_free(g);
		return -ENOMEM;
	}
	/* Valid payload objects nest spark events at most 3 deep (wrapper object, array). */
	for (uint32_t i = 0; i < c->n_spark; i++)
		if (c->spark[i].depth + 3 <= conf->max_depth &&
		        c->spark[i].max_str <= conf->max_string &&
		        c->spark[i].len + 64 <= conf->max_size)
			g->spark_ok[g->n_spark_ok++] = i;
	for (uint32_t i = 0; i < TPCH_QUERIES; i++)
		if (c->query[i][0].len <= conf->max_string &&
		        c->query[i][1].len <= conf->max_string)
			g->query_ok[g->n_query_ok++] = i;
	if (g->n_query_ok == 0) {
		tl_corpus_gen_free(g);
		return -EINVAL;
	}
	*out = g;
	return 0;
}

void
tl_corpus_gen_free(struct tl_corpus_gen *g)
{
	if (g == NULL)
		return;
	free(g->ev);
	free(g->vals);
	free(g->truth);
	free(g->spark_ok);
	free(g->query_ok);
	free(g);
}

uint32_t
tl_corpus_gen_faults(const struct tl_corpus_gen *g)
{
	return g ? g->fault_mask : 0;
}

/* ---- small writers ---- */

static inline uint32_t
rnd(struct tl_corpus_gen *g, uint32_t n)
{
	return tl_corpus_rng_below(&g->rng, n);
}

static inline bool
chance(struct tl_corpus_gen *g, double p)
{
	return tl_corpus_rng_chance(&g->rng, p);
}

static inline char *
put(char *o, const void *s, size_t n)
{
	memcpy(o, s, n);
	return o + n;
}

static inline char *
puts0(char *o, const char *s)
{
	return put(o, s, strlen(s));
}

static char *
put_u64(char *o, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*o++ = tmp[--n];
	return o;
}

static char *
put_i64(char *o, int64_t v)
{
	if (v < 0) {
		*o++ = '-';
		return put_u64(o, (uint64_t)0 - (uint64_t)v);
	}
	return put_u64(o, (uint64_t)v);
}

static inline char *
put_2(char *o, unsigned v)
{
	*o++ = (char)('0' + v / 10);
	*o++ = (char)('0' + v % 10);
	return o;
}

static char *
put_hex(char *o, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--)
		*o++ = hex[(v >> (4 * i)) & 15];
	return o;
}

/* Days since 1970-01-01 -> civil date (Howard Hinnant's algorithm). */
static void
civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	int64_t era, yy;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)(yy + (*m <= 2));
}

/* "YYYY-MM-DDThh:mm:ss.mmm" of UTC time @p ms shifted by @p zone_min (no zone suffix). */
static char *
put_local_time(char *o, int64_t ms, int zone_min)
{
	int64_t local = ms + (int64_t)zone_min * 60000, days, rem;
	unsigned mo, d, hh, mi, ss, mss;
	int y;

	days = local >= 0 ? local / 86400000 : -((-local + 86399999) / 86400000);
	rem = local - days * 86400000;
	civil_from_days(days, &y, &mo, &d);
	hh = (unsigned)(rem / 3600000);
	mi = (unsigned)(rem / 60000 % 60);
	ss = (unsigned)(rem / 1000 % 60);
	mss = (unsigned)(rem % 1000);
	o = put_2(o, (unsigned)y / 100);
	o = put_2(o, (unsigned)y % 100);
	*o++ = '-';
	o = put_2(o, mo);
	*o++ = '-';
	o = put_2(o, d);
	*o++ = 'T';
	o = put_2(o, hh);
	*o++ = ':';
	o = put_2(o, mi);
	*o++ = ':';
	o = put_2(o, ss);
	*o++ = '.';
	*o++ = (char)('0' + mss / 100);
	return put_2(o, mss % 100);
}

/* Length of the escape or UTF-8 sequence starting at @p p. */
static inline uint32_t
unit_len(const char *p)
{
	uint8_t ch = (uint8_t)*p;

	if (ch == '\\')
		return p[1] == 'u' ? 6 : 2;
	if (ch < 0x80)
		return 1;
	if (ch >= 0xf0)
		return 4;
	if (ch >= 0xe0)
		return 3;
	return 2;
}

/* Largest cut <= @p want that splits @p t at a boundary of escapes and UTF-8 sequences. */
static uint32_t
cut_down(const struct text *t, uint32_t want)
{
	uint32_t i = 0, u;

	if (want >= t->len)
		return t->len;
	if (t->plain)
		return want;
	while (i < want) {
		u = unit_len(t->p + i);
		if (i + u > want)
			break;
		i += u;
	}
	return i;
}

/* Append log lines from @p pool (starting at a random one, "\n"-joined) to @p o, up to
 * @p max bytes of escaped text; the last line is cut at a safe boundary.
 * @return bytes written. */
static uint32_t
fill_lines(struct tl_corpus_gen *g, char *o, uint32_t max, const struct text *pool, uint32_t n)
{
	uint32_t i = rnd(g, n), w = 0;

	while (w < max) {
		const struct text *t = &pool[i];
		uint32_t room, take;

		if (w) {
			if (w + 2 >= max)
				break;
			o[w++] = '\\';
			o[w++] = 'n';
		}
		room = max - w;
		take = cut_down(t, room);
		memcpy(o + w, t->p, take);
		w += take;
		if (take < t->len)
			break;
		i = i + 1 < n ? i + 1 : 0;
	}
	return w;
}

/* ---- value arena ---- */

static inline char *
vcur(struct tl_corpus_gen *g)
{
	return g->vals + g->vals_len;
}

static inline uint32_t
vend(struct tl_corpus_gen *g, char *o, uint32_t *voff)
{
	uint32_t start = (uint32_t)g->vals_len;

	*voff = start;
	g->vals_len = (size_t)(o - g->vals);
	return (uint32_t)(g->vals_len - start);
}

/* ---- query life cycle ---- */

static void
query_start(struct tl_corpus_gen *g, struct qstate *q)
{
	uint64_t a = tl_corpus_rng_next(&g->rng), b = tl_corpus_rng_next(&g->rng);
	char *o = q->id;
	uint32_t n_progress;

	memset(q, 0, sizeof(*q));
	q->live = true;
	q->index = g->started++;
	/* A version-4 UUID as query id. */
	o = put_hex(o, a >> 32, 8);
	*o++ = '-';
	o = put_hex(o, a >> 16, 4);
	*o++ = '-';
	o = put_hex(o, 0x4000 | ((a >> 4) & 0x0fff), 4);
	*o++ = '-';
	o = put_hex(o, 0x8000 | (b >> 50), 4);
	*o++ = '-';
	o = put_hex(o, b, 12);
	q->id_len = (uint8_t)(o - q->id);

	q->q = (uint8_t)g->query_ok[rnd(g, g->n_query_ok)];
	q->qvar = chance(g, 0.25);
	q->user = (uint8_t)rnd(g, sizeof(users) / sizeof(users[0]));
	q->user_alt = users[q->user].alt_json && chance(g, 0.3);
	q->db = (uint8_t)rnd(g, sizeof(databases) / sizeof(databases[0]));
	q->db_alt = databases[q->db].alt_json && chance(g, 0.3);
	q->zone = (uint8_t)rnd(g, sizeof(zones) / sizeof(zones[0]));
	/* 0, 1, 1 or 2 progress events: five events per query on average. */
	n_progress = rnd(g, 4);
	n_progress = n_progress == 3 ? 2 : n_progress == 0 ? 0 : 1;
	q->n_events = (uint8_t)(4 + n_progress);
	if (chance(g, g->conf.error_share))
		q->term = TERM_FAILED;
	else
		q->term = chance(g, 0.04) ? TERM_CANCELLED : TERM_FINISHED;
	q->engine = chance(g, 0.3) ? (uint8_t)(1 + rnd(g, 3)) : 0;
	q->cluster = chance(g, 0.2) ? (uint8_t)(1 + rnd(g, 2)) : 0;
	q->cluster_idx = (uint8_t)rnd(g, 2);
	q->rows = chance(g, 0.1) ? 0 : (tl_corpus_rng_next(&g->rng) % 5000000);
	/* About 100 queries per second. */
	g->clock_ms += 1 + rnd(g, 19);
	q->t0 = q->t = g->clock_ms;
}

/* Pick the query of the next event, starting queries as slots free up. */
static struct qstate *
query_pick(struct tl_corpus_gen *g)
{
	uint32_t live = 0, pick;

	for (int i = 0; i < ACTIVE_QUERIES; i++) {
		if (!g->q[i].live && (g->conf.max_queries == 0 || g->started < g->conf.max_queries))
			query_start(g, &g->q[i]);
		live += g->q[i].live;
	}
	if (live == 0)
		return NULL;
	pick = rnd(g, live);
	for (int i = 0; i < ACTIVE_QUERIES; i++)
		if (g->q[i].live && pick-- == 0)
			return &g->q[i];
	return NULL;
}

/* ---- event assembly ---- */

struct build {
	struct member m[12];
	uint32_t n;
	bool spaced;
	int skip_comma; /* member index whose leading comma is dropped, or -1 */
	bool trailing;
	uint32_t meta_idx, payload_idx;
};

static void
add_member(struct build *b, const char *key, uint32_t voff, uint32_t vlen)
{
	b->m[b->n++] = (struct member){
	        .key = key, .klen = (uint32_t)strlen(key), .voff = voff, .vlen = vlen};
}

static size_t
serialized_len(const struct build *b, bool without_payload)
{
	size_t n = 2;

	for (uint32_t i = 0; i < b->n; i++) {
		if (without_payload && i == b->payload_idx)
			continue;
		n += b->m[i].klen + 3 + b->m[i].vlen + (b->spaced ? 1 : 0);
	}
	n += (b->n - 1) * (b->spaced ? 2u : 1u);
	return n;
}

static uint32_t
serialize(struct tl_corpus_gen *g, const struct build *b, char *o0)
{
	char *o = o0;

	*o++ = '{';
	for (uint32_t i = 0; i < b->n; i++) {
		if (i && (int)i != b->skip_comma) {
			*o++ = ',';
			if (b->spaced)
				*o++ = ' ';
		}
		*o++ = '"';
		o = put(o, b->m[i].key, b->m[i].klen);
		*o++ = '"';
		*o++ = ':';
		if (b->spaced)
			*o++ = ' ';
		o = put(o, g->vals + b->m[i].voff, b->m[i].vlen);
	}
	if (b->trailing)
		*o++ = ',';
	*o++ = '}';
	return (uint32_t)(o - o0);
}

static const char *
type_name(const struct qstate *q, uint32_t step)
{
	if (step == 0)
		return "queued";
	if (step == 1)
		return "planning";
	if (step + 1 < q->n_events)
		return "running";
	return q->term == TERM_FAILED      ? "failed"
	       : q->term == TERM_CANCELLED ? "cancelled"
	                                   : "finished";
}

/* A string payload: log lines, exactly @p budget bytes of JSON if the text allows. */
static uint32_t
payload_string(struct tl_corpus_gen *g, char *o, uint32_t budget, bool failing)
{
	const struct tl_corpus *c = g->c;
	uint32_t max = budget > 2 ? budget - 2 : 16, w;

	if (max < 16)
		max = 16;
	if (max > g->conf.max_string)
		max = (uint32_t)g->conf.max_string;
	o[0] = '"';
	if (failing && chance(g, 0.7))
		w = fill_lines(g, o + 1, max, c->err, c->n_err);
	else
		w = fill_lines(g, o + 1, max, c->info, c->n_info);
	o[1 + w] = '"';
	return w + 2;
}

/* Append spark lines to a JSON array at @p o while they fit in @p room bytes.
 * @return bytes written ("[...]"), or 0 if not even one fitted. */
static uint32_t
spark_array(struct tl_corpus_gen *g, char *o, uint32_t room)
{
	const struct tl_corpus *c = g->c;
	uint32_t w = 1, n = 0;

	if (g->n_spark_ok == 0 || room < 8)
		return 0;
	o[0] = '[';
	for (int tries = 0; tries < 6; tries++) {
		const struct spark *s = &c->spark[g->spark_ok[rnd(g, g->n_spark_ok)]];

		if (w + s->len + 2 > room)
			continue;
		if (n)
			o[w++] = ',';
		memcpy(o + w, s->p, s->len);
		w += s->len;
		n++;
	}
	if (n == 0)
		return 0;
	o[w++] = ']';
	return w;
}

/* A non-string payload built from Spark event-log content, at most @p budget bytes
 * (and at most max_string: a raw value is held to the column's length limit too), at
 * least @p min_len bytes. @return bytes written, or 0 to fall back to a string payload. */
static uint32_t
payload_object(struct tl_corpus_gen *g, char *o, uint32_t budget, uint32_t min_len)
{
	const struct tl_corpus *c = g->c;
	uint32_t kind = rnd(g, 4), w;

	if (budget > g->conf.max_string)
		budget = (uint32_t)g->conf.max_string;
	if (g->n_spark_ok == 0 || budget < 256)
		return 0;
	if (kind == 0) {
		/* One event-log record as it is. */
		for (int tries = 0; tries < 8; tries++) {
			const struct spark *s = &c->spark[g->spark_ok[rnd(g, g->n_spark_ok)]];

			if (s->len <= budget && s->len >= min_len) {
				memcpy(o, s->p, s->len);
				return s->len;
			}
		}
		return 0;
	}
	if (kind == 1) {
		w = spark_array(g, o, budget);
		return w >= min_len ? w : 0;
	}
	/* {"app":"...","events":[...],"log":"<log lines filling the rest>"} */
	w = (uint32_t)(puts0(o, "{\"app\":\"app-20210712151911-0000\",\"events\":") - o);
	{
		uint32_t a = spark_array(g, o + w, budget > w + 40 ? (budget - w - 40) : 0);

		if (a == 0) {
			memcpy(o + w, "[]", 2);
			a = 2;
		}
		w += a;
	}
	w = (uint32_t)(puts0(o + w, ",\"log\":\"") - o);
	if (budget > w + 2) {
		uint32_t max = budget - w - 2;

		if (max > g->conf.max_string - 8)
			max = (uint32_t)g->conf.max_string - 8;
		w += fill_lines(g, o + w, max, c->info, c->n_info);
	}
	o[w++] = '"';
	o[w++] = '}';
	return w <= budget ? w : 0;
}

/* An error value: a real error line as a string, or sometimes an object. */
static uint32_t
error_value(struct tl_corpus_gen *g, char *o, uint8_t *kind)
{
	const struct tl_corpus *c = g->c;
	const struct text *t;
	char *s = o;

	/* A third of the failures quote the Spark event log's failure messages. */
	if (chance(g, 0.3) && c->first_spark_err < c->n_err) {
		t = &c->err[c->first_spark_err + rnd(g, c->n_err - c->first_spark_err)];
	} else {
		t = &c->err[rnd(g, c->n_err)];
	}
	if (chance(g, 0.15)) {
		*kind = V_RAW;
		s = puts0(s, "{\"source\":\"");
		s = puts0(s, src_names[t->src]);
		s = puts0(s, "\",\"retryable\":");
		s = puts0(s, chance(g, 0.5) ? "false" : "true");
		s = puts0(s, ",\"message\":\"");
		s = put(s, t->p, t->len);
		s = puts0(s, "\"}");
	} else {
		*kind = V_STRING;
		*s++ = '"';
		s = put(s, t->p, t->len);
		*s++ = '"';
	}
	return (uint32_t)(s - o);
}

/* Insert @p ins (length @p n) into the query_text value at an escape boundary. */
static void
corrupt_query_text(
        struct tl_corpus_gen *g, struct build *b, uint32_t qi, const char *ins, uint32_t n)
{
	struct member *m = &b->m[qi];
	char *o = vcur(g), *v = g->vals + m->voff;
	struct text t = {.p = v + 1, .len = m->vlen - 2};
	uint32_t at = cut_down(&t, 1 + rnd(g, t.len - 1));
	uint32_t voff;

	o = put(o, v, 1 + at);
	o = put(o, ins, n);
	o = put(o, v + 1 + at, m->vlen - 1 - at);
	m->vlen = vend(g, o, &voff);
	m->voff = voff;
}

static const char *const utf8_bad_bytes[] = {"\xff", "\x80", "\xc3", "\xfe", "\xed\xa0\x80"};
static const char *const utf8_overlongs[] = {
        "\xc0\xaf", "\xe0\x80\xaf", "\xc1\xbf", "\xf0\x80\x80\xaf"};
static const char *const lone_surrogates[] = {"\\ud800", "\\udbff", "\\udc00"};

/* Nested containers past max_depth, innermost a log line. */
static uint32_t
payload_deep(struct tl_corpus_gen *g, char *o0, uint32_t room)
{
	uint32_t levels = (uint32_t)g->conf.max_depth + rnd(g, 4);
	bool objects = levels * 10 + 256 < room;
	char *o = o0;
	uint8_t kinds[1024 + 8];

	for (uint32_t i = 0; i < levels; i++) {
		kinds[i] = objects && chance(g, 0.5);
		o = kinds[i] ? puts0(o, "{\"stage\":") : puts0(o, "[");
	}
	*o++ = '"';
	o += fill_lines(g, o, 120, g->c->info, g->c->n_info);
	*o++ = '"';
	for (uint32_t i = levels; i-- > 0;)
		*o++ = kinds[i] ? '}' : ']';
	return (uint32_t)(o - o0);
}

/* An array of log-line strings making the whole event exactly @p want bytes long
 * (the other members take @p rest bytes); each string stays within max_string. */
static uint32_t
payload_fill_array(struct tl_corpus_gen *g, char *o0, uint32_t rest, uint32_t want)
{
	uint32_t need = want > rest + 2 ? want - rest : 2, w = 1;
	uint32_t chunk = g->conf.max_string < 4096 ? (uint32_t)g->conf.max_string : 4096;

	o0[0] = '[';
	while (w + 1 < need) {
		uint32_t room = need - w - 1, max;

		if (w > 1) {
			if (room < 4)
				break;
			o0[w++] = ',';
			room--;
		}
		if (room < 3)
			break;
		max = room - 2 < chunk ? room - 2 : chunk;
		o0[w++] = '"';
		w += fill_lines(g, o0 + w, max, g->c->info, g->c->n_info);
		o0[w++] = '"';
	}
	o0[w++] = ']';
	return w;
}

/* ---- truth ---- */

static char *
truth_str(char *o, const char *key, const char *v, uint32_t n)
{
	*o++ = '"';
	o = puts0(o, key);
	o = put(o, "\":\"", 3);
	o = put(o, v, n);
	*o++ = '"';
	return o;
}

/* A value of an `any` column: a string's contents, or a raw JSON text as a string. */
static char *
truth_any(char *o, const char *key, uint8_t kind, const char *v, uint32_t n)
{
	*o++ = ',';
	*o++ = '"';
	o = puts0(o, key);
	o = put(o, "\":", 2);
	if (kind == V_NULL)
		return puts0(o, "null");
	*o++ = '"';
	if (kind == V_STRING)
		o = put(o, v, n);
	else
		o += json_escape((const uint8_t *)v, n, o);
	*o++ = '"';
	return o;
}

static uint32_t
truth_valid(struct tl_corpus_gen *g, const struct fields *f, bool is_error)
{
	char *o = g->truth;
	bool first = true;

	o = puts0(o, "{\"seq\":");
	o = put_u64(o, g->seq);
	o = puts0(o, ",\"valid\":true,\"reason\":\"ok\",\"is_error\":");
	o = puts0(o, is_error ? "true" : "false");
	o = puts0(o, ",\"cols\":{");
	o = truth_str(o, "query_id", f->qid, f->qid_len);
	*o++ = ',';
	o = truth_str(o, "event_type", f->type, f->type_len);
	o = puts0(o, ",\"event_time\":");
	o = put_i64(o, f->time_ms * 1000000);
	*o++ = ',';
	o = truth_str(o, "query_text", f->qtext, f->qtext_len);
	*o++ = ',';
	o = truth_str(o, "user_id", f->user, (uint32_t)strlen(f->user));
	*o++ = ',';
	o = truth_str(o, "database_name", f->db, (uint32_t)strlen(f->db));
	o = puts0(o, ",\"duration_ms\":");
	o = put_u64(o, f->duration);
	if (f->has_rows) {
		o = puts0(o, ",\"rows_affected\":");
		o = put_u64(o, f->rows);
	}
	if (f->err_kind != V_ABSENT)
		o = truth_any(o, "error", f->err_kind, f->err, f->err_len);
	o = truth_any(o, "payload", f->pay_kind, f->pay, f->pay_len);
	o = puts0(o, "},\"extra\":{");
	if (f->engine) {
		o = puts0(o, "\"engine_version\":");
		o = put(o, f->engine, f->engine_len);
		first = false;
	}
	if (f->cluster) {
		o = puts0(o, first ? "\"metadata.cluster\":" : ",\"metadata.cluster\":");
		o = puts0(o, f->cluster);
		first = false;
	}
	if (f->trace) {
		o = puts0(o, first ? "\"trace\":" : ",\"trace\":");
		o = put(o, f->trace, f->trace_len);
	}
	o = puts0(o, "}}");
	*o = '\0';
	return (uint32_t)(o - g->truth);
}

size_t
tl_corpus_truth_lost(uint64_t seq, enum tl_reason reason, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "{\"seq\":%llu,\"valid\":false,\"reason\":\"%s\"}",
	        (unsigned long long)seq, tl_reason_name(reason));

	return n < 0 ? 0 : (size_t)n;
}

/* ---- one event ---- */

static enum tl_corpus_fault
pick_fault(struct tl_corpus_gen *g)
{
	if (g->n_faults == 0 || !chance(g, g->conf.malformed_share))
		return TL_FAULT_NONE;
	return (enum tl_corpus_fault)g->fault_list[rnd(g, g->n_faults)];
}

int
tl_corpus_next(struct tl_corpus_gen *g, struct tl_corpus_event *ev)
{
	const struct tl_corpus *c = g->c;
	const struct tl_corpus_conf *cf = &g->conf;
	struct qstate *q = query_pick(g);
	struct build b = {.skip_comma = -1};
	struct fields f = {0};
	enum tl_corpus_fault fault;
	uint32_t voff, vlen, step, qid_i = 0, ts_i = 0, type_i = 0, qtext_i = 0;
	uint32_t target, len;
	bool terminal, failing, is_error = false, long_id = false, dup_top = false;
	const char *zone;
	char *o;

	if (q == NULL)
		return -ENODATA;
	g->vals_len = 0;
	step = q->step;
	terminal = step + 1 == q->n_events;
	failing = terminal && q->term == TERM_FAILED;
	fault = pick_fault(g);
	if (fault == TL_FAULT_STRING_LONG && !string_long_by_payload(cf))
		long_id = true;

	/* Event time: strictly increasing within the query, with jitter. */
	if (step == 1)
		q->t += 1 + rnd(g, 40);
	else if (step == 2)
		q->t += 2 + rnd(g, 200);
	else if (step > 2 && !terminal)
		q->t += 100 + rnd(g, 2900);
	else if (step > 2)
		q->t += 50 + rnd(g, 5000);
	f.time_ms = q->t;
	/* Late: an event that arrives long after the ones around it (a producer's buffered
	 * backlog). Drawn only when asked for, so other corpora keep their bytes. */
	if (g->conf.late_share > 0 && fault == TL_FAULT_NONE && chance(g, g->conf.late_share))
		f.time_ms -= (int64_t)g->conf.late_ms;
	f.duration = (uint64_t)(q->t - q->t0);
	b.spaced = chance(g, 0.1);

	/* query_id */
	o = vcur(g);
	*o++ = '"';
	o = put(o, q->id, q->id_len);
	if (long_id) {
		/* One byte past the column's max_len, and a little more. */
		uint32_t want = (uint32_t)cf->id_max_len + 1 + rnd(g, 32);

		*o++ = '-';
		for (uint32_t i = q->id_len + 1; i < want; i += 16)
			o = put_hex(o, tl_corpus_rng_next(&g->rng), 16);
		o = g->vals + g->vals_len + 1 + want;
	}
	*o++ = '"';
	vlen = vend(g, o, &voff);
	f.qid = g->vals + voff + 1;
	f.qid_len = vlen - 2;
	qid_i = b.n;
	add_member(&b, "query_id", voff, vlen);

	/* timestamp */
	zone = zones[q->zone].text;
	o = vcur(g);
	*o++ = '"';
	if (fault == TL_FAULT_TS_FEB29) {
		/* 2023 is no leap year: the date does not exist. */
		char *d = o;

		o = put_local_time(o, f.time_ms, zones[q->zone].min);
		memcpy(d, "2023-02-29", 10);
		o = puts0(o, zone);
	} else {
		o = put_local_time(o, f.time_ms, zones[q->zone].min);
		if (fault != TL_FAULT_TS_NOZONE)
			o = puts0(o, zone);
	}
	*o++ = '"';
	vlen = vend(g, o, &voff);
	ts_i = b.n;
	add_member(&b, "timestamp", voff, vlen);

	/* event_type */
	f.type = type_name(q, step);
	f.type_len = (uint32_t)strlen(f.type);
	o = vcur(g);
	if (fault == TL_FAULT_NULL_TYPE) {
		o = puts0(o, "null");
	} else {
		*o++ = '"';
		o = put(o, f.type, f.type_len);
		*o++ = '"';
	}
	vlen = vend(g, o, &voff);
	type_i = b.n;
	add_member(&b, "event_type", voff, vlen);

	/* query_text */
	{
		const struct text *t = &c->query[q->q][q->qvar];

		o = vcur(g);
		*o++ = '"';
		o = put(o, t->p, t->len);
		*o++ = '"';
		vlen = vend(g, o, &voff);
		f.qtext = g->vals + voff + 1;
		f.qtext_len = t->len;
		qtext_i = b.n;
		add_member(&b, "query_text", voff, vlen);
	}

	/* metadata */
	{
		const struct name *u = &users[q->user], *d = &databases[q->db];
		const char *sep = b.spaced ? ", " : ",", *col = b.spaced ? ": " : ":";

		f.user = u->raw_json;
		f.db = d->raw_json;
		o = vcur(g);
		o = puts0(o, "{\"user_id\"");
		o = puts0(o, col);
		*o++ = '"';
		o = puts0(o, q->user_alt ? u->alt_json : u->raw_json);
		*o++ = '"';
		o = puts0(o, sep);
		o = puts0(o, "\"database\"");
		o = puts0(o, col);
		*o++ = '"';
		o = puts0(o, q->db_alt ? d->alt_json : d->raw_json);
		*o++ = '"';
		o = puts0(o, sep);
		o = puts0(o, "\"duration_ms\"");
		o = puts0(o, col);
		switch (fault) {
		case TL_FAULT_NUMBER_RANGE:
			o = puts0(o,
			        chance(g, 0.5) ? "184467440737095516160" : "99999999999999999999");
			break;
		case TL_FAULT_TYPE_STRING:
			*o++ = '"';
			o = put_u64(o, f.duration);
			*o++ = '"';
			break;
		case TL_FAULT_TYPE_FLOAT:
			o = puts0(o, "12.5");
			break;
		default:
			o = put_u64(o, f.duration);
		}
		/* rows_affected: absent from half the queued events. */
		if (step > 0 || chance(g, 0.5)) {
			f.has_rows = true;
			if (terminal && q->term == TERM_FINISHED)
				f.rows = q->rows;
			else if (step > 2 && !failing)
				f.rows = q->rows * step / q->n_events;
			o = puts0(o, sep);
			o = puts0(o, "\"rows_affected\"");
			o = puts0(o, col);
			o = put_u64(o, f.rows);
		}
		if (failing) {
			char *e;

			o = puts0(o, sep);
			o = puts0(o, "\"error\"");
			o = puts0(o, col);
			e = o;
			o += error_value(g, o, &f.err_kind);
			f.err = f.err_kind == V_STRING ? e + 1 : e;
			f.err_len = (uint32_t)(o - e) - (f.err_kind == V_STRING ? 2 : 0);
		} else {
			uint32_t r = rnd(g, 100);

			f.err_kind = r < 50 ? V_ABSENT : r < 96 ? V_NULL : V_STRING;
			if (f.err_kind != V_ABSENT) {
				o = puts0(o, sep);
				o = puts0(o, "\"error\"");
				o = puts0(o, col);
				o = puts0(o, f.err_kind == V_NULL ? "null" : "\"\"");
				f.err = "";
			}
		}
		if (q->cluster) {
			f.cluster = q->cluster == 1 ? clusters_str[q->cluster_idx]
			                            : clusters_obj[q->cluster_idx];
			o = puts0(o, sep);
			o = puts0(o, "\"cluster\"");
			o = puts0(o, col);
			o = puts0(o, f.cluster);
		}
		if (fault == TL_FAULT_DUP_KEY && chance(g, 0.4)) {
			/* A mapped key twice inside metadata. */
			o = puts0(o, sep);
			o = puts0(o, "\"duration_ms\"");
			o = puts0(o, col);
			o = put_u64(o, f.duration + 1);
		} else if (fault == TL_FAULT_DUP_KEY) {
			dup_top = true;
		}
		*o++ = '}';
		vlen = vend(g, o, &voff);
		b.meta_idx = b.n;
		add_member(&b, "metadata", voff, vlen);
	}
	is_error = failing && fault == TL_FAULT_NONE;

	/* Unknown fields for the extra column. */
	if (q->engine) {
		char ev_ver[32];

		o = vcur(g);
		snprintf(ev_ver, sizeof(ev_ver), "\"%s\"", engine_versions[q->engine - 1]);
		o = puts0(o, ev_ver);
		vlen = vend(g, o, &voff);
		f.engine = g->vals + voff;
		f.engine_len = vlen;
		add_member(&b, "engine_version", voff, vlen);
	}
	if (chance(g, 0.05)) {
		o = vcur(g);
		o = puts0(o, "{\"trace_id\":\"");
		o = put_hex(o, tl_corpus_rng_next(&g->rng), 16);
		o = put_hex(o, tl_corpus_rng_next(&g->rng), 16);
		o = puts0(o, "\",\"span_id\":\"");
		o = put_hex(o, tl_corpus_rng_next(&g->rng), 16);
		o = puts0(o, "\",\"sampled\":true}");
		vlen = vend(g, o, &voff);
		f.trace = g->vals + voff;
		f.trace_len = vlen;
		add_member(&b, "trace", voff, vlen);
	}
	if (dup_top) {
		/* json_duplicate_key at top level: query_id again, at the end. */
		o = vcur(g);
		*o++ = '"';
		o = put(o, q->id, q->id_len);
		*o++ = '"';
		vlen = vend(g, o, &voff);
		add_member(&b, "query_id", voff, vlen);
	}

	/* Some producers write the members in another order. */
	{
		uint32_t r = rnd(g, 100);

		if (r < 10) {
			/* timestamp, event_type, query_id first */
			struct member t = b.m[qid_i];

			b.m[0] = b.m[ts_i];
			b.m[1] = b.m[type_i];
			b.m[2] = t;
			qid_i = 2;
			ts_i = 0;
			type_i = 1;
		} else if (r < 15) {
			/* metadata before query_text */
			struct member t = b.m[qtext_i];

			b.m[qtext_i] = b.m[b.meta_idx];
			b.m[b.meta_idx] = t;
			qtext_i = b.meta_idx;
			b.meta_idx = 3;
		}
	}

	/* payload: sized so the event lands on a uniform target size. */
	b.payload_idx = b.n;
	add_member(&b, "payload", 0, 0);
	target = cf->min_size + rnd(g, cf->max_size - cf->min_size + 1);
	{
		uint32_t rest = (uint32_t)serialized_len(&b, true) + 7 + 3 + (b.spaced ? 1 : 0);
		uint32_t budget = target > rest + 16 ? target - rest : 16;
		char *p = vcur(g);

		switch (fault) {
		case TL_FAULT_DEPTH:
			vlen = payload_deep(g, p, (uint32_t)cf->max_event_size - rest);
			f.pay_kind = V_RAW;
			break;
		case TL_FAULT_STRING_LONG:
			if (!long_id) {
				/* One string just past max_string, bytes as written. */
				uint32_t want = (uint32_t)cf->max_string + 1 + rnd(g, 64);

				p[0] = '"';
				vlen = fill_lines(g, p + 1, want + 6, c->info, c->n_info);
				p[1 + vlen] = '"';
				vlen += 2;
				f.pay_kind = V_STRING;
				break;
			}
			vlen = payload_string(g, p, budget, failing);
			f.pay_kind = V_STRING;
			break;
		case TL_FAULT_TOO_LARGE: {
			/* Past the limit by at least 32 bytes (the fill may stop a few bytes short
			 * of its target), within one UDP datagram. */
			uint32_t room = UDP_MAX - (uint32_t)cf->max_event_size - 32;
			uint32_t want = (uint32_t)cf->max_event_size + 32 +
			                rnd(g, room < 2048 ? room : 2048);

			vlen = payload_fill_array(g, p, rest, want);
			f.pay_kind = V_RAW;
			break;
		}
		default:
			vlen = 0;
			if (chance(g, 0.3)) {
				uint32_t slack = target - cf->min_size;

				/* Whole records rarely fill the budget: accept half of it, as
				 * long as the event stays at least min_size. */
				vlen = payload_object(g, p, budget,
				        budget - (slack < budget / 2 ? slack : budget / 2));
				f.pay_kind = V_RAW;
			}
			if (vlen == 0) {
				vlen = payload_string(g, p, budget, failing);
				f.pay_kind = V_STRING;
			}
		}
		f.pay = f.pay_kind == V_STRING ? p + 1 : p;
		f.pay_len = f.pay_kind == V_STRING ? vlen - 2 : vlen;
		b.m[b.payload_idx].voff = (uint32_t)g->vals_len;
		b.m[b.payload_idx].vlen = vlen;
		g->vals_len += vlen;
	}

	/* Faults that change the text around valid values. */
	switch (fault) {
	case TL_FAULT_MISSING_ID:
		memmove(&b.m[qid_i], &b.m[qid_i + 1], (b.n - qid_i - 1) * sizeof(b.m[0]));
		b.n--;
		break;
	case TL_FAULT_SYNTAX_COMMA:
		b.skip_comma = (int)(1 + rnd(g, b.n - 1));
		break;
	case TL_FAULT_SYNTAX_TRAILING:
		b.trailing = true;
		break;
	case TL_FAULT_UTF8_BYTE: {
		const char *s = utf8_bad_bytes[rnd(g, 5)];

		corrupt_query_text(g, &b, qtext_i, s, (uint32_t)strlen(s));
		break;
	}
	case TL_FAULT_UTF8_OVERLONG: {
		const char *s = utf8_overlongs[rnd(g, 4)];

		corrupt_query_text(g, &b, qtext_i, s, (uint32_t)strlen(s));
		break;
	}
	case TL_FAULT_UTF8_SURROGATE:
		corrupt_query_text(g, &b, qtext_i, lone_surrogates[rnd(g, 3)], 6);
		break;
	default:
		break;
	}

	o = g->ev;
	if (fault == TL_FAULT_NOT_OBJECT)
		*o++ = '[';
	len = serialize(g, &b, o) + (uint32_t)(o - g->ev);
	if (fault == TL_FAULT_NOT_OBJECT)
		g->ev[len++] = ']';
	if (fault == TL_FAULT_SYNTAX_CUT) {
		/* Cut in the middle third, after plain ASCII, so the only problem the parser
		 * meets is the end of input (not a broken escape or UTF-8 sequence). */
		uint32_t at = len / 3 + rnd(g, len / 3), i;

		for (i = at; i > 8; i--) {
			uint32_t k;

			for (k = 1; k <= 7; k++) {
				uint8_t ch = (uint8_t)g->ev[i - k];

				if (ch == '\\' || ch >= 0x80)
					break;
			}
			if (k > 7)
				break;
		}
		len = i;
	}

	q->step++;
	if (q->step == q->n_events) {
		q->live = false;
		g->done++;
	}

	ev->data = (const uint8_t *)g->ev;
	ev->len = len;
	ev->seq = g->seq;
	ev->query = q->index;
	ev->fault = fault;
	ev->reason = tl_corpus_fault_reason(fault);
	ev->is_error = is_error;
	ev->truth = NULL;
	ev->truth_len = 0;
	if (cf->truth) {
		if (fault == TL_FAULT_NONE)
			ev->truth_len = truth_valid(g, &f, is_error);
		else
			ev->truth_len = (uint32_t)tl_corpus_truth_lost(
			        g->seq, ev->reason, g->truth, g->truth_cap);
		ev->truth = g->truth;
	}
	g->seq++;
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------------------- */

int
tl_corpus_batch_build(const struct tl_corpus *c, const struct tl_corpus_conf *conf, uint32_t n,
        struct tl_corpus_batch *out)
{
	struct tl_corpus_conf cf;
	struct tl_corpus_gen *g = NULL;
	struct tl_corpus_event ev;
	size_t cap = 0;
	int rc;

	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (c == NULL || conf == NULL || n == 0)
		return -EINVAL;
	cf = *conf;
	cf.malformed_share = 0;
	cf.truth = false;
	cf.max_queries = 0;
	rc = tl_corpus_gen_create(c, &cf, &g);
	if (rc)
		return rc;
	cap = (size_t)n * (cf.max_size + 1);
	out->buf = malloc(cap);
	out->off = malloc(((size_t)n + 1) * sizeof(uint64_t));
	if (out->buf == NULL || out->off == NULL) {
		rc = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < n; i++) {
		rc = tl_corpus_next(g, &ev);
		if (rc)
			goto err;
		if (out->len + ev.len + 1 > cap) {
			size_t ncap = cap * 2;
			uint8_t *nb = realloc(out->buf, ncap);

			if (nb == NULL) {
				rc = -ENOMEM;
				goto err;
			}
			out->buf = nb;
			cap = ncap;
		}
		out->off[i] = out->len;
		memcpy(out->buf + out->len, ev.data, ev.len);
		out->len += ev.len;
		out->buf[out->len++] = '\n';
	}
	out->off[n] = out->len;
	out->n = n;
	tl_corpus_gen_free(g);
	return 0;
err:
	tl_corpus_gen_free(g);
	tl_corpus_batch_free(out);
	return rc;
}

void
tl_corpus_batch_free(struct tl_corpus_batch *b)
{
	if (b == NULL)
		return;
	free(b->buf);
	free(b->off);
	memset(b, 0, sizeof(*b));
}
