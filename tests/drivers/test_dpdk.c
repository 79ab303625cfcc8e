/* SPDX-License-Identifier: BSD-3-Clause */
/* The DPDK capture driver against real virtual devices (--no-huge). The EAL can be
 * initialised once per process, so every case runs in a child process and reports
 * through its exit status. Needs root for the EAL; skipped (77) otherwise. */
#include <errno.h>
#include <pcap/pcap.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_cksum.h"
#include "tl_dpdk.h"
#include "tl_error.h"
#include "tl_pipeline.h"
#include "tl_test_schema.h"

static char tmpdir[] = "/tmp/tapline-test-dpdk.XXXXXX";
static struct tl_schema *schema;
static struct tl_pipeline_conf pconf;

#define N_FRAMES 500

static void
base_conf(struct tl_dpdk_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->no_huge = true;
	c->memory = 256ull << 20;
	c->mbufs = 2047;
	c->mbuf_cache = 64;
	c->rx_desc = 512;
	c->burst = 32;
	c->tick = 1000000;
	snprintf(c->log_level, sizeof(c->log_level), "error");
}

/* base_conf() with one virtual device, its devargs formatted from @p fmt. */
static void __attribute__((format(printf, 2, 3)))
vdev_conf(struct tl_dpdk_conf *c, const char *fmt, ...)
{
	va_list ap;

	base_conf(c);
	va_start(ap, fmt);
	vsnprintf(c->vdevs[0], sizeof(c->vdevs[0]), fmt, ap);
	va_end(ap);
	c->n_vdevs = 1;
}

/* Run @p fn in a child; return its exit status (or 128 + signal). */
static int
in_child(int (*fn)(void *), void *arg)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(fn(arg));
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void
wr16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* N_FRAMES IPv4/UDP frames to port 5170, one valid event each. */
static void
write_capture(const char *path)
{
	pcap_t *p = pcap_open_dead(DLT_EN10MB, 65535);
	pcap_dumper_t *d = pcap_dump_open(p, path);

	assert_non_null(d);
	for (int i = 0; i < N_FRAMES; i++) {
		uint8_t f[512];
		struct pcap_pkthdr h;
		int n = snprintf((char *)f + 42, sizeof(f) - 42,
				"{\"query_id\":\"q%d\",\"timestamp\":\"2026-11-21T05:00:00Z\"}", i);
		uint16_t ck;

		memset(f, 0, 42);
		wr16(f + 12, 0x0800);
		f[14] = 0x45;
		wr16(f + 16, 28 + (uint32_t)n);
		f[22] = 64;
		f[23] = 17;
		memcpy(f + 26, "\xc6\x12\x01\x01\xc6\x12\x00\x01", 8);
		ck = tl_cksum(f + 14, 20);
		memcpy(f + 24, &ck, 2);
		wr16(f + 34, 40000);
		wr16(f + 36, 5170);
		wr16(f + 38, 8 + (uint32_t)n); /* UDP checksum 0: none, allowed over IPv4 */
		memset(&h, 0, sizeof(h));
		h.caplen = h.len = 42 + (uint32_t)n;
		pcap_dump((u_char *)d, &h, f);
	}
	pcap_dump_close(d);
	pcap_close(p);
}

/* vdev_conf() with a net_pcap port that replays a fresh capture @p name in tmpdir. */
static void
pcap_conf(struct tl_dpdk_conf *c, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	write_capture(path);
	vdev_conf(c, "net_pcap0,rx_pcap=%s", path);
}

/* --- children --- */

/* Open @p c with @p n_queues and close it again; the result as an exit status: 0 opened,
 * 10 TL_E_NODEV, 11 -EINVAL, 12 TL_E_NOHUGE, 1 anything else. */
static int
open_status(const struct tl_dpdk_conf *c, unsigned n_queues)
{
	struct tl_dpdk *d = NULL;
	int rc = tl_dpdk_open(c, n_queues, "test", &d);

	tl_dpdk_close(d);
	return rc == 0 ? 0 : rc == TL_E_NODEV ? 10 : rc == -EINVAL ? 11 : rc == TL_E_NOHUGE ? 12 : 1;
}

static int
child_open_expect(void *arg)
{
	return open_status(arg, 1);
}

static int
child_open_two_queues(void *arg)
{
	return open_status(arg, 2);
}

static int
child_replay(void *arg)
{
	static struct tl_pipeline_worker w;
	const struct tl_dpdk_conf *c = arg;
	struct tl_dpdk *d = NULL;
	volatile int stop = 0;
	uint64_t expect = N_FRAMES;
	uint16_t port = 5170;
	int rc = 1;

	if (tl_dpdk_open(c, 1, "test", &d) != 0)
		return 2;
	if (tl_pipeline_worker_init(&w, &pconf, schema, &port, 1, NULL, NULL) != 0)
		goto out;
	if (tl_dpdk_run(d, &w, &expect, 5000000000ull, &stop) != 0)
		goto out;
	rc = w.cnt.rx_frames == N_FRAMES && w.cnt.events_valid == N_FRAMES ? 0 : 3;
	if (rc)
		fprintf(stderr, "frames %lu valid %lu\n", (unsigned long)w.cnt.rx_frames,
				(unsigned long)w.cnt.events_valid);
	tl_pipeline_worker_fini(&w);
out:
	tl_dpdk_close(d);
	return rc;
}

