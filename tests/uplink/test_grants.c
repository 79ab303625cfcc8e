/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of uplink/tl_grants: the exact users.d XML and SQL of a small profile,
 * password sources (hash given, file, environment) and their failures, names that try
 * to inject XML or SQL, and the DDL of routed databases.
 *
 * Expected hashes were computed with sha256sum, not with the code under test. Whether
 * ClickHouse accepts the output is tests/integration/tenant_isolation.sh's business.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_batch.h"
#include "tl_ddl.h"
#include "tl_error.h"
#include "tl_grants.h"
#include "tl_route.h"
#include "tl_schema.h"
#include "tl_test_schema.h"

/* sha256sum of the passwords used below. */
#define SHA_ACME "68cd9b2b22382530393ca0cbe8f2d0fd06d904703b400f968cf3a3077aeae4a3"
#define SHA_S3CRET "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
#define SHA_WRITER "fd9a308f0ac63b5fb84e2dc7e95701ab0541b41b8a0df7a518e2af8a96a567e9"
#define SHA_1023X "97c9d367e67d0cff2f99f4c97ddff45250552d880b0d2c57caf78b1483da8c56"

#define ENV_WRITER "TL_TEST_GRANTS_WRITER_PW"

/* The default route's database (normally uplink.database). */
static char g_defdb[64] = "telemetry";

static struct tl_route_conf g_conf;
static struct tl_schema *g_schema;
static char g_tmp_dir[200];
static char g_err[1024];

/* Output captured in memory. */
struct capture {
	FILE *f;
	char *buf;
	size_t len;
};

static void
capture_open(struct capture *c)
{
	c->buf = NULL;
	c->len = 0;
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
}

/* Close and @return the text (owned by @p c until capture_free). */
static const char *
capture_close(struct capture *c)
{
	assert_int_equal(fclose(c->f), 0);
	c->f = NULL;
	return c->buf;
}

static void
capture_free(struct capture *c)
{
	free(c->buf);
	c->buf = NULL;
}

static int
group_setup(void **state)
{
	struct tl_schema_def def;
	struct tl_limits lim = tl_test_e6data_limits();
	char msg[256];

	(void)state;
	tl_test_e6data_def(&def);
	if (tl_schema_compile(&def, &lim, &g_schema, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "schema: %s\n", msg);
		return -1;
	}
	snprintf(g_tmp_dir, sizeof(g_tmp_dir), "%s/tl_grants_test.XXXXXX",
	        getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(g_tmp_dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	tl_schema_free(g_schema);
	rmdir(g_tmp_dir);
	return 0;
}

static int
test_setup(void **state)
{
	(void)state;
	memset(&g_conf, 0, sizeof(g_conf));
	snprintf(g_defdb, sizeof(g_defdb), "telemetry");
	g_err[0] = '\0';
	unsetenv(ENV_WRITER);
	return 0;
}

static struct tl_route_user_def *
add_user(const char *name, const char *db, int access)
{
	struct tl_route_user_def *u = &g_conf.users[g_conf.n_users++];

	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name);
	snprintf(u->databases[0], TL_ROUTE_IDENT_MAX, "%s", db);
	u->n_databases = 1;
	snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "::/0");
	u->n_networks = 1;
	u->access = access;
	return u;
}

static struct tl_route_rule_def *
add_rule(const char *name, const char *value, const char *db, const char *table)
{
	struct tl_route_rule_def *r = &g_conf.rules[g_conf.n_rules++];

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->field, sizeof(r->field), "database_name");
	snprintf(r->equals, sizeof(r->equals), "%s", value);
	snprintf(r->database, sizeof(r->database), "%s", db);
	snprintf(r->table, sizeof(r->table), "%s", table);
	return r;
}

