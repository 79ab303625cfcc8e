/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Live reload of the profile while `tapline run` runs.
 *
 * A controller thread (never a worker) waits for a trigger: tl_reload_request() (SIGHUP)
 * or a change of the profile file or of a file it `extends` (inotify on their folders:
 * IN_CLOSE_WRITE, IN_MOVED_TO and IN_CREATE of those names, so in-place writes and
 * write-temporary-then-rename both count; a Kubernetes ConfigMap's `..data` symlink swap
 * too). File events are debounced: the reload starts once no event came for the debounce
 * time (at most 10 debounce times after the first). Then it:
 *
 *  1. loads the profile again with tl_app_load (its messages are kept);
 *  2. skips a file-triggered reload whose effective configuration is byte-identical to
 *     the running one (a request always rebuilds);
 *  3. rejects a change to a section that cannot change live, i.e. every section but
 *     name, description and classify (and routing, when a prepare hook is set to build
 *     it): capture, pipeline, schema, appliance_id, batch, spool, uplink, metrics, ...
 *     with one line per section: `<profile>: section '<name>' changed: restart needed`;
 *  4. builds a new generation (tl_live_gen_build), lets the optional prepare hook add its
 *     extension, publishes it (tl_live_publish) and calls on_publish.
 *
 * Any failure is logged at error level with its text (`file:line:column: message` from
 * the loader, `file:line: pattern '<id>': message` from the classifier, or the changed
 * sections), counted (here and in tl_live_note_failure) and kept as the last error; the
 * running generation stays. The extends chain is re-read after every attempt, so a new
 * parent is watched from then on.
 *
 * Thread-safety: tl_reload_request is async-signal-safe and may be called from any
 * thread or signal handler; tl_reload_status and tl_reload_wait from any thread;
 * tl_reload_create/destroy from one thread. The hooks run on the controller thread.
 */
#ifndef TL_RELOAD_H
#define TL_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_app.h"
#include "tl_live.h"

#define TL_RELOAD_ERR_MAX 4096             /**< last error text kept (bytes with NUL) */
#define TL_RELOAD_DEBOUNCE_NS 100000000ull /**< default debounce: 100 ms */
#define TL_RELOAD_TIMEOUT_NS 1000000000ull /**< default grace-period wait: 1 s */
#define TL_RELOAD_MAX_FILES 16             /**< profile + extends chain files watched */

/** How the controller is set up (copied by tl_reload_create). */
struct tl_reload_conf {
	/** The profile (or site file) `tapline run` loaded; copied. */
	const char *profile;
	/** The configuration as tl_app_load returned it for @c profile, BEFORE any
	 *  command-line override; copied. A new load is compared with it byte for byte
	 *  (padding included: keep it as tl_app_load left it, copy it with memcpy), so a
	 *  modified copy would be seen as a change needing a restart. */
	const struct tl_app_config *loaded;
	/** The running compiled schema; new generations are built against it (the schema
	 *  cannot change live). Borrowed: must outlive the controller. */
	const struct tl_schema *schema;
	/** Where generations are published; its n_workers scratches are built per
	 *  generation. Borrowed: must outlive the controller. */
	struct tl_live *live;
	uint64_t debounce_ns;        /**< 0: TL_RELOAD_DEBOUNCE_NS */
	uint64_t publish_timeout_ns; /**< 0: TL_RELOAD_TIMEOUT_NS (see tl_live_publish) */
	bool no_watch;               /**< true: no inotify, requests only */
	/**
	 * Optional: complete @p gen from @p cfg before it is published (e.g. set gen->ext and
	 * gen->ext_free to routing tables). Runs on the controller thread.
	 * @return 0, or a negative error (-errno or TL_E_*; any other non-zero value counts as
	 *         TL_E_CONFIG) with @p err filled to reject the reload (gen is then freed).
	 */
	int (*prepare)(void *arg, const struct tl_app_config *cfg, struct tl_live_gen *gen,
	        char *err, size_t errlen);
	/**
	 * Optional: called after @p gen was published (metrics, logs). @p gen stays valid
	 * until the next publish, which only this thread does: do not keep it beyond the call.
	 */
	void (*on_publish)(void *arg, const struct tl_live_gen *gen);
	void *arg; /**< passed to the hooks */
};

/** What the controller did so far (tl_reload_status). */
struct tl_reload_status {
	uint64_t generation;        /**< the live's current generation */
	uint64_t attempts;          /**< triggers handled: ok + failed + unchanged */
	uint64_t reloads_ok;        /**< published */
	uint64_t reloads_failed;    /**< rejected, the old generation kept */
	uint64_t reloads_unchanged; /**< file event, but the configuration did not change */
	bool last_failed;           /**< the latest attempt was rejected */
	int last_rc;                /**< its result: 0, TL_E_* or -errno */
	int64_t last_ok_unix_ns;    /**< wall-clock time of the last publish; 0: none yet */
	uint64_t last_duration_ns;  /**< load + check + build + publish of the last publish */
	unsigned watched_files;     /**< profile + extends files watched (0 with no_watch) */
	char last_error[TL_RELOAD_ERR_MAX]; /**< text of the latest rejection, "" if none */
};

struct tl_reload;

/**
 * Create the controller and start its thread (all signals blocked in it).
 * @param conf  see struct tl_reload_conf; profile, loaded, schema and live are required.
 * @param out   out: the controller (tl_reload_destroy). NULL on failure.
 * @return 0; -EINVAL if a required field or @p out is NULL; -ENAMETOOLONG if the profile
 *         path does not fit TL_LIVE_PATH_MAX; -ENOMEM; -errno of eventfd, inotify_init1,
 *         inotify_add_watch (the profile's own folder) or pthread_create.
 */
int tl_reload_create(const struct tl_reload_conf *conf, struct tl_reload **out);

/** Stop the thread (an attempt in progress completes first) and free. NULL-safe. */
void tl_reload_destroy(struct tl_reload *ctl);

/**
 * Ask for a reload (e.g. from a SIGHUP handler). Async-signal-safe (one write(2) to an
 * eventfd; errno preserved). Requests made while one is pending are merged. NULL-safe.
 */
void tl_reload_request(struct tl_reload *ctl);

/** Copy the status into @p st (zeros if @p ctl is NULL). */
void tl_reload_status(struct tl_reload *ctl, struct tl_reload_status *st);

/**
 * Wait until more than @p attempts triggers have been handled (pass the attempts of an
 * earlier status), or @p timeout_ns has passed.
 * @param st  out (may be NULL): the status when the wait ended.
 * @return 0; -ETIMEDOUT; -EINVAL if @p ctl is NULL.
 */
int tl_reload_wait(
        struct tl_reload *ctl, uint64_t attempts, uint64_t timeout_ns, struct tl_reload_status *st);

#endif
