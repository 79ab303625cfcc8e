/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Option tables, the YAML profile loader, inheritance and config show.
 *
 * Fixtures live in tests/config/data; their folder is taken from argv[1], else the
 * TL_TEST_CONFIG_DATA environment variable, else "tests/config/data" relative to the
 * current directory. Files that must be generated (deep chains, bytes that are not
 * UTF-8, round-trip output) go to a fresh temporary folder.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_error.h"
#include "tl_opt.h"
#include "tl_yaml.h"

/* ---- the test configuration: every option type, nested sections, a list ---------- */

enum { MODE_FAST, MODE_SAFE, MODE_PARANOID };
static const char *const mode_names[] = {"fast", "safe", "paranoid", NULL};

struct t_reasm {
	uint64_t max_flows;
	uint64_t max_frags;
	uint64_t timeout_ns;
};

struct t_pipeline {
	uint64_t workers;
	struct t_reasm reasm;
};

struct t_listener {
	char name[16];
	uint64_t port;
	bool tls;
	char tags[3][8];
	uint32_t n_tags;
};

struct t_uplink {
	char host[64];
	char password[32];
	uint64_t batch;
	int64_t offset;
};

struct t_conf {
	char name[32];
	bool enabled;
	int mode;
	uint64_t spool_size;
	struct t_pipeline pipeline;
	struct t_listener listeners[3];
	uint32_t n_listeners;
	char interfaces[4][16];
	uint32_t n_interfaces;
	struct t_uplink uplink;
};

static int
reasm_check(const void *obj, char *msg, size_t len)
{
	const struct t_reasm *r = obj;

	if (r->max_frags > r->max_flows) {
		snprintf(msg, len,
		        "max_frags (%" PRIu64 ") must not exceed max_flows (%" PRIu64 ")",
		        r->max_frags, r->max_flows);
		return -1;
	}
	return 0;
}

static int
listener_check(const void *obj, char *msg, size_t len)
{
	const struct t_listener *l = obj;

	if (l->tls && l->port == 80) {
		snprintf(msg, len, "tls on port 80 is not supported");
		return -1;
	}
	return 0;
}

static const struct tl_opt reasm_opts[] = {
        {.name = "max_flows",
                .type = TL_OPT_UINT,
                .def = "1024",
                .offset = offsetof(struct t_reasm, max_flows),
                .min = 1,
                .max = 1048576,
                .desc = "flows tracked at once"},
        {.name = "max_frags",
                .type = TL_OPT_UINT,
                .def = "4",
                .offset = offsetof(struct t_reasm, max_frags),
                .min = 1,
                .max = 64,
                .desc = "fragments per datagram"},
        {.name = "timeout",
                .type = TL_OPT_DURATION,
                .def = "2s",
                .offset = offsetof(struct t_reasm, timeout_ns),
                .min = 1000000,
                .max = 60000000000ull,
                .desc = "give up on a datagram after"},
        {.name = NULL},
};

static const struct tl_opt pipeline_opts[] = {
        {.name = "workers",
                .type = TL_OPT_UINT,
                .def = "2",
                .offset = offsetof(struct t_pipeline, workers),
                .min = 1,
                .max = 64,
                .desc = "worker threads"},
        {.name = "reassembly",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct t_pipeline, reasm),
                .sub = reasm_opts,
                .check = reasm_check,
                .desc = "fragment reassembly"},
        {.name = NULL},
};

static const struct tl_opt listener_opts[] = {
        {.name = "name",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct t_listener, name),
                .size = sizeof(((struct t_listener *)0)->name),
                .flags = TL_OPT_F_REQUIRED,
                .desc = "listener name"},
        {.name = "port",
                .type = TL_OPT_UINT,
                .def = "5170",
                .offset = offsetof(struct t_listener, port),
                .min = 1,
                .max = 65535,
                .desc = "UDP port"},
        {.name = "tls",
                .type = TL_OPT_BOOL,
                .def = "false",
                .offset = offsetof(struct t_listener, tls),
                .desc = "DTLS"},
        {.name = "tags",
                .type = TL_OPT_STRLIST,
                .def = "[default]",
                .offset = offsetof(struct t_listener, tags),
                .size = sizeof(((struct t_listener *)0)->tags[0]),
                .count_offset = offsetof(struct t_listener, n_tags),
                .max_items = 3,
                .desc = "tags"},
        {.name = NULL},
};

static const struct tl_opt uplink_opts[] = {
        {.name = "host",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct t_uplink, host),
                .size = sizeof(((struct t_uplink *)0)->host),
                .flags = TL_OPT_F_REQUIRED,
                .desc = "ClickHouse host"},
        {.name = "password",
                .type = TL_OPT_STRING,
                .offset = offsetof(struct t_uplink, password),
                .size = sizeof(((struct t_uplink *)0)->password),
                .flags = TL_OPT_F_SECRET,
                .desc = "ClickHouse password"},
        {.name = "batch",
                .type = TL_OPT_SIZE,
                .def = "1MiB",
                .offset = offsetof(struct t_uplink, batch),
                .min = 4096,
                .max = 1ull << 30,
                .desc = "insert batch size"},
        {.name = "offset",
                .type = TL_OPT_INT,
                .def = "-5",
                .offset = offsetof(struct t_uplink, offset),
                .min = (uint64_t)-100,
                .max = 100,
                .desc = "clock offset"},
        {.name = NULL},
};

static const struct tl_opt root_opts[] = {
        {.name = "name",
                .type = TL_OPT_STRING,
                .def = "tapline",
                .offset = offsetof(struct t_conf, name),
                .size = sizeof(((struct t_conf *)0)->name),
                .desc = "instance name"},
        {.name = "enabled",
                .type = TL_OPT_BOOL,
                .def = "true",
                .offset = offsetof(struct t_conf, enabled),
                .desc = "enabled"},
        {.name = "mode",
                .type = TL_OPT_ENUM,
                .def = "safe",
                .offset = offsetof(struct t_conf, mode),
                .enums = mode_names,
                .desc = "mode"},
        {.name = "spool_size",
                .type = TL_OPT_SIZE,
                .def = "64MiB",
                .offset = offsetof(struct t_conf, spool_size),
                .desc = "spool size"},
        {.name = "pipeline",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct t_conf, pipeline),
                .sub = pipeline_opts,
                .desc = "pipeline"},
        {.name = "listeners",
                .type = TL_OPT_LIST,
                .offset = offsetof(struct t_conf, listeners),
                .size = sizeof(struct t_listener),
                .sub = listener_opts,
                .count_offset = offsetof(struct t_conf, n_listeners),
                .max_items = 3,
                .check = listener_check,
                .desc = "listeners"},
        {.name = "interfaces",
                .type = TL_OPT_STRLIST,
                .def = "[eth0]",
                .offset = offsetof(struct t_conf, interfaces),
                .size = sizeof(((struct t_conf *)0)->interfaces[0]),
                .count_offset = offsetof(struct t_conf, n_interfaces),
                .max_items = 4,
                .desc = "interfaces"},
        {.name = "uplink",
                .type = TL_OPT_SECTION,
                .offset = offsetof(struct t_conf, uplink),
                .sub = uplink_opts,
                .desc = "uplink"},
        {.name = NULL},
};

/* ---- helpers ---------------------------------------------------------------------- */

static char data_dir[1024] = "tests/config/data";
static char tmp_dir[1024];

static const char *
fixture(const char *name)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ & 3];

	snprintf(p, PATH_MAX, "%s/%s", data_dir, name);
	return p;
}

static const char *
tmp_path(const char *name)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ & 3];

	snprintf(p, PATH_MAX, "%s/%s", tmp_dir, name);
	return p;
}

static void
write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

struct result {
	int rc;
	unsigned n;
	char *out;
};