static volatile int stop_flag;

static void *
stopper(void *arg)
{
	(void)arg;
	usleep(300000);
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	return NULL;
}

static int
child_stop(void *arg)
{
	static struct tl_pipeline_worker w;
	const struct tl_dpdk_conf *c = arg;
	struct tl_dpdk *d = NULL;
	struct tl_counters total;
	pthread_t t;
	uint16_t port = 5170;
	int rc = 1;

	if (tl_dpdk_open(c, 1, "test", &d) != 0)
		return 2;
	if (tl_pipeline_worker_init(&w, &pconf, schema, &port, 1, NULL, NULL) != 0)
		goto out;
	pthread_create(&t, NULL, stopper, NULL);
	if (tl_dpdk_run(d, &w, NULL, 0, &stop_flag) == 0) {
		memset(&total, 0, sizeof(total));
		tl_counters_add(&total, &w.cnt);
		tl_dpdk_stats(d, &total);
		/* net_null hands out zero-filled frames: all of them are not IP. */
		rc = total.rx_frames > 0 && total.reason[TL_REASON_IGN_NON_IP] == total.rx_frames ? 0 : 3;
	}
	pthread_join(t, NULL);
	tl_pipeline_worker_fini(&w);
out:
	tl_dpdk_close(d);
	return rc;
}

/* --- tests --- */

static void
test_dpdk_no_device_enodev(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	base_conf(&c);
	assert_int_equal(in_child(child_open_expect, &c), 10);
}

static void
test_dpdk_missing_interface_enodev(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	vdev_conf(&c, "net_af_xdp0,iface=tl-no-such-if");
	assert_int_equal(in_child(child_open_expect, &c), 10);
}

static void
test_dpdk_more_queues_than_port_einval(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	pcap_conf(&c, "one.pcap");
	/* Two queues on a port with one. */
	assert_int_equal(in_child(child_open_two_queues, &c), 11);
}

static void
test_dpdk_too_few_lcores_einval(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	vdev_conf(&c, "net_null0");
	snprintf(c.lcores, sizeof(c.lcores), "0"); /* a main lcore and no worker */
	assert_int_equal(in_child(child_open_expect, &c), 11);
}

static void
test_dpdk_hugepages_missing_enohuge(void **state)
{
	struct tl_dpdk_conf c;
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	int n = -1;

	(void)state;
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		fclose(f);
	}
	if (n != 0)
		skip(); /* hugepages are reserved here: the error cannot be provoked */
	vdev_conf(&c, "net_null0");
	c.no_huge = false;
	assert_int_equal(in_child(child_open_expect, &c), 12);
}

static void
test_dpdk_pcap_replay_every_frame_once(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	pcap_conf(&c, "replay.pcap");
	assert_int_equal(in_child(child_replay, &c), 0);
}

static void
test_dpdk_stop_flag_ends_run(void **state)
{
	struct tl_dpdk_conf c;

	(void)state;
	vdev_conf(&c, "net_null0");
	assert_int_equal(in_child(child_stop, &c), 0);
}

static int
setup(void **state)
{
	static struct tl_schema_def def;
	char msg[256];

	(void)state;
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	/* the columns the capture events carry (event_time optional, error at the top) */
	memset(&def, 0, sizeof(def));
	tl_test_add_col(&def, "query_id", "query_id", TL_COL_STRING, true, 0);
	tl_test_add_col(&def, "event_time", "timestamp", TL_COL_DATETIME, false, 0);
	tl_test_add_col(&def, "error", "error", TL_COL_ANY, false, 0);
	tl_test_set_roles(&def, "event_time", "error", "query_id");
	pconf.limits = (struct tl_limits){4096, 8, 1024, 8};
	pconf.reasm = (struct tl_reasm_conf){4, 64, 1000000000ull};
	return tl_schema_compile(&def, &pconf.limits, &schema, msg, sizeof(msg));
}

static int
teardown(void **state)
{
	char cmd[256];

	(void)state;
	tl_schema_free(schema);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dpdk_no_device_enodev),
		cmocka_unit_test(test_dpdk_missing_interface_enodev),
		cmocka_unit_test(test_dpdk_more_queues_than_port_einval),
		cmocka_unit_test(test_dpdk_too_few_lcores_einval),
		cmocka_unit_test(test_dpdk_hugepages_missing_enohuge),
		cmocka_unit_test(test_dpdk_pcap_replay_every_frame_once),
		cmocka_unit_test(test_dpdk_stop_flag_ends_run),
	};

	if (geteuid() != 0) {
		printf("SKIP: the DPDK EAL needs root here\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
