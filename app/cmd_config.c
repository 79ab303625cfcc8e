/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tl_app.h"
#include "tl_cmd.h"
#include "tl_error.h"
#include "tl_route.h"

static void
config_usage(FILE *f)
{
	fprintf(f, "usage: tapline config check FILE   report every problem as file:line:column\n"
		   "       tapline config show FILE    print the effective configuration\n"
		   "                                   (after extends: inheritance and defaults)\n"
		   "       tapline config keys         every key: type, default, range, meaning\n"
		   "                                   (a Markdown table, from the option tables)\n");
}

static const char *const type_name[] = {
	[TL_OPT_BOOL] = "bool",
	[TL_OPT_UINT] = "uint",
	[TL_OPT_INT] = "int",
	[TL_OPT_SIZE] = "size",
	[TL_OPT_DURATION] = "duration",
	[TL_OPT_STRING] = "string",
	[TL_OPT_ENUM] = "enum",
	[TL_OPT_STRLIST] = "list of strings",
	[TL_OPT_SECTION] = "section",
	[TL_OPT_LIST] = "list of records",
};

/* A range bound in the largest unit that represents it exactly. */
static void
print_bound(enum tl_opt_type type, uint64_t v)
{
	static const struct {
		const char *unit;
		uint64_t mul;
	} dur[] = {{"h", 3600000000000ull}, {"m", 60000000000ull}, {"s", 1000000000ull},
		{"ms", 1000000ull}, {"us", 1000ull}, {"ns", 1}},
	  size[] = {{"TiB", 1ull << 40}, {"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1024},
		{"", 1}};
	const size_t n = type == TL_OPT_DURATION ? sizeof(dur) / sizeof(dur[0]) :
			 type == TL_OPT_SIZE ? sizeof(size) / sizeof(size[0]) : 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t mul = type == TL_OPT_DURATION ? dur[i].mul : size[i].mul;

		if (v && v % mul == 0) {
			printf("%llu%s", (unsigned long long)(v / mul),
					type == TL_OPT_DURATION ? dur[i].unit : size[i].unit);
			return;
		}
	}
	printf("%llu", (unsigned long long)v);
}

/* The reference is generated from the same tables the loader uses, so it cannot
 * drift from what the loader accepts. */
static void
print_keys(const struct tl_opt *t, const char *prefix)
{
	for (; t->name; t++) {
		char key[256];

		snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", t->name);
		printf("| `%s` | %s", key, type_name[t->type]);
		if (t->type == TL_OPT_ENUM) {
			printf(":");
			for (const char *const *e = t->enums; *e; e++)
				printf(" `%s`", *e);
		}
		printf(" | %s | ", t->def ? t->def : "");
		if (t->max && (t->type == TL_OPT_UINT || t->type == TL_OPT_SIZE ||
				t->type == TL_OPT_DURATION)) {
			print_bound(t->type, t->min);
			printf("..");
			print_bound(t->type, t->max);
		}
		if (t->max_items)
			printf("at most %u", t->max_items);
		printf(" | %s%s%s |\n", t->flags & TL_OPT_F_REQUIRED ? "**required.** " : "",
				t->flags & TL_OPT_F_SECRET ? "*secret.* " : "", t->desc ? t->desc : "");
		if (t->type == TL_OPT_SECTION)
			print_keys(t->sub, key);
		else if (t->type == TL_OPT_LIST) {
			char item[300];

			snprintf(item, sizeof(item), "%s[]", key);
			print_keys(t->sub, item);
		}
	}
}

/*
 * What loading alone does not catch: patterns that do not compile (Hyperscan) and routing
 * rules that do not build, each reported with its file:line, as `tapline run` would at
 * start. The pattern cache is neither read nor written.
 */
static int
check_compiled(const struct tl_app_config *cfg, const struct tl_schema *schema)
{
	static struct tl_classify_conf cc;
	struct tl_classify_db *db = NULL;
	struct tl_route_table *rt = NULL;
	char err[2048];
	int rc;

	cc = cfg->classify;
	cc.cache_dir[0] = '\0';
	rc = tl_classify_build(&cc, schema, &db, err, sizeof(err));
	if (rc == 0 && cfg->routing.n_rules > 0)
		rc = tl_route_build(&cfg->routing, cfg->uplink.database, schema, db, &rt, err,
				sizeof(err));
	if (rc != 0)
		fprintf(stderr, "%s\n", err);
	tl_route_table_free(rt);
	tl_classify_db_free(db);
	return rc < 0 ? rc : rc > 0 ? -EINVAL : 0;
}

int
tl_cmd_config(int argc, char **argv)
{
	static struct tl_app_config cfg;
	struct tl_schema *schema = NULL;
	int rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		config_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "keys") == 0) {
		printf("| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
		print_keys(tl_app_opts, "");
		return TL_EXIT_OK;
	}
	if (argc != 3 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "show") != 0)) {
		config_usage(stderr);
		return TL_EXIT_USAGE;
	}
	rc = tl_app_load(argv[2], &cfg, strcmp(argv[1], "check") == 0 ? &schema : NULL, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			fprintf(stderr, "%s: %s\n", argv[2], tl_strerror(rc));
		return TL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "check") == 0) {
		rc = check_compiled(&cfg, schema);
		tl_schema_free(schema);
		if (rc < 0)
			return TL_EXIT_USAGE;
		printf("%s: ok\n", argv[2]);
		return TL_EXIT_OK;
	}
	return tl_config_show(stdout, tl_app_opts, &cfg) < 0 ? TL_EXIT_FAIL : TL_EXIT_OK;
}
