/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The application's view of a profile: the root option table wiring every module's
 * section, and loading + compiling a profile in one step.
 */
#ifndef TL_APP_H
#define TL_APP_H

#include <stdio.h>

#include "tl_classify.h"
#include "tl_capture.h"
#include "tl_metrics.h"
#include "tl_pipeline.h"
#include "tl_route.h"
#include "tl_schema.h"
#include "tl_ch.h"
#include "tl_framed.h"
#include "tl_rawdedup.h"
#include "tl_rollup.h"
#include "tl_sink.h"
#include "tl_spool.h"

struct tl_app_config {
	char name[64];
	char description[512];
	struct tl_capture_conf capture;
	struct tl_pipeline_conf pipeline;
	struct tl_schema_def schema;
	char appliance_id[128];
	struct tl_batch_conf batch;
	struct tl_spool_conf spool;
	struct tl_uplink_conf uplink;
	struct tl_metrics_conf metrics;
	struct tl_classify_conf classify;
	struct tl_route_conf routing;
	struct tl_framed_conf framed;
	struct tl_rollup_conf rollup;
	struct tl_rawdedup_conf dedup;
};

extern const struct tl_opt tl_app_opts[];

/**
 * Load a profile (with its `extends:` chain) and compile its schema.
 * @param path   profile or site file.
 * @param cfg    out: the effective configuration (caller's storage).
 * @param schema out (may be NULL): the compiled schema, owned by the caller.
 * @param errs   where problems are reported (`file:line:column: message`).
 * @return 0; TL_E_CONFIG / TL_E_SCHEMA after reporting; -ENOMEM.
 */
int tl_app_load(const char *path, struct tl_app_config *cfg, struct tl_schema **schema,
		FILE *errs);

/** NULL-terminated profile search folders (TAPLINE_PROFILE_PATH, source tree, install). */
const char *const *tl_app_profile_dirs(void);

#endif
