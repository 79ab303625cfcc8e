/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>

#include "tl_cmd.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{"run", tl_cmd_run, "capture telemetry and run the pipeline"},
	{"config", tl_cmd_config, "check or show a profile (config check|show FILE)"},
	{"schema", tl_cmd_schema, "print the ClickHouse DDL of the profile's tables (schema ddl)"},
	{"spool", tl_cmd_spool, "inspect or drain the spool (spool stat|dump|replay)"},
	{"gen", tl_cmd_gen, "generate realistic telemetry: send over UDP or write pcap"},
	{"patterns", tl_cmd_patterns, "try a profile's error patterns on a log file (patterns test)"},
	{"bench", tl_cmd_bench, "measure extraction throughput (prints figure lines)"},
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: tapline <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'tapline <command> --help' describes a command's options.\n"
		   "exit codes: 0 success, 1 runtime failure, 2 usage or configuration error\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return TL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
			strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return TL_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("tapline %s\n", TL_VERSION);
		return TL_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "tapline: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return TL_EXIT_USAGE;
}