/* Load @path into @c (zeroed first so whole structs can be compared). */
static struct result
load(const char *path, struct t_conf *c, const char *const *dirs)
{
	struct result r = {0};
	size_t len;
	FILE *f = open_memstream(&r.out, &len);

	assert_non_null(f);
	memset(c, 0, sizeof(*c));
	r.rc = tl_config_load(path, root_opts, c, dirs, f, &r.n);
	assert_int_equal(fclose(f), 0);
	return r;
}

/* Expected output with "@/" standing for the fixture folder. */
static char *__attribute__((format(printf, 1, 2))) expand(const char *fmt, ...)
{
	char raw[8192], *out;
	const char *s;
	size_t o = 0, dl = strlen(data_dir);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	out = malloc(strlen(raw) * (dl + 1) + 1);
	assert_non_null(out);
	for (s = raw; *s != '\0'; s++) {
		if (s[0] == '@' && s[1] == '/') {
			memcpy(out + o, data_dir, dl);
			o += dl;
			out[o++] = '/';
			s++;
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
	return out;
}

static void
expect_errors(const char *file, const char *const *dirs, unsigned n, const char *want_fmt)
{
	struct t_conf c;
	struct result r = load(fixture(file), &c, dirs);
	char *want = expand("%s", want_fmt);

	if (strcmp(r.out, want) != 0)
		print_message("--- got:\n%s--- want:\n%s", r.out, want);
	assert_string_equal(r.out, want);
	assert_int_equal(r.rc, TL_E_CONFIG);
	assert_int_equal(r.n, n);
	free(want);
	free(r.out);
}

/* Write @p len bytes of @p text to the temporary file @p name and load it: the output
 * must be exactly the file's path followed by @p msg, the result TL_E_CONFIG.
 * @return the number of problems the loader counted. */
static unsigned
expect_tmp_error(const char *name, const char *text, size_t len, const char *msg)
{
	struct t_conf c;
	struct result r;
	char want[PATH_MAX + 256];

	write_file(tmp_path(name), text, len);
	r = load(tmp_path(name), &c, NULL);
	snprintf(want, sizeof(want), "%s%s", tmp_path(name), msg);
	assert_string_equal(r.out, want);
	assert_int_equal(r.rc, TL_E_CONFIG);
	free(r.out);
	return r.n;
}

static const char *const *
profile_dirs(void)
{
	static char dir[PATH_MAX];
	static const char *dirs[2];

	snprintf(dir, sizeof(dir), "%s/profiles", data_dir);
	dirs[0] = dir;
	dirs[1] = NULL;
	return dirs;
}

/* ---- value parsers ---------------------------------------------------------------- */

struct u64_case {
	const char *text;
	int rc;
	uint64_t v;
};

/* Feed every case of @p cases to @p parse: the return code must match, and the value is
 * written on success only. @p what names the parser in failure messages. */
static void
check_u64_cases(const struct u64_case *cases, size_t n, int (*parse)(const char *, uint64_t *),
        const char *what)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 12345;
		int rc = parse(cases[i].text, &v);

		if (rc != cases[i].rc || (rc == 0 && v != cases[i].v))
			print_message("%s '%s': rc %d v %" PRIu64 "\n", what, cases[i].text, rc, v);
		assert_int_equal(rc, cases[i].rc);
		assert_int_equal(v, rc == 0 ? cases[i].v : 12345);
	}
}

static void
test_parse_size_table_matches(void **state)
{
	static const struct u64_case cases[] = {
	        {"0", 0, 0},
	        {"1500", 0, 1500},
	        {"007", 0, 7},
	        {"1B", 0, 1},
	        {"1b", 0, 1},
	        {"4k", 0, 4096},
	        {"4K", 0, 4096},
	        {"4KiB", 0, 4096},
	        {"4kib", 0, 4096},
	        {"4KB", 0, 4000},
	        {"4kB", 0, 4000},
	        {"64M", 0, 64ull << 20},
	        {"64MiB", 0, 64ull << 20},
	        {"64MB", 0, 64000000},
	        {"1 MiB", 0, 1ull << 20},
	        {"1G", 0, 1ull << 30},
	        {"1GiB", 0, 1ull << 30},
	        {"1GB", 0, 1000000000},
	        {"2T", 0, 2ull << 40},
	        {"1TB", 0, 1000000000000ull},
	        {"1PiB", 0, 1ull << 50},
	        {"1PB", 0, 1000000000000000ull},
	        {"15EiB", 0, 15ull << 60},
	        {"18EB", 0, 18000000000000000000ull},
	        {"18446744073709551615", 0, UINT64_MAX},
	        {"16777215TiB", 0, 16777215ull << 40},
	        /* grammar */
	        {"", -EINVAL, 0},
	        {"-1", -EINVAL, 0},
	        {"+1", -EINVAL, 0},
	        {" 1", -EINVAL, 0},
	        {"1 ", -EINVAL, 0},
	        {"1  MiB", -EINVAL, 0},
	        {"1.5G", -EINVAL, 0},
	        {"1X", -EINVAL, 0},
	        {"1KiBB", -EINVAL, 0},
	        {"1Ki", -EINVAL, 0},
	        {"1ib", -EINVAL, 0},
	        {"KiB", -EINVAL, 0},
	        {"0x10", -EINVAL, 0},
	        {"abc", -EINVAL, 0},
	        {"1MiB ", -EINVAL, 0},
	        {"99999999999999999999999X", -EINVAL, 0},
	        /* overflow */
	        {"18446744073709551616", -ERANGE, 0},
	        {"16EiB", -ERANGE, 0},
	        {"19EB", -ERANGE, 0},
	        {"16777216TiB", -ERANGE, 0},
	        {"99999999999999999999999KiB", -ERANGE, 0},
	};

	(void)state;
	check_u64_cases(cases, sizeof(cases) / sizeof(cases[0]), tl_parse_size, "size");
	assert_int_equal(tl_parse_size(NULL, &(uint64_t){0}), -EINVAL);
}

static void
test_parse_duration_table_matches(void **state)
{
	static const struct u64_case cases[] = {
	        {"0", 0, 0},
	        {"0s", 0, 0},
	        {"250ns", 0, 250},
	        {"10us", 0, 10000},
	        {"10\xc2\xb5s", 0, 10000},
	        {"500ms", 0, 500000000},
	        {"2s", 0, 2000000000},
	        {"2 s", 0, 2000000000},
	        {"1m", 0, 60000000000ull},
	        {"1h", 0, 3600000000000ull},
	        {"1d", 0, 86400000000000ull},
	        {"1.5s", 0, 1500000000},
	        {"2.50s", 0, 2500000000},
	        {"0.5ms", 0, 500000},
	        {"1.000000001s", 0, 1000000001},
	        {"1.5m", 0, 90000000000ull},
	        {"0.000001d", 0, 86400000},
	        {"1.50000000000000000000000000s", 0, 1500000000},
	        {"18446744073709551615ns", 0, UINT64_MAX},
	        {"213503d", 0, 213503ull * 86400000000000ull},
	        /* grammar and exactness */
	        {"", -EINVAL, 0},
	        {"5", -EINVAL, 0},
	        {"0.0", -EINVAL, 0},
	        {"1.5ns", -EINVAL, 0},
	        {"0.1ns", -EINVAL, 0},
	        {"1.0000000001s", -EINVAL, 0},
	        {"1.s", -EINVAL, 0},
	        {".5s", -EINVAL, 0},
	        {"-1s", -EINVAL, 0},
	        {"+1s", -EINVAL, 0},
	        {"1x", -EINVAL, 0},
	        {"1S", -EINVAL, 0},
	        {"1ss", -EINVAL, 0},
	        {"s", -EINVAL, 0},
	        {"1 ", -EINVAL, 0},
	        {"1s ", -EINVAL, 0},
	        {"1  s", -EINVAL, 0},
	        {"0x10s", -EINVAL, 0},
	        {"fast", -EINVAL, 0},
	        {"1.00000000000000000001s", -EINVAL, 0},
	        /* overflow */
	        {"18446744073709551616ns", -ERANGE, 0},
	        {"213504d", -ERANGE, 0},
	        {"213503.999999d", -ERANGE, 0},
	        {"99999999999999999999999.5h", -ERANGE, 0},
	};

	(void)state;
	check_u64_cases(cases, sizeof(cases) / sizeof(cases[0]), tl_parse_duration, "duration");
	assert_int_equal(tl_parse_duration(NULL, &(uint64_t){0}), -EINVAL);
}

