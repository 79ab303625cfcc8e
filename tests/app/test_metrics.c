/* SPDX-License-Identifier: BSD-3-Clause */
/* The /metrics and /healthz endpoint, over a real loopback socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tl_counters.h"
#include "tl_metrics.h"

/* One HTTP/1.0 request; returns the status and copies the body. */
static int
http(uint16_t port, const char *method, const char *path, char *body, size_t cap)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	static char resp[1 << 20];
	size_t got = 0;
	ssize_t n;
	int fd, status = -1;
	char req[256];
	const char *b;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	while ((n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	b = strstr(resp, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return status;
}

static void
collect_two(void *arg, struct tl_metrics_buf *b)
{
	const struct tl_counters *w[2] = {arg, (const struct tl_counters *)arg + 1};
	struct tl_counters nic;

	memset(&nic, 0, sizeof(nic));
	nic.rx_missed = 9;
	tl_metrics_pipeline(b, w, 2, &nic);
}

static void
test_metrics_non_loopback_listen_rejected(void **state)
{
	struct tl_metrics_conf c = {.enabled = true};
	struct tl_metrics *m = NULL;
	char msg[200];
	static const char *const bad[] = {"0.0.0.0:9170", "10.1.2.3:80", "[2001:db8::1]:80",
		"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "localhost:9170", ":9170", "[::1:9"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(c.listen, sizeof(c.listen), "%s", bad[i]);
		assert_int_not_equal(tl_metrics_check(&c, msg, sizeof(msg)), 0);
		assert_int_equal(tl_metrics_create(&c, &m), -EINVAL);
		assert_null(m);
	}
	snprintf(c.listen, sizeof(c.listen), "10.1.2.3:80");
	tl_metrics_check(&c, msg, sizeof(msg));
	assert_non_null(strstr(msg, "not a loopback address"));
	c.enabled = false; /* a disabled endpoint is not checked */
	assert_int_equal(tl_metrics_check(&c, msg, sizeof(msg)), 0);
	c.enabled = true;
	snprintf(c.listen, sizeof(c.listen), "[::1]:0");
	assert_int_equal(tl_metrics_check(&c, msg, sizeof(msg)), 0);
	snprintf(c.listen, sizeof(c.listen), "127.0.0.9:0");
	assert_int_equal(tl_metrics_check(&c, msg, sizeof(msg)), 0);
}

static void
test_metrics_endpoint_serves_counters_and_health(void **state)
{
	struct tl_metrics_conf c = {.enabled = true, .listen = "127.0.0.1:0"};
	struct tl_counters w[2];
	struct tl_metrics *m = NULL;
	static char body[1 << 20];
	uint16_t port;

	(void)state;
	memset(w, 0, sizeof(w));
	w[0].rx_frames = 10;
	w[1].rx_frames = 32;
	w[0].events_valid = 5;
	w[1].events_valid = 7;
	w[1].reason[TL_REASON_EV_JSON_UTF8] = 3;
	w[0].reason[TL_REASON_FRAG_TIMEOUT] = 2;
	assert_int_equal(tl_metrics_create(&c, &m), 0);
	assert_int_equal(tl_metrics_add(m, collect_two, w), 0);
	assert_int_equal(tl_metrics_port(m), 0);
	assert_int_equal(tl_metrics_start(m), 0);
	assert_int_equal(tl_metrics_add(m, collect_two, w), -ENOSPC); /* only before start */
	port = tl_metrics_port(m);
	assert_true(port > 0);

	assert_int_equal(http(port, "GET", "/healthz", body, sizeof(body)), 503);
	assert_string_equal(body, "starting\n");
	tl_metrics_set_health(m, true, NULL);
	assert_int_equal(http(port, "GET", "/healthz", body, sizeof(body)), 200);
	assert_string_equal(body, "ok\n");

	assert_int_equal(http(port, "GET", "/metrics", body, sizeof(body)), 200);
	assert_non_null(strstr(body, "# TYPE tapline_rx_frames_total counter\n"));
	assert_non_null(strstr(body, "tapline_rx_frames_total{worker=\"0\"} 10\n"));
	assert_non_null(strstr(body, "tapline_rx_frames_total{worker=\"1\"} 32\n"));
	assert_non_null(strstr(body, "tapline_events_total{verdict=\"valid\"} 12\n"));
	assert_non_null(strstr(body, "tapline_rejected_events_total{reason=\"json_utf8\"} 3\n"));
	assert_non_null(strstr(body, "tapline_dropped_total{reason=\"frag_timeout\"} 2\n"));
	assert_non_null(strstr(body, "tapline_nic_missed_total 9\n"));
	/* an event reason is never reported as a drop, nor the reverse */
	assert_null(strstr(body, "tapline_dropped_total{reason=\"json_utf8\"}"));
	assert_null(strstr(body, "tapline_rejected_events_total{reason=\"frag_timeout\"}"));

	assert_int_equal(http(port, "POST", "/metrics", body, sizeof(body)), 405);
	assert_int_equal(http(port, "GET", "/", body, sizeof(body)), 404);
	tl_metrics_stop(m);
	tl_metrics_stop(NULL);
}

static void
test_metrics_port_in_use_fails(void **state)
{
	struct tl_metrics_conf c = {.enabled = true, .listen = "127.0.0.1:0"};
	struct tl_metrics *a = NULL, *b = NULL;

	(void)state;
	assert_int_equal(tl_metrics_create(&c, &a), 0);
	assert_int_equal(tl_metrics_start(a), 0);
	snprintf(c.listen, sizeof(c.listen), "127.0.0.1:%u", tl_metrics_port(a));
	assert_int_equal(tl_metrics_create(&c, &b), 0);
	assert_true(tl_metrics_start(b) < 0);
	tl_metrics_stop(b);
	tl_metrics_stop(a);
}

static void
test_metrics_buffer_grows_past_initial_size(void **state)
{
	struct tl_metrics_buf b = {0};

	(void)state;
	for (int i = 0; i < 5000; i++)
		tl_metrics_printf(&b, "line_%d %d\n", i, i);
	assert_false(b.failed);
	assert_non_null(strstr(b.data, "line_4999 4999\n"));
	assert_int_equal(strncmp(b.data, "line_0 0\nline_1 1\n", 18), 0);
	free(b.data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_non_loopback_listen_rejected),
		cmocka_unit_test(test_metrics_endpoint_serves_counters_and_health),
		cmocka_unit_test(test_metrics_port_in_use_fails),
		cmocka_unit_test(test_metrics_buffer_grows_past_initial_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
