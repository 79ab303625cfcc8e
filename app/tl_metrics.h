/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Prometheus `/metrics` and `/healthz` on a loopback HTTP port (libmicrohttpd, one
 * internal thread). Nothing here runs on a worker: a scrape calls the registered
 * collectors, which read the workers' single-writer counters with relaxed loads.
 *
 * Lifetime: create, add collectors, start; stop before the collectors' data goes away.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_opt.h"

/** The `metrics:` section of a profile. */
struct tl_metrics_conf {
	bool enabled;
	char listen[64]; /**< "127.0.0.1:9170"; only loopback addresses are accepted */
};

extern const struct tl_opt tl_metrics_opts[];

/** Section check (a tl_opt_check_fn): listen must be a loopback address and a port. */
int tl_metrics_check(const void *obj, char *msg, size_t msglen);

/** A growing text buffer collectors write the exposition format into. */
struct tl_metrics_buf {
	char *data;
	size_t len, cap;
	bool failed; /**< an allocation failed; the scrape answers 500 */
};

/** Append printf-style text. */
void tl_metrics_printf(struct tl_metrics_buf *b, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));

/**
 * Append one metric family header (# HELP / # TYPE).
 * @param type "counter", "gauge" or "histogram".
 */
void tl_metrics_family(struct tl_metrics_buf *b, const char *name, const char *type,
		const char *help);

/** Called on every scrape from the HTTP thread. */
typedef void (*tl_metrics_collect_fn)(void *arg, struct tl_metrics_buf *b);

struct tl_metrics;

/**
 * Create the endpoint (not yet listening).
 * @return 0 with *out set (tl_metrics_stop frees), -EINVAL (bad listen address), -ENOMEM.
 */
int tl_metrics_create(const struct tl_metrics_conf *conf, struct tl_metrics **out);

/** Register a collector; only before tl_metrics_start. @return 0, -ENOSPC (16 at most). */
int tl_metrics_add(struct tl_metrics *m, tl_metrics_collect_fn fn, void *arg);

/**
 * Start listening.
 * @return 0; -EADDRINUSE or -errno if the port cannot be bound (the message says which).
 */
int tl_metrics_start(struct tl_metrics *m);

/** @return the bound port (useful with port 0 in tests), or 0 if not started. */
uint16_t tl_metrics_port(const struct tl_metrics *m);

/**
 * Set what /healthz answers: 200 "ok" when @p healthy, else 503 with @p why.
 * Thread-safe; @p why is copied.
 */
void tl_metrics_set_health(struct tl_metrics *m, bool healthy, const char *why);

struct tl_counters;

/**
 * Write the pipeline's counters: per worker (frames, bytes, datagrams, reassembled) and
 * summed over workers (events by verdict, drops and rejections by reason).
 * @param w    @p n counter structs, one per worker; read with relaxed loads.
 * @param nic  counters kept by the NIC rather than a worker (rx_missed, rx_nombuf), added
 *             to the sums only; may be NULL.
 */
void tl_metrics_pipeline(struct tl_metrics_buf *b, const struct tl_counters *const *w,
		unsigned n, const struct tl_counters *nic);

/** Stop the server and free everything. NULL-safe. */
void tl_metrics_stop(struct tl_metrics *m);

#endif