static void
test_parse_bool_table_matches(void **state)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON"};
	static const char *const no[] = {"false", "False", "no", "NO", "off", "Off"};
	static const char *const bad[] = {
	        "", "1", "0", "y", "n", "maybe", "true ", " no", "tru", "yess"};
	size_t i;
	bool v;

	(void)state;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		v = false;
		assert_int_equal(tl_parse_bool(yes[i], &v), 0);
		assert_true(v);
	}
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		v = true;
		assert_int_equal(tl_parse_bool(no[i], &v), 0);
		assert_false(v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = true;
		assert_int_equal(tl_parse_bool(bad[i], &v), -EINVAL);
		assert_true(v);
	}
	assert_int_equal(tl_parse_bool(NULL, &v), -EINVAL);
}

/* UINT and INT have no public parser: drive them through a profile. */
static void
test_load_uint_int_values_table_matches(void **state)
{
	static const struct {
		const char *workers, *offset;
		uint64_t want_workers;
		int64_t want_offset;
		const char *msg;
	} cases[] = {
	        {"4", "0", 4, 0, NULL},
	        {"0x3f", "-100", 63, -100, NULL},
	        {"0X10", "100", 16, 100, NULL},
	        {"064", "-0", 64, 0, NULL},
	        {"+4", "0", 0, 0, "'+4' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"-1", "0", 0, 0, "'-1' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"4x", "0", 0, 0, "'4x' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"0x", "0", 0, 0, "'0x' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"0x1g", "0", 0, 0, "'0x1g' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"1.0", "0", 0, 0, "'1.0' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"\"\"", "0", 0, 0, "'' is not a whole number (use e.g. 42 or 0x2a)"},
	        {"0x10000000000000000", "0", 0, 0,
	                "'0x10000000000000000' is too large for a 64-bit number"},
	        {"65", "0", 0, 0, "'65' is out of range for pipeline.workers (allowed: 1 to 64)"},
	        {"4", "--1", 0, 0, "'--1' is not an integer (use e.g. -5 or 42)"},
	        {"4", "-x", 0, 0, "'-x' is not an integer (use e.g. -5 or 42)"},
	        {"4", "9223372036854775808", 0, 0,
	                "'9223372036854775808' does not fit in a 64-bit integer"},
	        {"4", "-101", 0, 0,
	                "'-101' is out of range for uplink.offset (allowed: -100 to 100)"},
	};
	const char *path = tmp_path("ints.yaml");
	char text[256], want[512];
	struct t_conf c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct result r;
		int n = snprintf(text, sizeof(text),
		        "pipeline:\n  workers: %s\nuplink:\n  host: h\n  offset: %s\n",
		        cases[i].workers, cases[i].offset);

		write_file(path, text, (size_t)n);
		r = load(path, &c, NULL);
		if (cases[i].msg == NULL) {
			assert_string_equal(r.out, "");
			assert_int_equal(r.rc, 0);
			assert_int_equal(c.pipeline.workers, cases[i].want_workers);
			assert_int_equal(c.uplink.offset, cases[i].want_offset);
		} else {
			bool on_offset = strcmp(cases[i].workers, "4") == 0;

			snprintf(want, sizeof(want), "%s:%d:%d: %s\n", path, on_offset ? 5 : 2,
			        on_offset ? 11 : 12, cases[i].msg);
			assert_string_equal(r.out, want);
			assert_int_equal(r.rc, TL_E_CONFIG);
			assert_int_equal(r.n, 1);
		}
		free(r.out);
	}
}

/* ---- defaults --------------------------------------------------------------------- */

static void
assert_defaults(const struct t_conf *c)
{
	assert_string_equal(c->name, "tapline");
	assert_true(c->enabled);
	assert_int_equal(c->mode, MODE_SAFE);
	assert_int_equal(c->spool_size, 64ull << 20);
	assert_int_equal(c->pipeline.workers, 2);
	assert_int_equal(c->pipeline.reasm.max_flows, 1024);
	assert_int_equal(c->pipeline.reasm.max_frags, 4);
	assert_int_equal(c->pipeline.reasm.timeout_ns, 2000000000ull);
	assert_int_equal(c->n_listeners, 0);
	assert_int_equal(c->n_interfaces, 1);
	assert_string_equal(c->interfaces[0], "eth0");
	assert_string_equal(c->uplink.host, "");
	assert_string_equal(c->uplink.password, "");
	assert_int_equal(c->uplink.batch, 1ull << 20);
	assert_int_equal(c->uplink.offset, -5);
}

static void
test_defaults_root_table_all_applied(void **state)
{
	struct t_conf c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(tl_opt_defaults(root_opts, &c), 0);
	assert_defaults(&c);
	/* Everything past the defaults is zeroed, not left as garbage. */
	assert_int_equal(c.interfaces[1][0], 0);
	assert_int_equal(c.listeners[2].port, 0);
}

struct t_small {
	uint64_t d;
	char list[2][8];
	uint32_t n;
};

static void
test_defaults_bad_table_default_fails(void **state)
{
	static const struct tl_opt bad_scalar[] = {
	        {.name = "d",
	                .type = TL_OPT_DURATION,
	                .def = "fast",
	                .offset = offsetof(struct t_small, d)},
	        {.name = NULL},
	};
	static const struct tl_opt bad_list[] = {
	        {.name = "list",
	                .type = TL_OPT_STRLIST,
	                .def = "[a, b, c]",
	                .offset = offsetof(struct t_small, list),
	                .size = 8,
	                .count_offset = offsetof(struct t_small, n),
	                .max_items = 2},
	        {.name = NULL},
	};
	static const struct tl_opt bad_yaml[] = {
	        {.name = "list",
	                .type = TL_OPT_STRLIST,
	                .def = "[a, b",
	                .offset = offsetof(struct t_small, list),
	                .size = 8,
	                .count_offset = offsetof(struct t_small, n),
	                .max_items = 2},
	        {.name = NULL},
	};
	static const struct tl_opt good[] = {
	        {.name = "d",
	                .type = TL_OPT_DURATION,
	                .def = "1.25s",
	                .offset = offsetof(struct t_small, d)},
	        {.name = "list",
	                .type = TL_OPT_STRLIST,
	                .def = "[\"a b\", c]",
	                .offset = offsetof(struct t_small, list),
	                .size = 8,
	                .count_offset = offsetof(struct t_small, n),
	                .max_items = 2},
	        {.name = NULL},
	};
	struct t_small s;

	(void)state;
	assert_int_equal(tl_opt_defaults(bad_scalar, &s), TL_E_BAD_VALUE);
	assert_int_equal(tl_opt_defaults(bad_list, &s), TL_E_BAD_VALUE);
	assert_int_equal(tl_opt_defaults(bad_yaml, &s), TL_E_BAD_VALUE);
	assert_int_equal(tl_opt_defaults(good, &s), 0);
	assert_int_equal(s.d, 1250000000ull);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.list[0], "a b");
	assert_string_equal(s.list[1], "c");
}

