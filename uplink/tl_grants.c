/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Users, grants and DDL of the routed databases.
 *
 * Nothing here escapes: names are restricted to [A-Za-z0-9_] (tl_route_ident_valid) and
 * networks to what inet_pton() parses, so no character that means something in XML or
 * SQL can reach the output. That is checked again here because a conf can be built in
 * code, without tl_route_build(). A whitelist is also the only safe choice for the XML
 * form: ClickHouse turns an element name into a Poco configuration key, where even a
 * valid XML name with '.' would be read as a path.
 *
 * Every password is resolved before the first byte is written so a missing secret never
 * leaves a half-written users file behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tl_batch.h"
#include "tl_ddl.h"
#include "tl_error.h"
#include "tl_grants.h"

/* The CREATE TABLE of 137 columns of at most ~100 bytes each fits easily. */
#define DDL_MAX (64 * 1024)

const char *const tl_grants_format_names[] = {
        [TL_GRANTS_XML] = "xml",
        [TL_GRANTS_SQL] = "sql",
        [TL_GRANTS_FORMAT_MAX] = NULL,
};

static void __attribute__((format(printf, 3, 4)))
say(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg == NULL || msglen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

/* ---- passwords -------------------------------------------------------------------- */

static void
to_hex(const unsigned char *d, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * n] = '\0';
}

