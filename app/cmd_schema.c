/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline schema ddl`: the ClickHouse DDL of every table, from a profile. The output is
 * what the uplink applies at start (create if missing), as `;`-terminated statements
 * that `clickhouse-client --multiquery` accepts: the default database's tables, then
 * those of every database the profile's routing rules send events to.
 *
 * `tapline schema users`: the ClickHouse users and grants of `routing.users`, as a users.d
 * XML file (ClickHouse 18.16) or SQL (current releases).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tl_app.h"
#include "tl_batch.h"
#include "tl_cmd.h"
#include "tl_ddl.h"
#include "tl_error.h"
#include "tl_grants.h"
#include "tl_route.h"

/* Room for every routing problem of a profile. */
#define ROUTE_ERR_MAX (64 * 1024)

static void
schema_usage(FILE *f)
{
	fprintf(f,
	        "usage: tapline schema ddl --config PROFILE [--database DB]\n"
	        "       tapline schema users --config PROFILE [--database DB] [--format FMT]\n"
	        "\n"
	        "ddl: print the ClickHouse DDL of tapline's tables (sink_output, error_events,\n"
	        "dead_letter) for the profile's schema, in the default database and in every\n"
	        "database the profile's routing rules send events to: CREATE DATABASE and\n"
	        "CREATE TABLE statements, each ending with ';' (clickhouse-client --multiquery\n"
	        "reads them).\n"
	        "\n"
	        "users: print the ClickHouse users of the profile's routing.users with access to\n"
	        "their databases only: a users.d file for ClickHouse 18.16 (xml, the default;\n"
	        "install it as /etc/clickhouse-server/users.d/tapline-users.xml) or SQL for\n"
	        "releases with SQL access control (sql). Passwords from password_file or\n"
	        "password_env are read and hashed now; only SHA-256 hashes are printed.\n"
	        "\n"
	        "  -c, --config FILE     profile or site file (required)\n"
	        "  -d, --database DB     database of the default route (default: the\n"
	        "                        profile's uplink.database)\n"
	        "  -f, --format FORMAT   users: xml or sql (default xml)\n"
	        "  -h, --help            this text\n"
	        "\n"
	        "Exit codes: 0 ok, 1 runtime failure (a password source cannot be read), 2 usage\n"
	        "or configuration error.\n");
}

/* Does a routing rule of @p cfg name a classify pattern? */
static bool
needs_classify(const struct tl_app_config *cfg)
{
	for (uint32_t i = 0; i < cfg->routing.n_rules; i++)
		if (cfg->routing.rules[i].pattern[0] != '\0')
			return true;
	return false;
}

/*
 * The routing table of @p cfg (default route: @p db), with the classify database its
 * pattern rules need, compiled without the on-disk cache (printing DDL must not write
 * to /var/lib). @return an exit code; problems are reported on stderr.
 */
static int
build_routes(const struct tl_app_config *cfg, const struct tl_schema *schema, const char *db,
        struct tl_route_table **out)
{
	struct tl_classify_conf *cc = NULL;
	struct tl_classify_db *cdb = NULL;
	char *err = malloc(ROUTE_ERR_MAX);
	int rc, ex = TL_EXIT_FAIL;

	if (err == NULL)
		goto nomem;
	if (needs_classify(cfg)) {
		cc = malloc(sizeof(*cc));
		if (cc == NULL)
			goto nomem;
		memcpy(cc, &cfg->classify, sizeof(*cc));
		cc->cache_dir[0] = '\0';
		rc = tl_classify_build(cc, schema, &cdb, err, ROUTE_ERR_MAX);
		if (rc < 0) {
			fprintf(stderr, "%s\n", rc == TL_E_CONFIG ? err : tl_strerror(rc));
			ex = rc == TL_E_CONFIG ? TL_EXIT_USAGE : TL_EXIT_FAIL;
			goto out;
		}
	}
	rc = tl_route_build(&cfg->routing, db, schema, cdb, out, err, ROUTE_ERR_MAX);
	if (rc < 0) {
		fprintf(stderr, "%s\n", rc == TL_E_CONFIG ? err : tl_strerror(rc));
		ex = rc == TL_E_CONFIG ? TL_EXIT_USAGE : TL_EXIT_FAIL;
		goto out;
	}
	ex = TL_EXIT_OK;
	goto out;
nomem:
	fprintf(stderr, "tapline schema: out of memory\n");
out:
	tl_classify_db_free(cdb);
	free(cc);
	free(err);
	return ex;
}

static int
print_ddl(const struct tl_schema *schema, const struct tl_route_table *routes)
{
	int n = tl_grants_ddl(stdout, schema, routes);

	if (n == TL_E_SCHEMA) {
		fprintf(stderr, "tapline schema: a profile column's name collides with one of "
		                "tapline's columns (or a datetime column's _ns companion)\n");
		return TL_EXIT_USAGE;
	}
	if (n < 0) {
		fprintf(stderr, "tapline schema: %s\n", tl_strerror(n));
		return TL_EXIT_FAIL;
	}
	return TL_EXIT_OK;
}

/*
 * The error_patterns dimension table of the default database, as `tapline run` writes it
 * at start (rows with loaded_at = now).
 */
static int
print_patterns(const struct tl_app_config *cfg, const struct tl_schema *schema, const char *db)
{
	struct tl_classify_conf *cc = malloc(sizeof(*cc));
	struct tl_classify_db *cdb = NULL;
	char *err = malloc(ROUTE_ERR_MAX), **sql = NULL;
	unsigned n = 0;
	int rc = -ENOMEM;

	if (cc != NULL && err != NULL) {
		memcpy(cc, &cfg->classify, sizeof(*cc));
		cc->cache_dir[0] = '\0';
		rc = tl_classify_build(cc, schema, &cdb, err, ROUTE_ERR_MAX);
		if (rc == TL_E_CONFIG)
			fprintf(stderr, "%s\n", err);
	}
	if (rc == 0)
		rc = tl_ddl_patterns(db, cdb, cfg->name, (uint32_t)time(NULL), &sql, &n);
	for (unsigned i = 0; rc == 0 && i < n; i++)
		printf("%s;\n", sql[i]);
	if (rc < 0 && rc != TL_E_CONFIG)
		fprintf(stderr, "tapline schema: error_patterns: %s\n", tl_strerror(rc));
	tl_ddl_stmts_free(sql, n);
	tl_classify_db_free(cdb);
	free(cc);
	free(err);
	return rc == 0 ? TL_EXIT_OK : rc == TL_E_CONFIG ? TL_EXIT_USAGE : TL_EXIT_FAIL;
}

static int
print_users(const struct tl_app_config *cfg, enum tl_grants_format fmt)
{
	char err[1024];
	int rc = tl_grants_users(stdout, fmt, &cfg->routing, err, sizeof(err));

	if (rc == 0)
		return TL_EXIT_OK;
	fprintf(stderr, "tapline schema users: %s\n", err[0] ? err : tl_strerror(rc));
	return rc == TL_E_CONFIG ? TL_EXIT_USAGE : TL_EXIT_FAIL;
}

int
tl_cmd_schema(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"database", required_argument, NULL, 'd'},
	        {"format", required_argument, NULL, 'f'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static struct tl_app_config cfg;
	struct tl_schema *schema = NULL;
	struct tl_route_table *routes = NULL;
	const char *config = NULL, *db = NULL, *format = NULL;
	enum tl_grants_format fmt = TL_GRANTS_XML;
	bool users;
	int c, rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		schema_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc < 2 || (strcmp(argv[1], "ddl") != 0 && strcmp(argv[1], "users") != 0)) {
		schema_usage(stderr);
		return TL_EXIT_USAGE;
	}
	users = strcmp(argv[1], "users") == 0;
	/* Options follow the verb: parse argv[1..] with the verb as the program name. */
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "c:d:f:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			db = optarg;
			break;
		case 'f':
			format = optarg;
			break;
		case 'h':
			schema_usage(stdout);
			return TL_EXIT_OK;
		default:
			schema_usage(stderr);
			return TL_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || config == NULL) {
		fprintf(stderr, "tapline schema %s: %s\n", argv[1],
		        config ? "unexpected argument" : "--config is required");
		schema_usage(stderr);
		return TL_EXIT_USAGE;
	}
	if (format != NULL) {
		if (!users) {
			fprintf(stderr,
			        "tapline schema ddl: --format is an option of schema users\n");
			return TL_EXIT_USAGE;
		}
		for (fmt = 0; fmt < TL_GRANTS_FORMAT_MAX; fmt++)
			if (strcmp(format, tl_grants_format_names[fmt]) == 0)
				break;
		if (fmt == TL_GRANTS_FORMAT_MAX) {
			fprintf(stderr, "tapline schema users: --format '%s': use xml or sql\n",
			        format);
			return TL_EXIT_USAGE;
		}
	}
	if (db != NULL && !tl_route_ident_valid(db)) {
		fprintf(stderr,
		        "tapline schema %s: --database '%s': use 1-%d letters, digits or '_', "
		        "not starting with a digit\n",
		        argv[1], db, TL_ROUTE_IDENT_MAX - 1);
		return TL_EXIT_USAGE;
	}
	rc = tl_app_load(config, &cfg, &schema, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			fprintf(stderr, "%s: %s\n", config, tl_strerror(rc));
		return rc == -ENOMEM ? TL_EXIT_FAIL : TL_EXIT_USAGE;
	}
	if (db == NULL)
		db = cfg.uplink.database;
	if (!tl_route_ident_valid(db)) {
		fprintf(stderr, "%s: uplink.database '%s' is not a valid database name\n", config,
		        db);
		tl_schema_free(schema);
		return TL_EXIT_USAGE;
	}
	rc = build_routes(&cfg, schema, db, &routes);
	if (rc == TL_EXIT_OK)
		rc = users ? print_users(&cfg, fmt) : print_ddl(schema, routes);
	if (rc == TL_EXIT_OK && !users)
		rc = print_patterns(&cfg, schema, db);
	tl_route_table_free(routes);
	tl_schema_free(schema);
	return rc;
}