/* ---- loading ---------------------------------------------------------------------- */

static void
assert_valid(const struct t_conf *c)
{
	assert_string_equal(c->name, "edge-1");
	assert_false(c->enabled);
	assert_int_equal(c->mode, MODE_PARANOID);
	assert_int_equal(c->spool_size, 2ull << 30);
	assert_int_equal(c->pipeline.workers, 4);
	assert_int_equal(c->pipeline.reasm.max_flows, 4096);
	assert_int_equal(c->pipeline.reasm.max_frags, 8);
	assert_int_equal(c->pipeline.reasm.timeout_ns, 1500000000ull);
	assert_int_equal(c->n_listeners, 2);
	assert_string_equal(c->listeners[0].name, "telemetry");
	assert_int_equal(c->listeners[0].port, 5170);
	assert_false(c->listeners[0].tls);
	assert_int_equal(c->listeners[0].n_tags, 2);
	assert_string_equal(c->listeners[0].tags[0], "a");
	assert_string_equal(c->listeners[0].tags[1], "b");
	assert_string_equal(c->listeners[1].name, "secure");
	assert_int_equal(c->listeners[1].port, 6514);
	assert_true(c->listeners[1].tls);
	/* An element starts from the element defaults. */
	assert_int_equal(c->listeners[1].n_tags, 1);
	assert_string_equal(c->listeners[1].tags[0], "default");
	assert_int_equal(c->n_interfaces, 2);
	assert_string_equal(c->interfaces[0], "eth1");
	assert_string_equal(c->interfaces[1], "eth 2");
	assert_string_equal(c->uplink.host, "ch.example.net");
	assert_string_equal(c->uplink.password, "hunter2");
	assert_int_equal(c->uplink.batch, 512ull << 10);
	assert_int_equal(c->uplink.offset, -42);
}

static void
test_load_valid_every_type_set(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("valid.yaml"), &c, NULL);

	(void)state;
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.n, 0);
	assert_valid(&c);
	free(r.out);
}

static void
test_load_chain_three_deep_merged(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("override.yaml"), &c, profile_dirs());

	(void)state;
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	/* override.yaml */
	assert_string_equal(c.name, "override");
	assert_int_equal(c.pipeline.workers, 16);
	/* site.yaml over vendor.yaml, key by key inside nested sections */
	assert_int_equal(c.pipeline.reasm.timeout_ns, 500000000ull);
	assert_int_equal(c.pipeline.reasm.max_flows, 2048);
	assert_string_equal(c.uplink.host, "site.example");
	assert_int_equal(c.n_interfaces, 1);
	assert_string_equal(c.interfaces[0], "eth3");
	/* vendor.yaml (search dir) */
	assert_int_equal(c.mode, MODE_FAST);
	assert_string_equal(c.uplink.password, "vendor-secret");
	assert_int_equal(c.uplink.batch, 2ull << 20);
	assert_int_equal(c.n_listeners, 1);
	assert_string_equal(c.listeners[0].name, "vendor-udp");
	/* no file: defaults */
	assert_int_equal(c.pipeline.reasm.max_frags, 4);
	assert_true(c.enabled);
	assert_int_equal(c.uplink.offset, -5);
	free(r.out);
}

static void
test_load_sequence_replaced_not_appended(void **state)
{
	char *abs = realpath(data_dir, NULL), text[PATH_MAX + 128];
	struct t_conf c;
	struct result r;
	int n;

	(void)state;
	assert_non_null(abs);
	n = snprintf(text, sizeof(text),
	        "extends: %s/valid.yaml\nlisteners:\n  - name: only\ninterfaces: []\n", abs);
	free(abs);
	write_file(tmp_path("replace.yaml"), text, (size_t)n);
	r = load(tmp_path("replace.yaml"), &c, NULL);
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_int_equal(c.n_listeners, 1);
	assert_string_equal(c.listeners[0].name, "only");
	assert_int_equal(c.listeners[0].port, 5170);
	assert_int_equal(c.n_interfaces, 0);
	assert_string_equal(c.uplink.host, "ch.example.net");
	free(r.out);
}

static void
test_load_chain_no_search_dir_not_found(void **state)
{
	(void)state;
	expect_errors("site.yaml", NULL, 1,
	        "@/site.yaml:2:10: extends: profile 'vendor' not found (looked in @/)\n");
}

static void
test_load_relative_dotdot_parent_resolved(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("sub/child.yaml"), &c, profile_dirs());

	(void)state;
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_string_equal(c.name, "child");
	assert_string_equal(c.uplink.host, "ch.example.net");
	free(r.out);
}

static void
test_load_relative_wins_over_search_dir(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("local/uses_local.yaml"), &c, profile_dirs());

	(void)state;
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_string_equal(c.name, "local-vendor");
	assert_string_equal(c.uplink.host, "local.example");
	free(r.out);
}

static void
test_load_absolute_extends_resolved(void **state)
{
	char *abs = realpath(data_dir, NULL), text[2 * PATH_MAX + 128];
	struct t_conf c;
	struct result r;
	int n;

	(void)state;
	assert_non_null(abs);
	n = snprintf(text, sizeof(text), "extends: %s/valid\nname: abs\n", abs);
	write_file(tmp_path("abs.yaml"), text, (size_t)n);
	r = load(tmp_path("abs.yaml"), &c, NULL);
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_string_equal(c.name, "abs");
	assert_int_equal(c.pipeline.reasm.max_flows, 4096);
	free(r.out);

	n = snprintf(text, sizeof(text), "extends: %s/nope\n", abs);
	write_file(tmp_path("abs.yaml"), text, (size_t)n);
	r = load(tmp_path("abs.yaml"), &c, profile_dirs());
	snprintf(text, sizeof(text),
	        "%s:1:10: extends: profile '%s/nope' not found (no such file, with or "
	        "without .yaml)\n",
	        tmp_path("abs.yaml"), abs);
	assert_string_equal(r.out, text);
	assert_int_equal(r.rc, TL_E_CONFIG);
	free(r.out);
	free(abs);
}

static void
test_load_cycle_reported(void **state)
{
	(void)state;
	expect_errors("cycle_a.yaml", NULL, 1,
	        "@/cycle_b.yaml:2:10: extends: cycle: @/cycle_a.yaml -> @/cycle_b.yaml -> "
	        "@/cycle_a.yaml\n");
}

static void
test_load_self_cycle_reported(void **state)
{
	(void)state;
	expect_errors("self_cycle.yaml", NULL, 1,
	        "@/self_cycle.yaml:1:10: extends: cycle: @/self_cycle.yaml -> "
	        "@/self_cycle.yaml\n");
}

/* d00 extends d01 ... the last one sets the required host. */
static void
write_chain(unsigned files)
{
	char name[32], text[128];
	unsigned i;
	int n;

	for (i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "d%02u.yaml", i);
		if (i + 1 < files)
			n = snprintf(text, sizeof(text), "extends: d%02u\nname: d%02u\n", i + 1, i);
		else
			n = snprintf(text, sizeof(text), "uplink:\n  host: deep\n");
		write_file(tmp_path(name), text, (size_t)n);
	}
}

static void
test_load_chain_16_deep_accepted(void **state)
{
	struct t_conf c;
	struct result r;

	(void)state;
	write_chain(16);
	r = load(tmp_path("d00.yaml"), &c, NULL);
	assert_string_equal(r.out, "");
	assert_int_equal(r.rc, 0);
	assert_string_equal(c.name, "d00");
	assert_string_equal(c.uplink.host, "deep");
	free(r.out);
}

