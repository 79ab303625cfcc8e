/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * A real ClickHouse server for tests: started on loopback in a private folder through
 * scripts/clickhouse.sh (the same script the demo and benches use), stopped and removed
 * by the test. Header-only; tests include it from tests/common.
 *
 * Needs $TAPLINE_SRC (set by meson) to find the script, and clickhouse-server installed
 * (scripts/setup.sh installs it). Tests that cannot start one should skip (exit 77).
 */
#ifndef TL_TEST_CLICKHOUSE_H
#define TL_TEST_CLICKHOUSE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tl_test_ch {
	char dir[256];  /**< data, config and logs */
	char url[128];  /**< e.g. "http://127.0.0.1:23456/" */
};

static inline int
tl_test_ch_run_script(const struct tl_test_ch *ch, const char *verb, char *out, size_t cap)
{
	const char *src = getenv("TAPLINE_SRC");
	char cmd[1024];
	FILE *p;
	int rc;

	snprintf(cmd, sizeof(cmd), "'%s/scripts/clickhouse.sh' %s '%s'", src && *src ? src : ".",
			verb, ch->dir);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	if (out && cap) {
		out[0] = '\0';
		if (fgets(out, (int)cap, p))
			out[strcspn(out, "\n")] = '\0';
	}
	rc = pclose(p);
	return rc == 0 ? 0 : -1;
}

/** Start a server in a new temporary folder. @return 0, or -1 (see its log in dir). */
static inline int
tl_test_ch_start(struct tl_test_ch *ch)
{
	snprintf(ch->dir, sizeof(ch->dir), "/tmp/tapline-ch.XXXXXX");
	if (mkdtemp(ch->dir) == NULL)
		return -1;
	return tl_test_ch_run_script(ch, "start", ch->url, sizeof(ch->url));
}

/**
 * Start a server in a new temporary folder with @p users_xml as its users.xml (the
 * script keeps a users.xml it finds), e.g. to add users with passwords.
 * @return 0, or -1.
 */
static inline int
tl_test_ch_start_users(struct tl_test_ch *ch, const char *users_xml)
{
	char path[320];
	FILE *f;
	int ok;

	snprintf(ch->dir, sizeof(ch->dir), "/tmp/tapline-ch.XXXXXX");
	if (mkdtemp(ch->dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/users.xml", ch->dir);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	ok = fputs(users_xml, f) >= 0;
	if (fclose(f) != 0 || !ok)
		return -1;
	return tl_test_ch_run_script(ch, "start", ch->url, sizeof(ch->url));
}

/** Start the server again on the same folder and port (after tl_test_ch_stop). */
static inline int
tl_test_ch_restart(struct tl_test_ch *ch)
{
	return tl_test_ch_run_script(ch, "start", ch->url, sizeof(ch->url));
}

/** Stop the server; data stays. */
static inline int
tl_test_ch_stop(struct tl_test_ch *ch)
{
	return tl_test_ch_run_script(ch, "stop", NULL, 0);
}

/** Stop the server and remove its folder. */
static inline void
tl_test_ch_destroy(struct tl_test_ch *ch)
{
	char cmd[400];

	if (ch->dir[0] == '\0')
		return;
	tl_test_ch_stop(ch);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ch->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", ch->dir);
	ch->dir[0] = '\0';
}

#endif
