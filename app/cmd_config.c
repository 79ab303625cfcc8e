/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>

#include "tl_app.h"
#include "tl_cmd.h"
#include "tl_error.h"

static void
config_usage(FILE *f)
{
	fprintf(f, "usage: tapline config check FILE   report every problem as file:line:column\n"
		   "       tapline config show FILE    print the effective configuration\n"
		   "                                   (after extends: inheritance and defaults)\n");
}

int
tl_cmd_config(int argc, char **argv)
{
	static struct tl_app_config cfg;
	int rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		config_usage(stdout);
		return TL_EXIT_OK;
	}
	if (argc != 3 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "show") != 0)) {
		config_usage(stderr);
		return TL_EXIT_USAGE;
	}
	rc = tl_app_load(argv[2], &cfg, NULL, stderr);
	if (rc < 0) {
		if (rc != TL_E_CONFIG && rc != TL_E_SCHEMA)
			fprintf(stderr, "%s: %s\n", argv[2], tl_strerror(rc));
		return TL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "check") == 0) {
		printf("%s: ok\n", argv[2]);
		return TL_EXIT_OK;
	}
	return tl_config_show(stdout, tl_app_opts, &cfg) < 0 ? TL_EXIT_FAIL : TL_EXIT_OK;
}