static void
test_load_chain_17_deep_rejected(void **state)
{
	struct t_conf c;
	struct result r;
	char want[64];

	(void)state;
	write_chain(17);
	r = load(tmp_path("d00.yaml"), &c, NULL);
	snprintf(want, sizeof(want), "%s:1:10: extends: more than 16 profiles in one chain (",
	        tmp_path("d15.yaml"));
	assert_int_equal(strncmp(r.out, want, strlen(want)), 0);
	assert_non_null(strstr(r.out, "d15.yaml -> "));
	assert_int_equal(r.rc, TL_E_CONFIG);
	assert_int_equal(r.n, 1);
	free(r.out);
}

static void
test_load_missing_parent_reported(void **state)
{
	(void)state;
	expect_errors("missing_parent.yaml", profile_dirs(), 1,
	        "@/missing_parent.yaml:1:10: extends: profile 'e6data' not found "
	        "(looked in @/, @/profiles)\n");
}

static void
test_load_extends_list_rejected(void **state)
{
	(void)state;
	expect_errors("extends_list.yaml", profile_dirs(), 1,
	        "@/extends_list.yaml:1:10: extends: expected the name of one profile, not "
	        "a sequence\n");
}

static void
test_load_extends_nested_rejected(void **state)
{
	(void)state;
	expect_errors("extends_nested.yaml", profile_dirs(), 1,
	        "@/extends_nested.yaml:3:3: unknown key 'extends' in uplink ('extends' is "
	        "only allowed at the top level of a file) (valid: batch, host, offset, "
	        "password)\n");
}

static void
test_load_extends_empty_rejected(void **state)
{
	(void)state;
	expect_tmp_error("ext_empty.yaml", "extends:\n", 9,
	        ":1:9: extends: expected the name of one profile, not an empty value\n");
}

static void
test_load_errors_in_parent_point_at_parent(void **state)
{
	(void)state;
	expect_errors("bad_child.yaml", NULL, 2,
	        "@/bad_child.yaml:3:12: '0' is out of range for pipeline.workers (allowed: "
	        "1 to 64)\n"
	        "@/bad_parent.yaml:4:14: 'fast' is not a duration (use e.g. 500ms, 2s, "
	        "1m)\n");
}

static void
test_load_syntax_error_located(void **state)
{
	(void)state;
	expect_errors("syntax.yaml", NULL, 1,
	        "@/syntax.yaml:4:7: mapping values are not allowed in this context (check "
	        "the indentation, or quote a value that contains ': ')\n");
}

static void
test_load_tab_indent_explained(void **state)
{
	(void)state;
	expect_errors("tabs.yaml", NULL, 1,
	        "@/tabs.yaml:3:1: found character that cannot start any token (a tab: YAML "
	        "indents with spaces only)\n");
}

static void
test_load_duplicate_keys_reported(void **state)
{
	(void)state;
	expect_errors("dup.yaml", NULL, 3,
	        "@/dup.yaml:4:3: duplicate key 'host' (first at line 3)\n"
	        "@/dup.yaml:5:1: duplicate key 'name' (first at line 1)\n"
	        "@/dup.yaml:6:1: duplicate key 'name' (first at line 1)\n");
}

static void
test_load_anchors_aliases_rejected(void **state)
{
	(void)state;
	expect_errors("anchors.yaml", NULL, 2,
	        "@/anchors.yaml:1:7: anchors ('&n') are not supported; write the value out, "
	        "or share it through 'extends:'\n"
	        "@/anchors.yaml:3:9: aliases ('*n') are not supported; write the value out, "
	        "or share it through 'extends:'\n");
}

static void
test_load_nonstandard_tags_rejected(void **state)
{
	(void)state;
	expect_errors("tags.yaml", NULL, 2,
	        "@/tags.yaml:1:7: tag '!custom' is not supported here (only !!str, !!int, "
	        "!!float, !!bool, !!null on values, !!seq, !!map)\n"
	        "@/tags.yaml:4:13: tag '!!binary' is not supported here (only !!str, !!int, "
	        "!!float, !!bool, !!null on values, !!seq, !!map)\n");
}

static void
test_load_multi_document_rejected(void **state)
{
	(void)state;
	expect_errors("multidoc.yaml", NULL, 1,
	        "@/multidoc.yaml:3:1: only one YAML document per file is supported (remove "
	        "this '---' and what follows, or move it to its own file)\n");
}

static void
test_load_root_scalar_rejected(void **state)
{
	(void)state;
	expect_errors("root_scalar.yaml", NULL, 1,
	        "@/root_scalar.yaml:1:1: the top level of a profile must be a mapping (key: "
	        "value lines), not a scalar\n");
}

static void
test_load_empty_file_required_reported(void **state)
{
	(void)state;
	expect_errors("empty.yaml", NULL, 1,
	        "@/empty.yaml:1:1: required option uplink.host is not set (ClickHouse "
	        "host)\n");
}

static void
test_load_missing_file_reported(void **state)
{
	(void)state;
	expect_errors("no_such_file.yaml", NULL, 1,
	        "@/no_such_file.yaml: cannot read: No such file or directory\n");
	expect_errors("profiles", NULL, 1, "@/profiles: cannot read: Is a directory\n");
}

static void
test_load_unknown_keys_every_level(void **state)
{
	(void)state;
	expect_errors("unknown.yaml", NULL, 4,
	        "@/unknown.yaml:1:1: unknown key 'nam' at the top level (valid: enabled, "
	        "extends, interfaces, listeners, mode, name, pipeline, spool_size, uplink)\n"
	        "@/unknown.yaml:4:3: unknown key 'hots' in uplink (valid: batch, host, "
	        "offset, password)\n"
	        "@/unknown.yaml:7:5: unknown key 'max_flow' in pipeline.reassembly (valid: "
	        "max_flows, max_frags, timeout)\n"
	        "@/unknown.yaml:10:5: unknown key 'prot' in listeners[0] (valid: name, port, "
	        "tags, tls)\n");
}

static void
test_load_type_errors_all_reported(void **state)
{
	(void)state;
	expect_errors("types.yaml", NULL, 13,
	        "@/types.yaml:1:7: 'a name that is far too long for 31 bytes' is too long "
	        "for name (40 bytes, at most 31)\n"
	        "@/types.yaml:2:10: 'maybe' is not a boolean (use true or false)\n"
	        "@/types.yaml:3:7: 'fastest' is not a valid value for mode (valid: fast, "
	        "safe, paranoid)\n"
	        "@/types.yaml:4:13: 'lots' is not a size (use e.g. 1500, 4KiB, 64MiB, "
	        "1GiB)\n"
	        "@/types.yaml:5:11: pipeline is a section and expects a mapping of its "
	        "keys, not a scalar\n"
	        "@/types.yaml:8:11: '0' is out of range for listeners[0].port (allowed: 1 "
	        "to 65535)\n"
	        "@/types.yaml:9:5: listeners[1]: tls on port 80 is not supported\n"
	        "@/types.yaml:13:21: listeners[2].tags has too many entries (at most 3)\n"
	        "@/types.yaml:14:13: interfaces expects a list of strings, not a scalar\n"
	        "@/types.yaml:17:5: uplink.host expects a string, not a mapping\n"
	        "@/types.yaml:18:13: the value of secret uplink.password is too long (at "
	        "most 31 bytes)\n"
	        "@/types.yaml:19:10: '2KiB' is out of range for uplink.batch (allowed: "
	        "4KiB to 1GiB)\n"
	        "@/types.yaml:20:11: '-1000' is out of range for uplink.offset (allowed: "
	        "-100 to 100)\n");
}

