/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Subcommands of the `tapline` binary. Each takes the argv that follows the
 * subcommand's name (argv[0] is the subcommand) and returns the process exit code:
 * 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#ifndef TL_CMD_H
#define TL_CMD_H

#define TL_EXIT_OK 0
#define TL_EXIT_FAIL 1
#define TL_EXIT_USAGE 2

/** `tapline gen`: load generator / reference producer (app/cmd_gen.c). */
int tl_cmd_gen(int argc, char **argv);

/** `tapline run`: capture, parse, count (app/cmd_run.c). */
int tl_cmd_run(int argc, char **argv);

/** `tapline config check|show FILE` (app/cmd_config.c). */
int tl_cmd_config(int argc, char **argv);

/** `tapline schema ddl`: the ClickHouse DDL of the profile's tables (app/cmd_schema.c). */
int tl_cmd_schema(int argc, char **argv);

/** `tapline spool stat|dump|replay`: inspect and drain the LMDB spool (app/cmd_spool.c). */
int tl_cmd_spool(int argc, char **argv);

/** `tapline patterns test PROFILE FILE`: a profile's error patterns over a log file
 * (app/cmd_patterns.c). */
int tl_cmd_patterns(int argc, char **argv);

/** `tapline bench`: throughput figures (app/cmd_bench.c). */
int tl_cmd_bench(int argc, char **argv);

#endif