/* A file in the test folder holding @p len bytes of @p data; @return its path. */
static const char *
write_tmp(const char *name, const void *data, size_t len)
{
	static char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", g_tmp_dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* The two users of the small profile: a reader (hash given) and a writer (env). */
static void
small_profile(void)
{
	struct tl_route_user_def *u;

	add_rule("acme", "sales", "tenant_acme", "sink_output");
	u = add_user("acme_reader", "tenant_acme", TL_ROUTE_ACCESS_READ);
	/* Upper-case hex is accepted and written in lower case. */
	snprintf(u->password_sha256, sizeof(u->password_sha256),
	        "68CD9B2B22382530393CA0CBE8F2D0FD06D904703B400F968CF3A3077AEAE4A3");
	u = add_user("acme_writer", "tenant_acme", TL_ROUTE_ACCESS_WRITE);
	snprintf(u->databases[1], TL_ROUTE_IDENT_MAX, "telemetry");
	u->n_databases = 2;
	snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "10.0.0.0/8");
	snprintf(u->networks[1], TL_ROUTE_NETWORK_MAX, "::1");
	u->n_networks = 2;
	snprintf(u->password_env, sizeof(u->password_env), ENV_WRITER);
	assert_int_equal(setenv(ENV_WRITER, "writer pass", 1), 0);
}

/* ---- users ------------------------------------------------------------------------- */

static void
test_users_xml_exact_output(void **state)
{
	static const char want[] =
	        "<?xml version=\"1.0\"?>\n"
	        "<!-- Generated by `tapline schema users` from the profile's routing.users: do "
	        "not\n"
	        "     edit. Install as /etc/clickhouse-server/users.d/tapline-users.xml; the "
	        "server\n"
	        "     (18.16 and later) re-reads it without a restart. -->\n"
	        "<yandex>\n"
	        "  <profiles>\n"
	        "    <tapline_readonly>\n"
	        "      <profile>default</profile>\n"
	        "      <readonly>1</readonly>\n"
	        "    </tapline_readonly>\n"
	        "    <tapline_write>\n"
	        "      <profile>default</profile>\n"
	        "      <allow_ddl>0</allow_ddl>\n"
	        "    </tapline_write>\n"
	        "  </profiles>\n"
	        "  <users>\n"
	        "    <acme_reader>\n"
	        "      <password_sha256_hex>" SHA_ACME "</password_sha256_hex>\n"
	        "      <networks>\n"
	        "        <ip>::/0</ip>\n"
	        "      </networks>\n"
	        "      <profile>tapline_readonly</profile>\n"
	        "      <quota>default</quota>\n"
	        "      <allow_databases>\n"
	        "        <database>tenant_acme</database>\n"
	        "      </allow_databases>\n"
	        "    </acme_reader>\n"
	        "    <acme_writer>\n"
	        "      <password_sha256_hex>" SHA_WRITER "</password_sha256_hex>\n"
	        "      <networks>\n"
	        "        <ip>10.0.0.0/255.0.0.0</ip>\n"
	        "        <ip>::1</ip>\n"
	        "      </networks>\n"
	        "      <profile>tapline_write</profile>\n"
	        "      <quota>default</quota>\n"
	        "      <allow_databases>\n"
	        "        <database>tenant_acme</database>\n"
	        "        <database>telemetry</database>\n"
	        "      </allow_databases>\n"
	        "    </acme_writer>\n"
	        "  </users>\n"
	        "</yandex>\n";
	struct tl_route_table *t = NULL;
	struct capture c;

	(void)state;
	small_profile();
	/* The profile passes the routing checks too. */
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, &t, g_err, sizeof(g_err)), 0);
	tl_route_table_free(t);
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_XML, &g_conf, g_err, sizeof(g_err)), 0);
	assert_string_equal(capture_close(&c), want);
	assert_string_equal(g_err, "");
	/* The clear-text password appears nowhere. */
	assert_null(strstr(c.buf, "writer pass"));
	capture_free(&c);
}