static void
test_load_null_values_reported(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("nulls.yaml"), &c, NULL);
	char *want =
	        expand("@/nulls.yaml:2:10: enabled has no value; expected a boolean (true or "
	               "false)\n"
	               "@/nulls.yaml:3:13: spool_size has no value; expected a size (e.g. 1500, "
	               "4KiB, 64MiB)\n"
	               "@/nulls.yaml:4:12: interfaces expects a list of strings, not a null "
	               "(write [] for an empty list)\n");

	(void)state;
	assert_string_equal(r.out, want);
	assert_int_equal(r.rc, TL_E_CONFIG);
	assert_int_equal(r.n, 3);
	/* A null string is the empty string, not an error. */
	assert_string_equal(c.name, "");
	assert_string_equal(c.uplink.password, "");
	free(want);
	free(r.out);
}

static void
test_load_required_missing_reported(void **state)
{
	(void)state;
	expect_errors("required.yaml", NULL, 2,
	        "@/required.yaml:2:5: required option listeners[0].name is not set "
	        "(listener name)\n"
	        "@/required.yaml:3:1: required option uplink.host is not set (ClickHouse "
	        "host)\n");
}

static void
test_load_section_check_reported(void **state)
{
	(void)state;
	expect_errors("checks.yaml", NULL, 1,
	        "@/checks.yaml:2:3: pipeline.reassembly: max_frags (3) must not exceed "
	        "max_flows (2)\n");
}

static void
test_load_overflow_reported(void **state)
{
	(void)state;
	expect_errors("overflow.yaml", NULL, 4,
	        "@/overflow.yaml:1:13: '16EiB' is too large for a size (at most 16EiB - "
	        "1)\n"
	        "@/overflow.yaml:3:12: '18446744073709551616' is too large for a 64-bit "
	        "number\n"
	        "@/overflow.yaml:5:14: '1000000d' is too large for a duration (at most "
	        "about 584 years)\n"
	        "@/overflow.yaml:8:11: '-9223372036854775809' does not fit in a 64-bit "
	        "integer\n");
}

static void
test_load_capacity_reported(void **state)
{
	(void)state;
	expect_errors("capacity.yaml", NULL, 3,
	        "@/capacity.yaml:3:5: listeners[1] must be a mapping of its keys, not a "
	        "scalar\n"
	        "@/capacity.yaml:5:5: listeners has too many entries (at most 3)\n"
	        "@/capacity.yaml:7:26: interfaces has too many entries (at most 4)\n");
}

static void
test_load_secret_never_in_messages(void **state)
{
	struct t_conf c;
	struct result r = load(fixture("types.yaml"), &c, NULL);

	(void)state;
	assert_int_equal(r.rc, TL_E_CONFIG);
	assert_null(strstr(r.out, "definitely"));
	assert_null(strstr(r.out, "52"));
	free(r.out);
}

static void
test_load_not_utf8_reported(void **state)
{
	static const char text[] = "uplink:\n  host: h\nname: \xff\xfe\n";

	(void)state;
	expect_tmp_error("latin1.yaml", text, sizeof(text) - 1,
	        ":3:7: invalid leading UTF-8 octet (byte 0xff); the file must be UTF-8\n");
}

static void
test_load_nul_in_value_rejected(void **state)
{
	static const char text[] = "uplink:\n  host: \"a\\0b\"\n";
	unsigned n;

	(void)state;
	n = expect_tmp_error("nul.yaml", text, sizeof(text) - 1,
	        ":2:9: a NUL character (\\0) in a value is not supported\n");
	assert_int_equal(n, 1);
}

static void
test_load_deep_nesting_rejected(void **state)
{
	char text[512];
	struct t_conf c;
	struct result r;
	int i, n = 0;

	(void)state;
	n += snprintf(text + n, sizeof(text) - (size_t)n, "name: ");
	for (i = 0; i < 100; i++)
		text[n++] = '[';
	for (i = 0; i < 100; i++)
		text[n++] = ']';
	text[n++] = '\n';
	write_file(tmp_path("deep.yaml"), text, (size_t)n);
	r = load(tmp_path("deep.yaml"), &c, NULL);
	assert_non_null(strstr(r.out, ":1:70: nesting deeper than 64 levels\n"));
	assert_int_equal(r.rc, TL_E_CONFIG);
	assert_int_equal(r.n, 1);
	free(r.out);
}

static void
test_load_thousands_of_problems_counted_output_capped(void **state)
{
	const unsigned dups = 3000;
	size_t len = dups * 16 + 64, o = 0, lines = 0;
	char *text = malloc(len), *p;
	struct t_conf c;
	struct result r;
	unsigned i;

	(void)state;
	assert_non_null(text);
	for (i = 0; i < dups; i++)
		o += (size_t)snprintf(text + o, len - o, "name: n%u\n", i);
	write_file(tmp_path("many.yaml"), text, o);
	free(text);
	r = load(tmp_path("many.yaml"), &c, NULL);
	/* dups - 1 duplicate keys plus the missing uplink.host */
	assert_int_equal(r.n, dups);
	assert_int_equal(r.rc, TL_E_CONFIG);
	for (p = r.out; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	assert_int_equal(lines, 1001);
	assert_non_null(strstr(r.out, "(2000 more problems not shown)\n"));
	/* The first occurrence wins. */
	assert_string_equal(c.name, "n0");
	free(r.out);
}

static void
test_load_null_errs_and_count_accepted(void **state)
{
	struct t_conf c;

	(void)state;
	assert_int_equal(tl_config_load(fixture("valid.yaml"), root_opts, &c, NULL, NULL, NULL), 0);
	assert_valid(&c);
}

/* ---- config show ------------------------------------------------------------------ */

/* tl_config_show() of @p obj under the table @p t, as a malloc'd string. */
static char *
show_opts(const struct tl_opt *t, const void *obj)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(tl_config_show(f, t, obj), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static char *
show(const struct t_conf *c)
{
	return show_opts(root_opts, c);
}

static void
test_show_valid_exact_text(void **state)
{
	static const char want[] = "name: edge-1\n"
	                           "enabled: false\n"
	                           "mode: paranoid\n"
	                           "spool_size: 2GiB\n"
	                           "pipeline:\n"
	                           "  workers: 4\n"
	                           "  reassembly:\n"
	                           "    max_flows: 4096\n"
	                           "    max_frags: 8\n"
	                           "    timeout: 1500ms\n"
	                           "listeners:\n"
	                           "  - name: telemetry\n"
	                           "    port: 5170\n"
	                           "    tls: false\n"
	                           "    tags:\n"
	                           "      - a\n"
	                           "      - b\n"
	                           "  - name: secure\n"
	                           "    port: 6514\n"
	                           "    tls: true\n"
	                           "    tags:\n"
	                           "      - default\n"
	                           "interfaces:\n"
	                           "  - eth1\n"
	                           "  - eth 2\n"
	                           "uplink:\n"
	                           "  host: ch.example.net\n"
	                           "  password: \"<secret>\"\n"
	                           "  batch: 512KiB\n"
	                           "  offset: -42\n";
	struct t_conf c;
	struct result r = load(fixture("valid.yaml"), &c, NULL);
	char *out;

	(void)state;
	assert_int_equal(r.rc, 0);
	out = show(&c);
	assert_string_equal(out, want);
	assert_null(strstr(out, "hunter2"));
	free(out);
	free(r.out);
}

/* show -> file -> load gives the same struct, byte for byte (the secret aside). */
static void
assert_round_trip(const struct t_conf *c)
{
	char *text = show(c);
	struct t_conf back;
	struct result r;

	write_file(tmp_path("shown.yaml"), text, strlen(text));
	r = load(tmp_path("shown.yaml"), &back, NULL);
	if (r.rc != 0)
		print_message("shown:\n%s\nerrors:\n%s", text, r.out);
	assert_int_equal(r.rc, 0);
	assert_string_equal(back.uplink.password, "<secret>");
	memcpy(back.uplink.password, c->uplink.password, sizeof(back.uplink.password));
	assert_memory_equal(&back, c, sizeof(back));
	free(text);
	free(r.out);
}

static void
test_show_round_trip_identical(void **state)
{
	static const char *const files[] = {
	        "valid.yaml", "override.yaml", "site.yaml", "sub/child.yaml"};
	struct t_conf c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct result r = load(fixture(files[i]), &c, profile_dirs());

		assert_int_equal(r.rc, 0);
		assert_round_trip(&c);
		free(r.out);
	}
}

static void
test_show_odd_values_round_trip(void **state)
{
	static const char *const strings[] = {"", "~", "null", "NULL", "yes", "off", "y", "true",
	        "- a", "a: b", "a:", ":a", "#x", "x #y", "x#y", " lead", "trail ", "quo\"te",
	        "back\\slash", "new\nline", "tab\tx", "ctl\x01z", "del\x7f",
	        "\xc3\xbc"
	        "n\xc3\xaf"
	        "code",
	        "123", "0x10", "-1", "1.5", "[a]", "{b}", "&a", "*a", "!t", "%p", "@x", "`x", "|",
	        ">", "'q'", "a,b", "?", ":", "<secret>", "a'b", "\xc2\x85nel", "ls\xe2\x80\xa8",
	        "\xc2\x80"
	        "c1",
	        "\xef\xbb\xbf"
	        "bom",
	        "\xc2\xa0"
	        "nbsp\xc2\xa0",
	        "\xf0\x9f\x98\x80"};
	static const uint64_t sizes[] = {0, 1, 1023, 1024, 1536, 1ull << 20, (1ull << 20) + 1,
	        5ull << 40, 7ull << 60, UINT64_MAX, 1000000};
	static const uint64_t durs[] = {0, 1, 999, 1000, 1000000, 1500000000ull, 60000000000ull,
	        90000000000ull, 3600000000000ull, 86400000000000ull, UINT64_MAX};
	struct t_conf c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		memset(&c, 0, sizeof(c));
		assert_int_equal(tl_opt_defaults(root_opts, &c), 0);
		strcpy(c.uplink.host, "h");
		/* The loader zero-fills string buffers; do the same so memcmp is fair. */
		memset(c.name, 0, sizeof(c.name));
		memset(c.interfaces[0], 0, sizeof(c.interfaces[0]));
		memset(c.listeners[0].name, 0, sizeof(c.listeners[0].name));
		snprintf(c.name, sizeof(c.name), "%s", strings[i]);
		snprintf(c.interfaces[0], sizeof(c.interfaces[0]), "%s", strings[i]);
		c.n_listeners = 1;
		snprintf(c.listeners[0].name, sizeof(c.listeners[0].name), "%s", strings[i]);
		c.listeners[0].port = 1;
		c.listeners[0].n_tags = 0;
		assert_round_trip(&c);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(&c, 0, sizeof(c));
		assert_int_equal(tl_opt_defaults(root_opts, &c), 0);
		strcpy(c.uplink.host, "h");
		c.spool_size = sizes[i];
		c.mode = MODE_PARANOID;
		c.uplink.offset = i % 2 ? -100 : 100;
		assert_round_trip(&c);
	}
	for (i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
		static const struct tl_opt t[] = {
		        {.name = "d", .type = TL_OPT_DURATION, .offset = 0},
		        {.name = NULL},
		};
		uint64_t d = durs[i], back = 0;
		char *buf = show_opts(t, &d);

		assert_int_equal(strncmp(buf, "d: ", 3), 0);
		buf[strlen(buf) - 1] = '\0';
		assert_int_equal(tl_parse_duration(buf + 3, &back), 0);
		assert_int_equal(back, d);
		free(buf);
	}
}

