/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tl_app.h"
#include "tl_error.h"

#ifndef TL_PROFILE_DIR
#define TL_PROFILE_DIR "config/profiles"
#endif
#ifndef TL_INSTALLED_PROFILE_DIR
#define TL_INSTALLED_PROFILE_DIR "/usr/share/tapline/profiles"
#endif

const struct tl_opt tl_app_opts[] = {
	{.name = "name", .type = TL_OPT_STRING, .offset = offsetof(struct tl_app_config, name),
		.size = sizeof(((struct tl_app_config *)0)->name), .desc = "profile name"},
	{.name = "description", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_app_config, description),
		.size = sizeof(((struct tl_app_config *)0)->description),
		.desc = "what this profile is for"},
	{.name = "capture", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, capture),
		.sub = tl_capture_opts, .check = tl_capture_check,
		.desc = "packet capture: driver, ports, workers"},
	{.name = "pipeline", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, pipeline), .sub = tl_pipeline_opts,
		.desc = "decode, reassembly and extraction limits"},
	{.name = "schema", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, schema),
		.sub = tl_schema_opts, .check = tl_schema_check,
		.desc = "event schema: JSON paths to typed columns"},
	{.name = "appliance_id", .type = TL_OPT_STRING,
		.offset = offsetof(struct tl_app_config, appliance_id),
		.size = sizeof(((struct tl_app_config *)0)->appliance_id),
		.desc = "written into every row (empty: the host name)"},
	{.name = "batch", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, batch),
		.sub = tl_batch_opts, .desc = "how workers group rows into spooled batches"},
	{.name = "spool", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, spool),
		.sub = tl_spool_opts, .check = tl_spool_check,
		.desc = "durable LMDB spool between the pipeline and the uplink"},
	{.name = "uplink", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, uplink),
		.sub = tl_uplink_opts, .check = tl_uplink_check,
		.desc = "ClickHouse over HTTP(S): where the spooled batches go"},
	{.name = "metrics", .type = TL_OPT_SECTION, .offset = offsetof(struct tl_app_config, metrics),
		.sub = tl_metrics_opts, .check = tl_metrics_check,
		.desc = "Prometheus /metrics and /healthz on a loopback port"},
	{.name = "classify", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, classify), .sub = tl_classify_opts,
		.desc = "error patterns compiled into one Hyperscan database"},
	{.name = "routing", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, routing), .sub = tl_route_opts,
		.desc = "rules choosing each event's database (tenants), and their ClickHouse users"},
	{.name = "framed", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, framed), .sub = tl_framed_opts,
		.check = tl_framed_check,
		.desc = "acknowledged framed protocol: keys, dedup windows, ACK timing"},
	{.name = "dedup", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, dedup), .sub = tl_rawdedup_opts,
		.check = tl_rawdedup_check,
		.desc = "raw-mode deduplication by event id, kept across restarts"},
	{.name = "rollup", .type = TL_OPT_SECTION,
		.offset = offsetof(struct tl_app_config, rollup), .sub = tl_rollup_opts,
		.check = tl_rollup_check,
		.desc = "watermarks, late flags and edge rollups (count, errors, durations) per "
			"window, event type and database"},
	{.name = NULL},
};

const char *const *
tl_app_profile_dirs(void)
{
	static const char *dirs[4];
	int n = 0;
	const char *env = getenv("TAPLINE_PROFILE_PATH");

	if (env && env[0])
		dirs[n++] = env;
	dirs[n++] = TL_PROFILE_DIR;
	dirs[n++] = TL_INSTALLED_PROFILE_DIR;
	dirs[n] = NULL;
	return dirs;
}

int
tl_app_load(const char *path, struct tl_app_config *cfg, struct tl_schema **schema, FILE *errs)
{
	struct tl_schema *s = NULL;
	unsigned n_err = 0;
	char msg[512];
	int rc;

	if (schema)
		*schema = NULL;
	memset(cfg, 0, sizeof(*cfg));
	rc = tl_config_load(path, tl_app_opts, cfg, tl_app_profile_dirs(), errs, &n_err);
	if (rc < 0)
		return rc;
	/* The schema's cross-field rules (path prefixes, special columns) are checked by
	 * compiling it, so `config check` finds every problem `run` would. */
	msg[0] = '\0';
	rc = tl_schema_compile(&cfg->schema, &cfg->pipeline.limits, &s, msg, sizeof(msg));
	if (rc < 0) {
		fprintf(errs ? errs : stderr, "%s: schema: %s\n", path, msg[0] ? msg : tl_strerror(rc));
		return rc;
	}
	if (schema)
		*schema = s;
	else
		tl_schema_free(s);
	return 0;
}