static void
test_users_sql_exact_output(void **state)
{
	static const char want[] =
	        "-- Generated by `tapline schema users --format sql` from the profile's\n"
	        "-- routing.users, for ClickHouse with SQL access control (20.5 and later).\n"
	        "-- Re-running it brings passwords, networks and grants back to the profile:\n"
	        "-- grants the profile does not list are revoked.\n"
	        "\n"
	        "CREATE USER IF NOT EXISTS `acme_reader` IDENTIFIED WITH sha256_hash BY '" SHA_ACME
	        "' HOST IP '::/0';\n"
	        "ALTER USER `acme_reader` IDENTIFIED WITH sha256_hash BY '" SHA_ACME
	        "' HOST IP '::/0';\n"
	        "REVOKE ALL ON *.* FROM `acme_reader`;\n"
	        "GRANT SELECT ON `tenant_acme`.* TO `acme_reader`;\n"
	        "\n"
	        "CREATE USER IF NOT EXISTS `acme_writer` IDENTIFIED WITH sha256_hash BY "
	        "'" SHA_WRITER "' HOST IP '10.0.0.0/8', IP '::1';\n"
	        "ALTER USER `acme_writer` IDENTIFIED WITH sha256_hash BY '" SHA_WRITER
	        "' HOST IP '10.0.0.0/8', IP '::1';\n"
	        "REVOKE ALL ON *.* FROM `acme_writer`;\n"
	        "GRANT SELECT, INSERT ON `tenant_acme`.* TO `acme_writer`;\n"
	        "GRANT SELECT, INSERT ON `telemetry`.* TO `acme_writer`;\n";
	struct capture c;

	(void)state;
	small_profile();
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_SQL, &g_conf, g_err, sizeof(g_err)), 0);
	assert_string_equal(capture_close(&c), want);
	capture_free(&c);
}

static void
test_users_xml_ipv4_blocks_as_masks(void **state)
{
	static const char *const nets[][2] = {
	        {"0.0.0.0/0", "0.0.0.0/0.0.0.0"},
	        {"192.0.2.0/24", "192.0.2.0/255.255.255.0"},
	        {"198.51.100.7/32", "198.51.100.7/255.255.255.255"},
	        {"172.16.0.0/12", "172.16.0.0/255.240.0.0"},
	        {"203.0.113.128/25", "203.0.113.128/255.255.255.128"},
	        {"127.0.0.1", "127.0.0.1"},
	        {"2001:db8::/32", "2001:db8::/32"},
	        {"::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120"},
	};
	struct tl_route_user_def *u;
	struct capture c;
	char want[128];

	(void)state;
	u = add_user("u", "telemetry", TL_ROUTE_ACCESS_READ);
	snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
		snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "%s", nets[i][0]);
		capture_open(&c);
		assert_int_equal(tl_grants_users(c.f, TL_GRANTS_XML, &g_conf, NULL, 0), 0);
		snprintf(want, sizeof(want), "        <ip>%s</ip>\n", nets[i][1]);
		if (strstr(capture_close(&c), want) == NULL)
			fail_msg("%s: expected %s", nets[i][0], want);
		capture_free(&c);
		/* SQL keeps the CIDR form, which current releases read correctly. */
		capture_open(&c);
		assert_int_equal(tl_grants_users(c.f, TL_GRANTS_SQL, &g_conf, NULL, 0), 0);
		snprintf(want, sizeof(want), " HOST IP '%s';\n", nets[i][0]);
		assert_non_null(strstr(capture_close(&c), want));
		capture_free(&c);
	}
}

static void
test_users_none_and_no_network(void **state)
{
	struct tl_route_user_def *u;
	struct capture c;

	(void)state;
	/* No user: the XML still parses (profiles, empty users); SQL is comments only. */
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_XML, &g_conf, NULL, 0), 0);
	assert_non_null(strstr(capture_close(&c), "  <users>\n  </users>\n</yandex>\n"));
	capture_free(&c);
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_SQL, &g_conf, NULL, 0), 0);
	assert_null(strstr(capture_close(&c), "CREATE"));
	capture_free(&c);

	/* A user with no network can log in from nowhere. */
	u = add_user("locked", "telemetry", TL_ROUTE_ACCESS_READ);
	u->n_networks = 0;
	snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_SQL, &g_conf, NULL, 0), 0);
	assert_non_null(strstr(capture_close(&c), "BY '" SHA_ACME "' HOST NONE;\n"));
	capture_free(&c);
	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, TL_GRANTS_XML, &g_conf, NULL, 0), 0);
	assert_non_null(strstr(capture_close(&c), "      <networks>\n      </networks>\n"));
	capture_free(&c);
}

