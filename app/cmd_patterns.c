/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * `tapline patterns test PROFILE FILE [--lines]`: run a profile's classification patterns
 * over a log file, one line = one `error` value, so a profile can be tried (and scored)
 * without capturing anything.
 *
 * Each line becomes an event with only the schema's error column set (a string, the line
 * as it is: no JSON escaping is applied, so a pattern written for an escaped form such as
 * `\"` sees the bare character here) and `raw` set to the line; every other field is
 * absent. The same tl_classify_event() the workers run classifies it.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_app.h"
#include "tl_classify.h"
#include "tl_cmd.h"
#include "tl_error.h"

static void
patterns_usage(FILE *f)
{
	fprintf(f,
	        "usage: tapline patterns test PROFILE FILE [--lines] [--no-cache]\n"
	        "\n"
	        "Classify every line of FILE ('-' for standard input) as the `error` value of\n"
	        "an event with the patterns of PROFILE (its classify: section).\n"
	        "\n"
	        "Default output: one line per pattern, '<id> <count>' (lines it matched, in\n"
	        "profile order), then '# unmatched <n> of <total> lines' and each line that\n"
	        "matched no pattern as '<line number><TAB><line>'.\n"
	        "\n"
	        "  --lines      instead, one line per input line:\n"
	        "               '<line number><TAB><ids comma-separated, or -><TAB><error|tag|->'\n"
	        "               (error: some matched pattern has effect error; tag: only tag\n"
	        "               patterns matched; -: none matched)\n"
	        "  --no-cache   compile the patterns without using classify.cache_dir\n"
	        "  -h, --help   this text\n"
	        "\n"
	        "Exit codes: 0 ok (whatever matched), 1 runtime failure, 2 usage or profile "
	        "error.\n");
}

struct run {
	const struct tl_classify_db *db;
	struct tl_classify_scratch *scratch;
	const struct tl_schema *schema;
	bool lines;
	uint64_t *count;      /* [patterns]: lines each pattern matched */
	uint64_t n_lines;     /* lines read */
	uint64_t n_unmatched; /* lines no pattern matched */
	FILE *unmatched;      /* default mode: the unmatched lines, printed after the counts */
	char *unmatched_buf;
	size_t unmatched_len;
};

static int
classify_line(struct run *r, const char *line, size_t len)
{
	static struct tl_event ev;
	struct tl_classify_result res;
	int err_col = tl_schema_error_col(r->schema);

	memset(&ev, 0, sizeof(ev));
	ev.raw = (const uint8_t *)line;
	ev.raw_len = (uint32_t)len;
	ev.col[err_col].kind = TL_VAL_STRING;
	ev.col[err_col].ptr = (const uint8_t *)line;
	ev.col[err_col].len = (uint32_t)len;
	ev.is_error = len > 0;
	tl_classify_event(r->db, r->scratch, &ev, &res);
	if (res.scan_failed) {
		fprintf(stderr, "tapline patterns: line %llu: the scan failed\n",
		        (unsigned long long)r->n_lines);
		return -EIO;
	}
	for (unsigned i = 0; i < res.n; i++)
		r->count[res.ids[i]]++;
	if (r->lines) {
		printf("%llu\t", (unsigned long long)r->n_lines);
		if (res.n == 0)
			fputc('-', stdout);
		for (unsigned i = 0; i < res.n; i++)
			printf("%s%s", i ? "," : "", tl_classify_db_pattern(r->db, res.ids[i])->id);
		printf("\t%s\n", res.n == 0 ? "-" : res.error ? "error" : "tag");
		return 0;
	}
	if (res.n == 0) {
		r->n_unmatched++;
		fprintf(r->unmatched, "%llu\t%.*s\n", (unsigned long long)r->n_lines, (int)len,
		        line);
	}
	return 0;
}

