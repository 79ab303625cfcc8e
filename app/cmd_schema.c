/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline schema ddl`: the ClickHouse DDL of every table, from a profile. The output is
 * what the uplink applies at start (create if missing), as `;`-terminated statements
 * that `clickhouse-client --multiquery` accepts.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_app.h"
#include "tl_batch.h"
#include "tl_cmd.h"
#include "tl_ddl.h"
#include "tl_error.h"

#define DEFAULT_DATABASE "telemetry"
/* 137 columns of at most ~100 bytes each fit easily. */
#define DDL_MAX (64 * 1024)

static void
schema_usage(FILE *f)
{
	fprintf(f, "usage: tapline schema ddl --config PROFILE [--database DB]\n"
	           "\n"
	           "Print the ClickHouse DDL of tapline's tables (sink_output, error_events,\n"
	           "dead_letter) for the profile's schema: CREATE DATABASE and CREATE TABLE\n"
	           "statements, each ending with ';' (clickhouse-client --multiquery reads them).\n"
	           "\n"
	           "  -c, --config FILE     profile or site file (required)\n"
	           "  -d, --database DB     database name (default " DEFAULT_DATABASE ")\n"
	           "  -h, --help            this text\n"
	           "\n"
	           "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n");
}

static int
print_ddl(const struct tl_schema *schema, const char *db)
{
	char *buf = malloc(DDL_MAX);
	int n;

	if (buf == NULL) {
		fprintf(stderr, "tapline schema: out of memory\n");
		return TL_EXIT_FAIL;
	}
	n = tl_ddl_create_database(db, buf, DDL_MAX);
	if (n >= 0)
		printf("%s;\n", buf);
	for (unsigned t = 0; n >= 0 && t < TL_BATCH_TABLE_MAX; t++) {
		n = tl_ddl_create_table(schema, (enum tl_batch_table)t, db, buf, DDL_MAX);
		if (n >= 0)
			printf("\n%s;\n", buf);
	}
	free(buf);
	if (n == TL_E_SCHEMA) {
		fprintf(stderr, "tapline schema: a profile column's name collides with one of "
		                "tapline's columns (or a datetime column's _ns companion)\n");
		return TL_EXIT_USAGE;
	}
	if (n < 0) {
		fprintf(stderr, "tapline schema: %s\n", tl_strerror(n));
		return TL_EXIT_FAIL;
	}
	return fflush(stdout) == 0 ? TL_EXIT_OK : TL_EXIT_FAIL;
}

int
tl_cmd_schema(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"database", required_argument, NULL, 'd'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	static struct tl_app_config cfg;
	struct tl_schema *schema = NULL;
	const char *config = NULL, *db = DEFAULT_DATABASE;
	int c, rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		schema_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc < 2 || strcmp(argv[1], "ddl") != 0) {
		schema_usage(stderr);
		return TL_EXIT_USAGE;
	}
	/* Options follow "ddl": parse argv[1..] with "ddl" as the program name. */
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "c:d:h", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			db = optarg;
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
		fprintf(stderr, "tapline schema ddl: %s\n",
		        config ? "unexpected argument" : "--config is required");
		schema_usage(stderr);
		return TL_EXIT_USAGE;
	}
	if (!tl_ddl_ident_valid(db)) {
		fprintf(stderr,
		        "tapline schema ddl: --database '%s': use 1-%d letters, digits or '_', "
		        "not starting with a digit\n",
		        db, TL_DDL_IDENT_MAX);
		return TL_EXIT_USAGE;
	}
	rc = tl_app_load(config, &cfg, &schema, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			fprintf(stderr, "%s: %s\n", config, tl_strerror(rc));
		return rc == -ENOMEM ? TL_EXIT_FAIL : TL_EXIT_USAGE;
	}
	rc = print_ddl(schema, db);
	tl_schema_free(schema);
	return rc;
}