/* ---- passwords --------------------------------------------------------------------- */

static void
expect_hash(
        const struct tl_route_user_def *u, int rc_want, const char *hex_want, const char *msg_part)
{
	char hex[TL_ROUTE_SHA256_HEX], msg[512];

	memset(hex, 'Q', sizeof(hex));
	assert_int_equal(tl_grants_password_hash(u, hex, msg, sizeof(msg)), rc_want);
	if (rc_want == 0) {
		assert_string_equal(hex, hex_want);
		assert_string_equal(msg, "");
	} else {
		assert_string_equal(hex, "");
		if (strstr(msg, msg_part) == NULL)
			fail_msg("expected '%s' in '%s'", msg_part, msg);
	}
}

static void
test_password_file_read_and_hashed(void **state)
{
	static char big[1100];
	struct tl_route_user_def *u;
	const char *p;

	(void)state;
	u = add_user("u", "telemetry", TL_ROUTE_ACCESS_READ);
	/* Trailing CR/LF are not part of the password; inner spaces are. */
	p = write_tmp("pw1", "s3cret\r\n\n", 9);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, 0, SHA_S3CRET, NULL);
	p = write_tmp("pw2", "writer pass", 11);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, 0, SHA_WRITER, NULL);
	/* 1023 bytes is the longest, 1024 too long. */
	memset(big, 'x', sizeof(big));
	p = write_tmp("pw3", big, 1023);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, 0, SHA_1023X, NULL);
	p = write_tmp("pw4", big, 1024);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, -E2BIG, NULL, "longer than 1023 bytes");
	p = write_tmp("pw5", "a\0b", 3);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, -EINVAL, NULL, "contains a NUL byte");
	p = write_tmp("pw6", "\n", 1);
	snprintf(u->password_file, sizeof(u->password_file), "%s", p);
	expect_hash(u, -EINVAL, NULL, "routing user 'u': the password in password_file");
	snprintf(u->password_file, sizeof(u->password_file), "%s/missing", g_tmp_dir);
	expect_hash(u, -ENOENT, NULL, "No such file or directory");
	/* A folder cannot be read as a file. */
	snprintf(u->password_file, sizeof(u->password_file), "%s", g_tmp_dir);
	expect_hash(u, -EISDIR, NULL, "password_file");
	for (int i = 1; i <= 6; i++) {
		char name[16];

		snprintf(name, sizeof(name), "pw%d", i);
		unlink(write_tmp(name, "", 0));
	}
}

static void
test_password_env_read_and_hashed(void **state)
{
	static char big[1100];
	struct tl_route_user_def *u;

	(void)state;
	u = add_user("u", "telemetry", TL_ROUTE_ACCESS_READ);
	snprintf(u->password_env, sizeof(u->password_env), ENV_WRITER);
	expect_hash(u, -ENOENT, NULL, "routing user 'u': password_env " ENV_WRITER " is not set");
	assert_int_equal(setenv(ENV_WRITER, "", 1), 0);
	expect_hash(u, -EINVAL, NULL, "is empty");
	/* The environment is taken as is: a newline would be part of the password. */
	assert_int_equal(setenv(ENV_WRITER, "s3cret", 1), 0);
	expect_hash(u, 0, SHA_S3CRET, NULL);
	memset(big, 'x', 1024);
	big[1024] = '\0';
	assert_int_equal(setenv(ENV_WRITER, big, 1), 0);
	expect_hash(u, -E2BIG, NULL, "longer than 1023 bytes");
	big[1023] = '\0';
	assert_int_equal(setenv(ENV_WRITER, big, 1), 0);
	expect_hash(u, 0, SHA_1023X, NULL);
}