static void
test_show_units_largest_exact(void **state)
{
	static const struct {
		uint64_t v;
		const char *size, *dur;
	} cases[] = {
	        {0, "0", "0s"},
	        {1, "1", "1ns"},
	        {1000, "1000", "1us"},
	        {1024, "1KiB", "1024ns"},
	        {1536, "1536", "1536ns"},
	        {3ull << 20, "3MiB", "3145728ns"},
	        {500000000, "500000000", "500ms"},
	        {2000000000, "1953125KiB", "2s"},
	        {120000000000ull, "117187500KiB", "2m"},
	        {1ull << 60, "1EiB", "1152921504606846976ns"},
	};
	static const struct tl_opt t[] = {
	        {.name = "s", .type = TL_OPT_SIZE, .offset = 0},
	        {.name = "d", .type = TL_OPT_DURATION, .offset = 8},
	        {.name = NULL},
	};
	char want[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v[2] = {cases[i].v, cases[i].v};
		char *buf = show_opts(t, v);

		snprintf(want, sizeof(want), "s: %s\nd: %s\n", cases[i].size, cases[i].dur);
		assert_string_equal(buf, want);
		free(buf);
	}
}

static void
test_show_write_error_eio(void **state)
{
	struct t_conf c;
	FILE *f = fopen("/dev/full", "w");

	(void)state;
	if (f == NULL)
		skip();
	assert_int_equal(tl_opt_defaults(root_opts, &c), 0);
	assert_int_equal(tl_config_show(f, root_opts, &c), -EIO);
	fclose(f);
}

/* ---- tl_yaml internals: merge keeps each node's own location ---------------------- */

static void
test_yaml_merge_locations_kept(void **state)
{
	static const char parent[] = "a:\n  x: 1\n  y: [p]\nb: 2\n";
	static const char child[] = "c: 3\na:\n  y: [c1, c2]\n  z: 4\n";
	struct tl_yarena *ar;
	struct tl_ynode *p, *c, *a, *n;
	unsigned np;

	(void)state;
	assert_int_equal(tl_yarena_create(&ar), 0);
	assert_int_equal(tl_yaml_parse_string(
	                         ar, "parent.yaml", parent, strlen(parent), NULL, NULL, &p, &np),
	        0);
	assert_int_equal(
	        tl_yaml_parse_string(ar, "child.yaml", child, strlen(child), NULL, NULL, &c, &np),
	        0);
	assert_int_equal(tl_yaml_merge(&p, c), 0);
	assert_int_equal(p->count, 3);
	a = tl_ynode_get(p, "a");
	assert_non_null(a);
	/* The merged section takes the child's location... */
	assert_string_equal(a->file, "child.yaml");
	assert_int_equal(a->key_line, 2);
	assert_int_equal(a->count, 3);
	/* ...while the values keep their own. */
	n = tl_ynode_get(a, "x");
	assert_string_equal(n->file, "parent.yaml");
	assert_int_equal(n->line, 2);
	assert_int_equal(n->col, 6);
	n = tl_ynode_get(a, "y");
	assert_string_equal(n->file, "child.yaml");
	assert_int_equal(n->type, TL_YNODE_SEQ);
	assert_int_equal(n->count, 2);
	assert_string_equal(n->first->value, "c1");
	n = tl_ynode_get(a, "z");
	assert_string_equal(n->file, "child.yaml");
	assert_int_equal(n->line, 4);
	assert_string_equal(tl_ynode_get(p, "b")->file, "parent.yaml");
	assert_string_equal(tl_ynode_get(p, "c")->value, "3");
	/* Order: the parent's keys first, then the child's new ones. */
	assert_string_equal(p->first->key, "a");
	assert_string_equal(p->last->key, "c");
	tl_yarena_free(ar);
}