static int
run_file(struct run *r, const char *path)
{
	FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (in == NULL) {
		rc = -errno;
		fprintf(stderr, "tapline patterns: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	while ((n = getline(&line, &cap, in)) >= 0) {
		size_t len = (size_t)n;

		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		r->n_lines++;
		if (len > UINT32_MAX) {
			fprintf(stderr, "tapline patterns: %s:%llu: line too long\n", path,
			        (unsigned long long)r->n_lines);
			rc = -EFBIG;
			break;
		}
		rc = classify_line(r, line, len);
		if (rc < 0)
			break;
	}
	if (rc == 0 && ferror(in)) {
		rc = -EIO;
		fprintf(stderr, "tapline patterns: %s: read error\n", path);
	}
	free(line);
	if (in != stdin)
		fclose(in);
	return rc;
}

static int
patterns_test(const char *profile, const char *file, bool lines, bool no_cache)
{
	static struct tl_app_config cfg;
	struct run r = {.lines = lines};
	struct tl_schema *schema = NULL;
	struct tl_classify_db *db = NULL;
	char err[16384];
	int rc, exit_code = TL_EXIT_FAIL;

	rc = tl_app_load(profile, &cfg, &schema, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			fprintf(stderr, "%s: %s\n", profile, tl_strerror(rc));
		return TL_EXIT_USAGE;
	}
	if (no_cache)
		cfg.classify.cache_dir[0] = '\0';
	rc = tl_classify_build(&cfg.classify, schema, &db, err, sizeof(err));
	if (rc < 0) {
		if (err[0] != '\0')
			fprintf(stderr, "%s\n", err);
		else
			fprintf(stderr, "%s: classify: %s\n", profile, tl_strerror(rc));
		exit_code = rc == TL_E_CONFIG ? TL_EXIT_USAGE : TL_EXIT_FAIL;
		goto out;
	}
	if (tl_classify_db_count(db) == 0)
		fprintf(stderr, "tapline patterns: %s has no classify patterns\n", profile);
	rc = tl_classify_scratch_alloc(db, &r.scratch);
	if (rc < 0) {
		fprintf(stderr, "tapline patterns: %s\n", tl_strerror(rc));
		goto out;
	}
	r.db = db;
	r.schema = schema;
	r.count = calloc(tl_classify_db_count(db) + 1, sizeof(*r.count));
	if (!lines)
		r.unmatched = open_memstream(&r.unmatched_buf, &r.unmatched_len);
	if (r.count == NULL || (!lines && r.unmatched == NULL)) {
		fprintf(stderr, "tapline patterns: out of memory\n");
		goto out;
	}
	if (run_file(&r, file) < 0)
		goto out;
	if (!lines) {
		if (fclose(r.unmatched) != 0) {
			r.unmatched = NULL;
			fprintf(stderr, "tapline patterns: out of memory\n");
			goto out;
		}
		r.unmatched = NULL;
		for (uint32_t i = 0; i < tl_classify_db_count(db); i++)
			printf("%s %llu\n", tl_classify_db_pattern(db, i)->id,
			        (unsigned long long)r.count[i]);
		printf("# unmatched %llu of %llu lines\n", (unsigned long long)r.n_unmatched,
		        (unsigned long long)r.n_lines);
		fwrite(r.unmatched_buf, 1, r.unmatched_len, stdout);
	}
	exit_code = fflush(stdout) == 0 && !ferror(stdout) ? TL_EXIT_OK : TL_EXIT_FAIL;
out:
	if (r.unmatched != NULL)
		fclose(r.unmatched);
	free(r.unmatched_buf);
	free(r.count);
	tl_classify_scratch_free(r.scratch);
	tl_classify_db_free(db);
	tl_schema_free(schema);
	return exit_code;
}

int
tl_cmd_patterns(int argc, char **argv)
{
	static const struct option lo[] = {
	        {"lines", no_argument, NULL, 'l'},
	        {"no-cache", no_argument, NULL, 'N'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	bool lines = false, no_cache = false;
	int c;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		patterns_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc < 2 || strcmp(argv[1], "test") != 0) {
		patterns_usage(stderr);
		return TL_EXIT_USAGE;
	}
	/* Options may come anywhere after `test`. */
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			lines = true;
			break;
		case 'N':
			no_cache = true;
			break;
		case 'h':
			patterns_usage(stdout);
			return TL_EXIT_OK;
		default:
			patterns_usage(stderr);
			return TL_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		patterns_usage(stderr);
		return TL_EXIT_USAGE;
	}
	return patterns_test(argv[optind], argv[optind + 1], lines, no_cache);
}