static void
test_password_sources_exactly_one(void **state)
{
	struct tl_route_user_def *u;
	char hex[TL_ROUTE_SHA256_HEX];

	(void)state;
	u = add_user("u", "telemetry", TL_ROUTE_ACCESS_READ);
	expect_hash(u, TL_E_CONFIG, NULL, "no password");
	snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
	expect_hash(u, 0, SHA_ACME, NULL);
	snprintf(u->password_env, sizeof(u->password_env), "X");
	expect_hash(u, TL_E_CONFIG, NULL, "set only one of");
	u->password_env[0] = '\0';
	/* Not hex, or not 64 digits: refused (it is spliced into XML and SQL). */
	snprintf(u->password_sha256, sizeof(u->password_sha256), "%.63s'", SHA_ACME);
	expect_hash(u, TL_E_CONFIG, NULL, "64 hex digits");
	snprintf(u->password_sha256, sizeof(u->password_sha256), "%.63s", SHA_ACME);
	expect_hash(u, TL_E_CONFIG, NULL, "64 hex digits");
	snprintf(u->password_sha256, sizeof(u->password_sha256), "'; DROP USER x; --");
	expect_hash(u, TL_E_CONFIG, NULL, "64 hex digits");
	assert_int_equal(tl_grants_password_hash(NULL, hex, NULL, 0), -EINVAL);
	assert_int_equal(tl_grants_password_hash(u, NULL, NULL, 0), -EINVAL);
}

/* ---- hostile profiles -------------------------------------------------------------- */

/* tl_grants_users must refuse @p conf with @p rc and write nothing. */
static void
expect_refused(enum tl_grants_format fmt, int rc, const char *msg_part)
{
	struct capture c;

	capture_open(&c);
	assert_int_equal(tl_grants_users(c.f, fmt, &g_conf, g_err, sizeof(g_err)), rc);
	capture_close(&c);
	assert_int_equal(c.len, 0);
	capture_free(&c);
	if (strstr(g_err, msg_part) == NULL)
		fail_msg("expected '%s' in '%s'", msg_part, g_err);
}

static void
test_users_injection_refused_nothing_written(void **state)
{
	struct tl_route_user_def *u;

	(void)state;
	for (int fmt = 0; fmt < TL_GRANTS_FORMAT_MAX; fmt++) {
		test_setup(NULL);
		u = add_user("ok", "telemetry", TL_ROUTE_ACCESS_READ);
		snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
		u = add_user("evil></users><users><default", "telemetry", TL_ROUTE_ACCESS_READ);
		snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
		expect_refused(fmt, TL_E_CONFIG, "invalid name");

		snprintf(u->name, sizeof(u->name), "default");
		expect_refused(fmt, TL_E_CONFIG, "invalid name");

		snprintf(u->name, sizeof(u->name), "u2");
		snprintf(u->databases[0], TL_ROUTE_IDENT_MAX, "x`.* TO u; GRANT ALL ON *");
		expect_refused(
		        fmt, TL_E_CONFIG, "routing user 'u2': database 1 has an invalid name");

		snprintf(u->databases[0], TL_ROUTE_IDENT_MAX, "telemetry");
		snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "::1</ip><ip>::/0");
		expect_refused(fmt, TL_E_CONFIG, "routing user 'u2': network 1 is not an IP");
		snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "::1' HOST ANY --");
		expect_refused(fmt, TL_E_CONFIG, "routing user 'u2': network 1 is not an IP");

		snprintf(u->networks[0], TL_ROUTE_NETWORK_MAX, "::1");
		u->access = 2;
		expect_refused(fmt, TL_E_CONFIG, "routing user 'u2': access 2 out of range");
		u->access = TL_ROUTE_ACCESS_READ;
		u->n_databases = 0;
		expect_refused(fmt, TL_E_CONFIG, "routing user 'u2': 0 databases");

		/* A password source failing for the second user: nothing of the first. */
		u->n_databases = 1;
		u->password_sha256[0] = '\0';
		snprintf(u->password_env, sizeof(u->password_env), ENV_WRITER);
		expect_refused(fmt, -ENOENT, "password_env " ENV_WRITER " is not set");
	}
}