static void
test_yaml_merge_null_keeps_parent_section(void **state)
{
	static const char parent[] = "a:\n  x: 1\nb: [1]\n";
	static const char child[] = "a:\nb: ~\n";
	struct tl_yarena *ar;
	struct tl_ynode *p, *c, *n;
	unsigned np;

	(void)state;
	assert_int_equal(tl_yarena_create(&ar), 0);
	assert_int_equal(
	        tl_yaml_parse_string(ar, "p", parent, strlen(parent), NULL, NULL, &p, &np), 0);
	assert_int_equal(
	        tl_yaml_parse_string(ar, "c", child, strlen(child), NULL, NULL, &c, &np), 0);
	assert_int_equal(tl_yaml_merge(&p, c), 0);
	n = tl_ynode_get(p, "a");
	assert_int_equal(n->type, TL_YNODE_MAP);
	assert_string_equal(tl_ynode_get(n, "x")->value, "1");
	/* A null over a sequence replaces it (and is then reported by the loader). */
	n = tl_ynode_get(p, "b");
	assert_int_equal(n->type, TL_YNODE_SCALAR);
	assert_true(n->null);
	tl_yarena_free(ar);
	tl_yarena_free(NULL);
}

static void
test_yaml_null_detection_by_style(void **state)
{
	static const char text[] = "a:\nb: ~\nc: null\nd: \"\"\ne: '~'\nf: !!str null\n"
	                           "g: !!null x\nh: Null\n";
	struct tl_yarena *ar;
	struct tl_ynode *r;
	unsigned np;

	(void)state;
	assert_int_equal(tl_yarena_create(&ar), 0);
	assert_int_equal(tl_yaml_parse_string(ar, "t", text, strlen(text), NULL, NULL, &r, &np), 0);
	assert_int_equal(np, 0);
	assert_true(tl_ynode_get(r, "a")->null);
	assert_true(tl_ynode_get(r, "b")->null);
	assert_true(tl_ynode_get(r, "c")->null);
	assert_false(tl_ynode_get(r, "d")->null);
	assert_false(tl_ynode_get(r, "e")->null);
	assert_false(tl_ynode_get(r, "f")->null);
	assert_true(tl_ynode_get(r, "g")->null);
	assert_true(tl_ynode_get(r, "h")->null);
	tl_yarena_free(ar);
}

static void
test_yaml_bad_keys_reported(void **state)
{
	static const char text[] = "? [a]\n: 1\n~: 2\nok: 3\n";
	struct tl_yarena *ar;
	struct tl_ynode *r;
	unsigned np;

	(void)state;
	assert_int_equal(tl_yarena_create(&ar), 0);
	assert_int_equal(tl_yaml_parse_string(ar, "t", text, strlen(text), NULL, NULL, &r, &np), 0);
	assert_int_equal(np, 2);
	assert_int_equal(r->count, 1);
	assert_string_equal(r->first->key, "ok");
	tl_yarena_free(ar);
}

static void
test_yaml_printable_escapes_and_truncates(void **state)
{
	char buf[128], small[8];
	char longs[200];

	(void)state;
	tl_yaml_printable(buf, sizeof(buf), "a\nb\tc\x01\x7f\xc3\xbc");
	assert_string_equal(buf, "a\\nb\\tc\\x01\\x7f\xc3\xbc");
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	tl_yaml_printable(buf, sizeof(buf), longs);
	assert_int_equal(strlen(buf), 63);
	assert_string_equal(buf + 60, "...");
	tl_yaml_printable(small, sizeof(small), "abcdefghij");
	assert_string_equal(small, "abcdefg");
}

/* ---- main ------------------------------------------------------------------------- */

static void
remove_tmp_dir(void)
{
	static const char *const names[] = {"ints.yaml", "replace.yaml", "abs.yaml",
	        "ext_empty.yaml", "latin1.yaml", "nul.yaml", "deep.yaml", "many.yaml",
	        "shown.yaml"};
	char name[32];
	unsigned i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(tmp_path(names[i]));
	for (i = 0; i < 17; i++) {
		snprintf(name, sizeof(name), "d%02u.yaml", i);
		unlink(tmp_path(name));
	}
	rmdir(tmp_dir);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_size_table_matches),
	        cmocka_unit_test(test_parse_duration_table_matches),
	        cmocka_unit_test(test_parse_bool_table_matches),
	        cmocka_unit_test(test_load_uint_int_values_table_matches),
	        cmocka_unit_test(test_defaults_root_table_all_applied),
	        cmocka_unit_test(test_defaults_bad_table_default_fails),
	        cmocka_unit_test(test_load_valid_every_type_set),
	        cmocka_unit_test(test_load_chain_three_deep_merged),
	        cmocka_unit_test(test_load_sequence_replaced_not_appended),
	        cmocka_unit_test(test_load_chain_no_search_dir_not_found),
	        cmocka_unit_test(test_load_relative_dotdot_parent_resolved),
	        cmocka_unit_test(test_load_relative_wins_over_search_dir),
	        cmocka_unit_test(test_load_absolute_extends_resolved),
	        cmocka_unit_test(test_load_cycle_reported),
	        cmocka_unit_test(test_load_self_cycle_reported),
	        cmocka_unit_test(test_load_chain_16_deep_accepted),
	        cmocka_unit_test(test_load_chain_17_deep_rejected),
	        cmocka_unit_test(test_load_missing_parent_reported),
	        cmocka_unit_test(test_load_extends_list_rejected),
	        cmocka_unit_test(test_load_extends_nested_rejected),
	        cmocka_unit_test(test_load_extends_empty_rejected),
	        cmocka_unit_test(test_load_errors_in_parent_point_at_parent),
	        cmocka_unit_test(test_load_syntax_error_located),
	        cmocka_unit_test(test_load_tab_indent_explained),
	        cmocka_unit_test(test_load_duplicate_keys_reported),
	        cmocka_unit_test(test_load_anchors_aliases_rejected),
	        cmocka_unit_test(test_load_nonstandard_tags_rejected),
	        cmocka_unit_test(test_load_multi_document_rejected),
	        cmocka_unit_test(test_load_root_scalar_rejected),
	        cmocka_unit_test(test_load_empty_file_required_reported),
	        cmocka_unit_test(test_load_missing_file_reported),
	        cmocka_unit_test(test_load_unknown_keys_every_level),
	        cmocka_unit_test(test_load_type_errors_all_reported),
	        cmocka_unit_test(test_load_null_values_reported),
	        cmocka_unit_test(test_load_required_missing_reported),
	        cmocka_unit_test(test_load_section_check_reported),
	        cmocka_unit_test(test_load_overflow_reported),
	        cmocka_unit_test(test_load_capacity_reported),
	        cmocka_unit_test(test_load_secret_never_in_messages),
	        cmocka_unit_test(test_load_not_utf8_reported),
	        cmocka_unit_test(test_load_nul_in_value_rejected),
	        cmocka_unit_test(test_load_deep_nesting_rejected),
	        cmocka_unit_test(test_load_thousands_of_problems_counted_output_capped),
	        cmocka_unit_test(test_load_null_errs_and_count_accepted),
	        cmocka_unit_test(test_show_valid_exact_text),
	        cmocka_unit_test(test_show_round_trip_identical),
	        cmocka_unit_test(test_show_odd_values_round_trip),
	        cmocka_unit_test(test_show_units_largest_exact),
	        cmocka_unit_test(test_show_write_error_eio),
	        cmocka_unit_test(test_yaml_merge_locations_kept),
	        cmocka_unit_test(test_yaml_merge_null_keeps_parent_section),
	        cmocka_unit_test(test_yaml_null_detection_by_style),
	        cmocka_unit_test(test_yaml_bad_keys_reported),
	        cmocka_unit_test(test_yaml_printable_escapes_and_truncates),
	};
	const char *env = getenv("TL_TEST_CONFIG_DATA");
	int rc;

	if (argc > 1)
		snprintf(data_dir, sizeof(data_dir), "%s", argv[1]);
	else if (env != NULL && env[0] != '\0')
		snprintf(data_dir, sizeof(data_dir), "%s", env);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tl_config_test.XXXXXX",
	        getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmp_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	remove_tmp_dir();
	return rc;
}