static int
sha256_hex(const char *pw, size_t len, char hex[TL_ROUTE_SHA256_HEX])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (EVP_Digest(pw, len, d, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
		return -ENOMEM; /* OpenSSL fails only when it cannot allocate */
	to_hex(d, 32, hex);
	explicit_bzero(d, sizeof(d));
	return 0;
}

/* Read @p path into @p pw (NUL-terminated, trailing CR/LF removed). @return 0 or -errno. */
static int
read_password_file(const char *path, char *pw, size_t cap, size_t *len)
{
	size_t got = 0;
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int rc = 0;

	if (fd < 0)
		return -errno;
	/* cap - 1 bytes at most, plus one more read to tell "too long" from "exactly". */
	while (got < cap) {
		n = read(fd, pw + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (n < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && got >= cap)
		rc = -E2BIG;
	if (rc == 0 && memchr(pw, '\0', got) != NULL)
		rc = -EINVAL;
	if (rc < 0)
		return rc;
	while (got > 0 && (pw[got - 1] == '\n' || pw[got - 1] == '\r'))
		got--;
	pw[got] = '\0';
	*len = got;
	return 0;
}

int
tl_grants_password_hash(
        const struct tl_route_user_def *u, char hex[TL_ROUTE_SHA256_HEX], char *msg, size_t msglen)
{
	char pw[TL_GRANTS_PASSWORD_MAX + 1];
	size_t len = 0;
	int sources, rc;

	if (msg != NULL && msglen > 0)
		msg[0] = '\0';
	if (u == NULL || hex == NULL)
		return -EINVAL;
	hex[0] = '\0';
	sources = (u->password_sha256[0] != '\0') + (u->password_file[0] != '\0') +
	          (u->password_env[0] != '\0');
	if (sources != 1) {
		say(msg, msglen, "routing user '%s': %s", u->name,
		        sources ? "set only one of password_sha256, password_file and password_env"
		                : "no password: set password_sha256, password_file or "
		                  "password_env");
		return TL_E_CONFIG;
	}
	if (u->password_sha256[0] != '\0') {
		size_t n = strnlen(u->password_sha256, sizeof(u->password_sha256));

		for (size_t i = 0; i < n; i++) {
			char c = u->password_sha256[i];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			            (c >= 'A' && c <= 'F')))
				n = 0;
		}
		if (n != 64) {
			say(msg, msglen, "routing user '%s': password_sha256 must be 64 hex digits",
			        u->name);
			return TL_E_CONFIG;
		}
		for (size_t i = 0; i < 64; i++) {
			char c = u->password_sha256[i];

			hex[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
		}
		hex[64] = '\0';
		return 0;
	}
	if (u->password_env[0] != '\0') {
		const char *v = getenv(u->password_env);

		if (v == NULL) {
			say(msg, msglen, "routing user '%s': password_env %s is not set", u->name,
			        u->password_env);
			return -ENOENT;
		}
		len = strlen(v);
		if (len > TL_GRANTS_PASSWORD_MAX) {
			say(msg, msglen,
			        "routing user '%s': the password in %s is longer than %d bytes",
			        u->name, u->password_env, TL_GRANTS_PASSWORD_MAX);
			return -E2BIG;
		}
		memcpy(pw, v, len + 1);
	} else {
		rc = read_password_file(u->password_file, pw, sizeof(pw), &len);
		if (rc < 0) {
			explicit_bzero(pw, sizeof(pw));
			say(msg, msglen, "routing user '%s': password_file %s: %s", u->name,
			        u->password_file,
			        rc == -E2BIG    ? "longer than 1023 bytes"
			        : rc == -EINVAL ? "contains a NUL byte"
			                        : strerror(-rc));
			return rc;
		}
	}
	if (len == 0) {
		say(msg, msglen, "routing user '%s': the password in %s %s is empty", u->name,
		        u->password_env[0] ? "password_env" : "password_file",
		        u->password_env[0] ? u->password_env : u->password_file);
		return -EINVAL;
	}
	rc = sha256_hex(pw, len, hex);
	explicit_bzero(pw, sizeof(pw));
	return rc;
}

/* ---- users ------------------------------------------------------------------------ */

/* Everything that reaches the output, checked again (see the top of the file). */
static int
check_user(const struct tl_route_user_def *u, char *err, size_t errlen)
{
	if (!tl_route_user_name_valid(u->name)) {
		say(err, errlen,
		        "routing user: invalid name (use 1 to 63 letters, digits or '_', "
		        "not starting with a digit, not default)");
		return TL_E_CONFIG;
	}
	if (u->n_databases == 0 || u->n_databases > TL_ROUTE_USER_MAX_DBS ||
	        u->n_networks > TL_ROUTE_MAX_NETWORKS) {
		say(err, errlen,
		        "routing user '%s': %u databases and %u networks (1 to %d, 0 to %d)",
		        u->name, u->n_databases, u->n_networks, TL_ROUTE_USER_MAX_DBS,
		        TL_ROUTE_MAX_NETWORKS);
		return TL_E_CONFIG;
	}
	for (uint32_t d = 0; d < u->n_databases; d++) {
		if (!tl_route_ident_valid(u->databases[d])) {
			say(err, errlen, "routing user '%s': database %u has an invalid name",
			        u->name, d + 1);
			return TL_E_CONFIG;
		}
	}
	for (uint32_t n = 0; n < u->n_networks; n++) {
		if (!tl_route_network_valid(u->networks[n])) {
			say(err, errlen,
			        "routing user '%s': network %u is not an IP address or CIDR "
			        "block",
			        u->name, n + 1);
			return TL_E_CONFIG;
		}
	}
	if (u->access < 0 || u->access >= TL_ROUTE_ACCESS_MAX) {
		say(err, errlen, "routing user '%s': access %d out of range", u->name, u->access);
		return TL_E_CONFIG;
	}
	return 0;
}

/*
 * @p net as <ip> text. An IPv4 block is written with a dotted mask ("10.0.0.0/255.0.0.0"):
 * ClickHouse 18.16 ignores the prefix length of an IPv4 CIDR block, so "10.0.0.0/8"
 * admits clients from anywhere (tenant_isolation.sh shows it), while the mask form is
 * honoured by 18.16 and by current releases alike. IPv6 blocks are fine as they are.
 */
static void
xml_network(char *buf, size_t len, const char *net)
{
	const char *slash = strchr(net, '/');
	unsigned long prefix;
	uint32_t mask;

	if (slash == NULL || strchr(net, ':') != NULL) {
		snprintf(buf, len, "%s", net);
		return;
	}
	prefix = strtoul(slash + 1, NULL, 10); /* 0..32: checked by check_user() */
	mask = prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
	snprintf(buf, len, "%.*s/%u.%u.%u.%u", (int)(slash - net), net, mask >> 24,
	        (mask >> 16) & 255, (mask >> 8) & 255, mask & 255);
}

static void
write_xml(FILE *out, const struct tl_route_conf *conf, char (*hash)[TL_ROUTE_SHA256_HEX])
{
	fputs("<?xml version=\"1.0\"?>\n"
	      "<!-- Generated by `tapline schema users` from the profile's routing.users: do not\n"
	      "     edit. Install as /etc/clickhouse-server/users.d/tapline-users.xml; the server\n"
	      "     (18.16 and later) re-reads it without a restart. -->\n"
	      "<yandex>\n"
	      "  <profiles>\n"
	      "    <" TL_GRANTS_PROFILE_READ ">\n"
	      "      <profile>default</profile>\n"
	      "      <readonly>1</readonly>\n"
	      "    </" TL_GRANTS_PROFILE_READ ">\n"
	      "    <" TL_GRANTS_PROFILE_WRITE ">\n"
	      "      <profile>default</profile>\n"
	      "      <allow_ddl>0</allow_ddl>\n"
	      "    </" TL_GRANTS_PROFILE_WRITE ">\n"
	      "  </profiles>\n"
	      "  <users>\n",
	        out);
	for (uint32_t i = 0; i < conf->n_users; i++) {
		const struct tl_route_user_def *u = &conf->users[i];

		fprintf(out, "    <%s>\n", u->name);
		fprintf(out, "      <password_sha256_hex>%s</password_sha256_hex>\n", hash[i]);
		fputs("      <networks>\n", out);
		for (uint32_t n = 0; n < u->n_networks; n++) {
			char ip[TL_ROUTE_NETWORK_MAX + 32];

			xml_network(ip, sizeof(ip), u->networks[n]);
			fprintf(out, "        <ip>%s</ip>\n", ip);
		}
		fputs("      </networks>\n", out);
		fprintf(out, "      <profile>%s</profile>\n",
		        u->access == TL_ROUTE_ACCESS_WRITE ? TL_GRANTS_PROFILE_WRITE
		                                           : TL_GRANTS_PROFILE_READ);
		fputs("      <quota>default</quota>\n", out);
		fputs("      <allow_databases>\n", out);
		for (uint32_t d = 0; d < u->n_databases; d++)
			fprintf(out, "        <database>%s</database>\n", u->databases[d]);
		fputs("      </allow_databases>\n", out);
		fprintf(out, "    </%s>\n", u->name);
	}
	fputs("  </users>\n"
	      "</yandex>\n",
	        out);
}

/* " HOST IP 'a', IP 'b'" or " HOST NONE" (a user with no network cannot log in). */
static void
write_hosts(FILE *out, const struct tl_route_user_def *u)
{
	if (u->n_networks == 0) {
		fputs(" HOST NONE", out);
		return;
	}
	fputs(" HOST", out);
	for (uint32_t n = 0; n < u->n_networks; n++)
		fprintf(out, "%s IP '%s'", n ? "," : "", u->networks[n]);
}

static void
write_sql(FILE *out, const struct tl_route_conf *conf, char (*hash)[TL_ROUTE_SHA256_HEX])
{
	fputs("-- Generated by `tapline schema users --format sql` from the profile's\n"
	      "-- routing.users, for ClickHouse with SQL access control (20.5 and later).\n"
	      "-- Re-running it brings passwords, networks and grants back to the profile:\n"
	      "-- grants the profile does not list are revoked.\n",
	        out);
	for (uint32_t i = 0; i < conf->n_users; i++) {
		const struct tl_route_user_def *u = &conf->users[i];
		const char *privs =
		        u->access == TL_ROUTE_ACCESS_WRITE ? "SELECT, INSERT" : "SELECT";

		fprintf(out, "\nCREATE USER IF NOT EXISTS `%s` IDENTIFIED WITH sha256_hash BY '%s'",
		        u->name, hash[i]);
		write_hosts(out, u);
		fputs(";\n", out);
		fprintf(out, "ALTER USER `%s` IDENTIFIED WITH sha256_hash BY '%s'", u->name,
		        hash[i]);
		write_hosts(out, u);
		fputs(";\n", out);
		fprintf(out, "REVOKE ALL ON *.* FROM `%s`;\n", u->name);
		for (uint32_t d = 0; d < u->n_databases; d++)
			fprintf(out, "GRANT %s ON `%s`.* TO `%s`;\n", privs, u->databases[d],
			        u->name);
	}
}

int
tl_grants_users(FILE *out, enum tl_grants_format fmt, const struct tl_route_conf *conf, char *err,
        size_t errlen)
{
	char(*hash)[TL_ROUTE_SHA256_HEX] = NULL;
	int rc = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || conf == NULL || (unsigned)fmt >= TL_GRANTS_FORMAT_MAX)
		return -EINVAL;
	if (conf->n_users > TL_ROUTE_MAX_USERS) {
		say(err, errlen, "routing: %u users, at most %d", conf->n_users,
		        TL_ROUTE_MAX_USERS);
		return TL_E_CONFIG;
	}
	hash = calloc(conf->n_users ? conf->n_users : 1, sizeof(*hash));
	if (hash == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < conf->n_users && rc == 0; i++) {
		rc = check_user(&conf->users[i], err, errlen);
		if (rc == 0)
			rc = tl_grants_password_hash(&conf->users[i], hash[i], err, errlen);
	}
	if (rc == 0) {
		if (fmt == TL_GRANTS_XML)
			write_xml(out, conf, hash);
		else
			write_sql(out, conf, hash);
		if (fflush(out) != 0 || ferror(out))
			rc = -EIO;
	}
	/* Hashes of passwords are not the passwords, but no reason to leave them around. */
	explicit_bzero(hash, (conf->n_users ? conf->n_users : 1) * sizeof(*hash));
	free(hash);
	return rc;
}

/* ---- DDL -------------------------------------------------------------------------- */

int
tl_grants_ddl(FILE *out, const struct tl_schema *schema, const struct tl_route_table *t)
{
	char *buf = NULL;
	uint32_t n_routes;
	bool first = true;
	int n = 0;

	if (out == NULL || schema == NULL || t == NULL)
		return -EINVAL;
	buf = malloc(DDL_MAX);
	if (buf == NULL) {
		n = -ENOMEM;
		goto out;
	}
	n_routes = tl_route_count(t);
	for (uint32_t r = 0; r < n_routes && n >= 0; r++) {
		const char *db = tl_route_database(t, r);
		bool seen = false;

		for (uint32_t k = 0; k < r && !seen; k++)
			seen = strcmp(tl_route_database(t, k), db) == 0;
		if (seen)
			continue; /* its tables were written with its first route */
		n = tl_ddl_create_database(db, buf, DDL_MAX);
		if (n < 0)
			break;
		fprintf(out, "%s%s;\n", first ? "" : "\n", buf);
		first = false;
		for (uint32_t k = r; k < n_routes && n >= 0; k++) {
			if (strcmp(tl_route_database(t, k), db) != 0)
				continue;
			n = tl_ddl_create_table_named(schema, TL_BATCH_SINK_OUTPUT, db,
			        tl_route_main_table(t, k), buf, DDL_MAX);
			if (n >= 0)
				fprintf(out, "\n%s;\n", buf);
		}
		for (unsigned tb = TL_BATCH_ERROR_EVENTS; tb < TL_BATCH_EVENT_TABLES && n >= 0; tb++) {
			n = tl_ddl_create_table(schema, (enum tl_batch_table)tb, db, buf, DDL_MAX);
			if (n >= 0)
				fprintf(out, "\n%s;\n", buf);
		}
	}
	if (n >= 0 && (fflush(out) != 0 || ferror(out)))
		n = -EIO;
out:
	free(buf);
	return n < 0 ? n : 0;
}