static void
test_users_arguments_and_write_errors(void **state)
{
	struct tl_route_user_def *u;
	FILE *ro;

	(void)state;
	u = add_user("ok", "telemetry", TL_ROUTE_ACCESS_READ);
	snprintf(u->password_sha256, sizeof(u->password_sha256), SHA_ACME);
	assert_int_equal(tl_grants_users(NULL, TL_GRANTS_XML, &g_conf, NULL, 0), -EINVAL);
	assert_int_equal(tl_grants_users(stdout, TL_GRANTS_XML, NULL, NULL, 0), -EINVAL);
	assert_int_equal(tl_grants_users(stdout, TL_GRANTS_FORMAT_MAX, &g_conf, NULL, 0), -EINVAL);
	assert_int_equal(
	        tl_grants_users(stdout, (enum tl_grants_format) - 1, &g_conf, NULL, 0), -EINVAL);
	g_conf.n_users = TL_ROUTE_MAX_USERS + 1;
	assert_int_equal(
	        tl_grants_users(stdout, TL_GRANTS_XML, &g_conf, g_err, sizeof(g_err)), TL_E_CONFIG);
	assert_string_equal(g_err, "routing: 65 users, at most 64");
	g_conf.n_users = 1;
	/* A stream that cannot be written. */
	ro = fopen("/dev/null", "r");
	assert_non_null(ro);
	assert_int_equal(tl_grants_users(ro, TL_GRANTS_XML, &g_conf, NULL, 0), -EIO);
	assert_int_equal(tl_grants_users(ro, TL_GRANTS_SQL, &g_conf, NULL, 0), -EIO);
	fclose(ro);
	assert_string_equal(tl_grants_format_names[TL_GRANTS_XML], "xml");
	assert_string_equal(tl_grants_format_names[TL_GRANTS_SQL], "sql");
	assert_null(tl_grants_format_names[TL_GRANTS_FORMAT_MAX]);
}

/* ---- DDL --------------------------------------------------------------------------- */

/* "\n" + the DDL of table @p tb in @p db + ";\n" (or without the "\n" when @p first). */
static void
append_stmt(char *out, size_t cap, const char *stmt, int first)
{
	size_t o = strlen(out);

	snprintf(out + o, cap - o, "%s%s;\n", first ? "" : "\n", stmt);
}

static void
append_table(char *out, size_t cap, enum tl_batch_table tb, const char *db)
{
	static char buf[65536];

	assert_true(tl_ddl_create_table(g_schema, tb, db, buf, sizeof(buf)) > 0);
	append_stmt(out, cap, buf, 0);
}

static void
append_db(char *out, size_t cap, const char *db, int first)
{
	char buf[256];

	assert_true(tl_ddl_create_database(db, buf, sizeof(buf)) > 0);
	append_stmt(out, cap, buf, first);
}

static void
test_ddl_every_routed_database(void **state)
{
	static char want[1 << 18], renamed[65536];
	struct tl_route_table *t = NULL;
	struct capture c;
	const char *prefix = "CREATE TABLE IF NOT EXISTS `tenant_acme`.`sink_output`";

	(void)state;
	/* Without rules: exactly the three tables of the default database. */
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, &t, g_err, sizeof(g_err)), 0);
	want[0] = '\0';
	append_db(want, sizeof(want), "telemetry", 1);
	for (int tb = 0; tb < TL_BATCH_EVENT_TABLES; tb++)
		append_table(want, sizeof(want), (enum tl_batch_table)tb, "telemetry");
	capture_open(&c);
	assert_int_equal(tl_grants_ddl(c.f, g_schema, t), 0);
	assert_string_equal(capture_close(&c), want);
	capture_free(&c);
	tl_route_table_free(t);

	/* Two tenants, one with a second (renamed) main table, one rule back home. */
	add_rule("acme", "sales", "tenant_acme", "sink_output");
	add_rule("globex", "tpch_sf1", "tenant_globex", "sink_output");
	add_rule("acme-audit", "audit", "tenant_acme", "audit_output");
	add_rule("home", "internal", "telemetry", "sink_output");
	assert_int_equal(
	        tl_route_build(&g_conf, g_defdb, g_schema, NULL, &t, g_err, sizeof(g_err)), 0);
	assert_int_equal(tl_route_count(t), 4);
	want[0] = '\0';
	append_db(want, sizeof(want), "telemetry", 1);
	for (int tb = 0; tb < TL_BATCH_EVENT_TABLES; tb++)
		append_table(want, sizeof(want), (enum tl_batch_table)tb, "telemetry");
	append_db(want, sizeof(want), "tenant_acme", 0);
	append_table(want, sizeof(want), TL_BATCH_SINK_OUTPUT, "tenant_acme");
	/* The renamed table: the sink_output statement under another name. */
	assert_true(tl_ddl_create_table(g_schema, TL_BATCH_SINK_OUTPUT, "tenant_acme", renamed,
	                    sizeof(renamed)) > 0);
	assert_int_equal(strncmp(renamed, prefix, strlen(prefix)), 0);
	{
		static char stmt[65600];

		snprintf(stmt, sizeof(stmt),
		        "CREATE TABLE IF NOT EXISTS `tenant_acme`.`audit_output`%s",
		        renamed + strlen(prefix));
		append_stmt(want, sizeof(want), stmt, 0);
	}
	append_table(want, sizeof(want), TL_BATCH_ERROR_EVENTS, "tenant_acme");
	append_table(want, sizeof(want), TL_BATCH_DEAD_LETTER, "tenant_acme");
	append_db(want, sizeof(want), "tenant_globex", 0);
	for (int tb = 0; tb < TL_BATCH_EVENT_TABLES; tb++)
		append_table(want, sizeof(want), (enum tl_batch_table)tb, "tenant_globex");
	capture_open(&c);
	assert_int_equal(tl_grants_ddl(c.f, g_schema, t), 0);
	assert_string_equal(capture_close(&c), want);
	/* Each database once, each table once. */
	assert_non_null(strstr(c.buf, "`tenant_acme`.`audit_output` (\n\t`query_id` String,"));
	capture_free(&c);

	assert_int_equal(tl_grants_ddl(NULL, g_schema, t), -EINVAL);
	assert_int_equal(tl_grants_ddl(stdout, NULL, t), -EINVAL);
	assert_int_equal(tl_grants_ddl(stdout, g_schema, NULL), -EINVAL);
	{
		FILE *ro = fopen("/dev/null", "r");

		assert_non_null(ro);
		assert_int_equal(tl_grants_ddl(ro, g_schema, t), -EIO);
		fclose(ro);
	}
	tl_route_table_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(test_users_xml_exact_output, test_setup),
	        cmocka_unit_test_setup(test_users_sql_exact_output, test_setup),
	        cmocka_unit_test_setup(test_users_xml_ipv4_blocks_as_masks, test_setup),
	        cmocka_unit_test_setup(test_users_none_and_no_network, test_setup),
	        cmocka_unit_test_setup(test_password_file_read_and_hashed, test_setup),
	        cmocka_unit_test_setup(test_password_env_read_and_hashed, test_setup),
	        cmocka_unit_test_setup(test_password_sources_exactly_one, test_setup),
	        cmocka_unit_test_setup(test_users_injection_refused_nothing_written, test_setup),
	        cmocka_unit_test_setup(test_users_arguments_and_write_errors, test_setup),
	        cmocka_unit_test_setup(test_ddl_every_routed_database, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
