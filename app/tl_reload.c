/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The reload controller (see tl_reload.h): one thread that turns SIGHUP requests and
 * profile file changes into new generations published through tl_live.
 *
 * The thread sleeps in poll(2) on an eventfd (requests and stop) and an inotify
 * descriptor watching the folders of the profile and of every file it extends. Folders,
 * not files: editors and configuration managers replace a file by renaming a new one over
 * it, which a watch on the old inode would never report.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tl_error.h"
#include "tl_log.h"
#include "tl_reload.h"

#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR)
/* Kubernetes mounts a ConfigMap as symlinks through `..data`, swapped by a rename. */
#define K8S_DATA_LINK "..data"
/* A reload waits at most this many debounce times after the first file event, so a
 * file rewritten continuously still gets reloaded. */
#define DEBOUNCE_CAP 10
/* While a retired generation waits for a late worker, retry its free this often. */
#define RECLAIM_POLL_MS 1000

struct watch {
	int wd;
	char dir[PATH_MAX];
};

struct watched_name {
	int wd; /* the folder's watch */
	char base[NAME_MAX + 1];
};

struct tl_reload {
	char profile[TL_LIVE_PATH_MAX];
	struct tl_app_config *running; /* the file's configuration now running */
	const struct tl_schema *schema;
	struct tl_live *live;
	uint64_t debounce_ns;
	uint64_t timeout_ns;
	int (*prepare)(void *arg, const struct tl_app_config *cfg, struct tl_live_gen *gen,
	        char *err, size_t errlen);
	void (*on_publish)(void *arg, const struct tl_live_gen *gen);
	void *arg;

	int efd; /* requests (+1 each) and stop */
	int ifd; /* inotify, -1 without watching */
	bool stop;
	pthread_t th;

	/* Owned by the thread after create. */
	struct watch watches[TL_RELOAD_MAX_FILES];
	unsigned n_watches;
	struct watched_name names[TL_RELOAD_MAX_FILES];
	unsigned n_names;

	pthread_mutex_t lock; /* guards st */
	pthread_cond_t cond;  /* signalled after every attempt */
	struct tl_reload_status st;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t
unix_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* ---- the extends chain ---------------------------------------------------------------- */

/*
 * The value of a top-level `extends:` line of @p path, into @p name. A line scan, not a
 * YAML parse: the loader reports a malformed file anyway; here only the files to watch
 * are wanted, and a missed one only means a change to it needs SIGHUP.
 */
static bool
read_extends(const char *path, char *name, size_t len)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *v, *end;
	size_t cap = 0;
	bool found = false;

	if (f == NULL)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		if (strncmp(line, "extends:", 8) != 0)
			continue;
		v = line + 8;
		while (*v == ' ' || *v == '\t')
			v++;
		end = v;
		/* A comment starts at a '#' after a blank; quotes are taken off below. */
		while (*end != '\0' && *end != '\n' && *end != '\r' &&
		        !(*end == '#' && (end == v || end[-1] == ' ' || end[-1] == '\t')))
			end++;
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end - v >= 2 && (*v == '"' || *v == '\'') && end[-1] == *v) {
			v++;
			end--;
		}
		if (end > v && (size_t)(end - v) < len) {
			memcpy(name, v, (size_t)(end - v));
			name[end - v] = '\0';
			found = true;
		}
	}
	free(line);
	fclose(f);
	return found;
}

static bool
is_regular(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* @p dir/@p name or @p dir/@p name.yaml, the loader's order (tl_opt.h). */
static bool
try_dir(const char *dir, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);
	bool has_ext = (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	               (n > 4 && strcmp(name + n - 4, ".yml") == 0);
	int w;

	w = dir[0] ? snprintf(out, len, "%s/%s", dir, name) : snprintf(out, len, "%s", name);
	if (w > 0 && (size_t)w < len && is_regular(out))
		return true;
	if (has_ext)
		return false;
	w = dir[0] ? snprintf(out, len, "%s/%s.yaml", dir, name)
	           : snprintf(out, len, "%s.yaml", name);
	return w > 0 && (size_t)w < len && is_regular(out);
}

/* Resolve `extends: @p name` written in @p from as the loader does. */
static bool
resolve(const char *from, const char *name, char *out, size_t len)
{
	const char *const *dirs = tl_app_profile_dirs();
	const char *slash = strrchr(from, '/');
	char dir[PATH_MAX];

	if (name[0] == '/')
		return try_dir("", name, out, len);
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == from)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - from), from);
	if (try_dir(dir, name, out, len))
		return true;
	for (size_t i = 0; dirs[i] != NULL; i++)
		if (try_dir(dirs[i], name, out, len))
			return true;
	return false;
}

/* The profile and the files it extends, nearest first. @return how many. */
static unsigned
chain_files(const char *profile, char (*files)[PATH_MAX], unsigned max)
{
	char name[PATH_MAX];
	unsigned n = 0;

	snprintf(files[n++], PATH_MAX, "%s", profile);
	while (n < max && read_extends(files[n - 1], name, sizeof(name)) &&
	        resolve(files[n - 1], name, files[n], PATH_MAX)) {
		bool cycle = false;

		for (unsigned i = 0; i < n; i++)
			cycle |= strcmp(files[i], files[n]) == 0;
		if (cycle)
			break;
		n++;
	}
	return n;
}

/* ---- watches ---------------------------------------------------------------------------- */

/*
 * Watch the folders of the profile and its chain; drop the watches no longer needed.
 * @return 0, or -errno if the profile's own folder cannot be watched (other folders are
 * logged and skipped).
 */
static int
watch_refresh(struct tl_reload *c)
{
	struct {
		char files[TL_RELOAD_MAX_FILES][PATH_MAX];
		struct watch nw[TL_RELOAD_MAX_FILES];
	} *tmp = malloc(sizeof(*tmp));
	char(*files)[PATH_MAX];
	struct watch *nw;
	struct watched_name nn[TL_RELOAD_MAX_FILES];
	unsigned n_files, n_w = 0, n_n = 0;
	int rc = 0;

	if (tmp == NULL)
		return -ENOMEM;
	files = tmp->files;
	nw = tmp->nw;
	n_files = chain_files(c->profile, files, TL_RELOAD_MAX_FILES);
	for (unsigned i = 0; i < n_files; i++) {
		const char *slash = strrchr(files[i], '/');
		char dir[PATH_MAX];
		int wd = -1;

		if (slash == NULL)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == files[i])
			snprintf(dir, sizeof(dir), "/");
		else
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - files[i]), files[i]);
		for (unsigned k = 0; k < n_w && wd < 0; k++)
			if (strcmp(nw[k].dir, dir) == 0)
				wd = nw[k].wd;
		if (wd < 0) {
			wd = inotify_add_watch(c->ifd, dir, WATCH_MASK);
			if (wd < 0) {
				if (i == 0)
					rc = -errno;
				TL_WARN("reload: cannot watch %s: %s (changes to %s need SIGHUP)",
				        dir, strerror(errno), files[i]);
				continue;
			}
			nw[n_w].wd = wd;
			snprintf(nw[n_w].dir, sizeof(nw[n_w].dir), "%s", dir);
			n_w++;
		}
		nn[n_n].wd = wd;
		snprintf(nn[n_n].base, sizeof(nn[n_n].base), "%s", slash ? slash + 1 : files[i]);
		n_n++;
	}
	/* inotify_add_watch returns the existing descriptor for a folder already watched,
	 * so an old watch not in the new set is one to drop. */
	for (unsigned k = 0; k < c->n_watches; k++) {
		bool kept = false;

		for (unsigned j = 0; j < n_w; j++)
			kept |= nw[j].wd == c->watches[k].wd;
		if (!kept)
			inotify_rm_watch(c->ifd, c->watches[k].wd);
	}
	memcpy(c->watches, nw, n_w * sizeof(nw[0]));
	c->n_watches = n_w;
	free(tmp);
	memcpy(c->names, nn, n_n * sizeof(nn[0]));
	c->n_names = n_n;
	pthread_mutex_lock(&c->lock);
	c->st.watched_files = n_n;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Read every pending inotify event. @return true if one concerns a watched file. */
static bool
drain_events(struct tl_reload *c)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	ssize_t n;

	while ((n = read(c->ifd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				hit = true; /* events were lost: one of them may be ours */
				continue;
			}
			if (ev->len == 0)
				continue;
			if (strcmp(ev->name, K8S_DATA_LINK) == 0 &&
			        (ev->mask & (IN_MOVED_TO | IN_CREATE)))
				hit = true;
			for (unsigned i = 0; i < c->n_names && !hit; i++)
				hit = c->names[i].wd == ev->wd &&
				      strcmp(c->names[i].base, ev->name) == 0;
		}
	}
	return hit;
}

/* ---- one reload attempt ------------------------------------------------------------------ */

/*
 * Sections the running process cannot take over without a restart. Whatever is not in
 * the live set below is frozen: a section added to struct tl_app_config later is
 * protected even before it is named here (the message then names no section).
 */
#define SECTION(f)                                                                                 \
	{                                                                                          \
#f, offsetof(struct tl_app_config, f), sizeof(((struct tl_app_config *)0)->f)      \
	}
static const struct {
	const char *name;
	size_t off;
	size_t len;
} frozen[] = {
        SECTION(capture), SECTION(pipeline), SECTION(schema), SECTION(appliance_id), SECTION(batch),
        SECTION(spool), SECTION(uplink), SECTION(metrics),
        SECTION(routing), /* live only through the prepare hook */
};
#undef SECTION

/* Append @p fmt to @p err (at its current end). */
static void __attribute__((format(printf, 3, 4)))
err_append(char *err, size_t len, const char *fmt, ...)
{
	size_t used = strlen(err);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(err + used, len - used, fmt, ap);
	va_end(ap);
}

/*
 * @return 0 if @p next differs from the running configuration only in sections that
 * reload live (name, description, classify; routing too when a prepare hook builds it),
 * TL_E_CONFIG with one line per changed section in @p err otherwise, -ENOMEM.
 */
static int
check_frozen(const struct tl_reload *c, const struct tl_app_config *next, char *err, size_t len)
{
	const char *live_set = c->prepare ? "name, description, classify and routing"
	                                  : "name, description and classify";
	struct tl_app_config *masked = malloc(sizeof(*masked));
	int rc = 0;

	if (masked == NULL)
		return -ENOMEM;
	memcpy(masked, next, sizeof(*masked));
	memcpy(masked->name, c->running->name, sizeof(masked->name));
	memcpy(masked->description, c->running->description, sizeof(masked->description));
	memcpy(&masked->classify, &c->running->classify, sizeof(masked->classify));
	if (c->prepare != NULL)
		memcpy(&masked->routing, &c->running->routing, sizeof(masked->routing));
	if (memcmp(masked, c->running, sizeof(*masked)) == 0)
		goto out;
	rc = TL_E_CONFIG;
	for (size_t i = 0; i < sizeof(frozen) / sizeof(frozen[0]); i++) {
		const char *a = (const char *)c->running + frozen[i].off;
		const char *b = (const char *)masked + frozen[i].off;

		if (memcmp(a, b, frozen[i].len) != 0)
			err_append(err, len,
			        "%s%s: section '%s' changed: restart needed (only %s reload live)",
			        err[0] ? "\n" : "", c->profile, frozen[i].name, live_set);
	}
	if (err[0] == '\0')
		err_append(err, len,
		        "%s: a section that cannot reload live changed: restart needed",
		        c->profile);
out:
	free(masked);
	return rc;
}

/* tl_app_load with its messages captured into @p err. */
static int
load(const struct tl_reload *c, struct tl_app_config *cfg, char *err, size_t len)
{
	char *text = NULL;
	size_t text_len = 0;
	FILE *f = open_memstream(&text, &text_len);
	int rc;

	rc = tl_app_load(c->profile, cfg, NULL, f);
	if (f != NULL)
		fclose(f);
	if (rc != 0) {
		while (text_len > 0 && text[text_len - 1] == '\n')
			text[--text_len] = '\0';
		if (text_len > 0)
			snprintf(err, len, "%s", text);
		else
			snprintf(err, len, "%s: %s", c->profile, tl_strerror(rc));
	}
	free(text);
	return rc;
}

enum outcome { OUT_OK, OUT_FAILED, OUT_UNCHANGED };

static void
finish(struct tl_reload *c, enum outcome out, int rc, uint64_t t0, const char *err)
{
	pthread_mutex_lock(&c->lock);
	c->st.attempts++;
	c->st.last_rc = rc;
	c->st.last_failed = out == OUT_FAILED;
	switch (out) {
	case OUT_OK:
		c->st.reloads_ok++;
		c->st.last_ok_unix_ns = unix_ns();
		c->st.last_duration_ns = mono_ns() - t0;
		break;
	case OUT_FAILED:
		c->st.reloads_failed++;
		snprintf(c->st.last_error, sizeof(c->st.last_error), "%s", err);
		break;
	case OUT_UNCHANGED:
		c->st.reloads_unchanged++;
		break;
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void
attempt(struct tl_reload *c, bool requested)
{
	struct tl_app_config *cfg = malloc(sizeof(*cfg));
	char *err = malloc(TL_RELOAD_ERR_MAX);
	struct tl_live_gen *gen = NULL;
	struct tl_live_stats ls;
	uint64_t t0 = mono_ns();
	int rc = -ENOMEM;

	if (cfg == NULL || err == NULL) {
		TL_ERR("reload: %s: %s", c->profile, tl_strerror(rc));
		tl_live_note_failure(c->live);
		finish(c, OUT_FAILED, rc, t0, tl_strerror(rc));
		goto out;
	}
	err[0] = '\0';
	rc = load(c, cfg, err, TL_RELOAD_ERR_MAX);
	if (rc != 0)
		goto fail;
	/* Both came out of tl_app_load (zeroed, then filled): equal bytes, equal profile. */
	if (!requested && memcmp(cfg, c->running, sizeof(*cfg)) == 0) {
		TL_INFO("reload: %s: unchanged", c->profile);
		finish(c, OUT_UNCHANGED, 0, t0, "");
		goto out;
	}
	rc = check_frozen(c, cfg, err, TL_RELOAD_ERR_MAX);
	if (rc != 0)
		goto fail;
	rc = tl_live_gen_build(
	        &cfg->classify, c->schema, c->live->n_workers, &gen, err, TL_RELOAD_ERR_MAX);
	if (rc != 0) {
		if (err[0] == '\0')
			snprintf(err, TL_RELOAD_ERR_MAX, "%s: classify: %s", c->profile,
			        tl_strerror(rc));
		goto fail;
	}
	snprintf(gen->path, sizeof(gen->path), "%s", c->profile);
	if (c->prepare != NULL) {
		rc = c->prepare(c->arg, cfg, gen, err, TL_RELOAD_ERR_MAX);
		if (rc != 0) {
			rc = rc < 0 ? rc : TL_E_CONFIG;
			if (err[0] == '\0')
				snprintf(err, TL_RELOAD_ERR_MAX, "%s: rejected by prepare",
				        c->profile);
			goto fail;
		}
	}
	rc = tl_live_publish(c->live, gen, c->timeout_ns);
	if (rc != 0) {
		snprintf(err, TL_RELOAD_ERR_MAX, "%s: publish: %s", c->profile, tl_strerror(rc));
		goto fail;
	}
	/* Owned by the live from here; valid until this thread publishes again. */
	TL_INFO("reload: %s: generation %" PRIu64 " published (%u patterns, db %s, %.1f ms)",
	        c->profile, gen->gen, tl_classify_db_count(gen->db), gen->db_hash,
	        (double)(mono_ns() - t0) / 1e6);
	memcpy(c->running, cfg, sizeof(*cfg));
	if (c->on_publish != NULL)
		c->on_publish(c->arg, gen);
	finish(c, OUT_OK, 0, t0, "");
	goto out;

fail:
	tl_live_gen_free(gen);
	tl_live_note_failure(c->live);
	tl_live_stats(c->live, &ls);
	TL_ERR("reload: %s rejected (%s), generation %" PRIu64 " keeps running:\n%s", c->profile,
	        tl_strerror(rc), ls.generation, err);
	finish(c, OUT_FAILED, rc, t0, err);
out:
	free(err);
	free(cfg);
}

/* ---- the thread ----------------------------------------------------------------------------- */

static void *
run(void *arg)
{
	struct tl_reload *c = arg;
	uint64_t first = 0, deadline = 0;
	bool pending = false;

	for (;;) {
		struct pollfd p[2] = {
		        {.fd = c->efd, .events = POLLIN}, {.fd = c->ifd, .events = POLLIN}};
		struct tl_live_stats ls;
		bool requested = false;
		int timeout = -1, n;
		uint64_t now;

		if (pending) {
			now = mono_ns();
			timeout = deadline > now ? (int)((deadline - now + 999999) / 1000000) : 0;
		} else {
			tl_live_stats(c->live, &ls);
			if (ls.gens_pending_free > 0)
				timeout = RECLAIM_POLL_MS;
		}
		n = poll(p, c->ifd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR) {
			TL_ERR("reload: poll: %s", strerror(errno));
			nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
			continue;
		}
		if (n > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;

			requested = read(c->efd, &v, sizeof(v)) == (ssize_t)sizeof(v);
		}
		if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
			break;
		if (n > 0 && c->ifd >= 0 && (p[1].revents & POLLIN) && drain_events(c)) {
			now = mono_ns();
			if (!pending)
				first = now;
			pending = true;
			deadline = now + c->debounce_ns;
			if (deadline > first + DEBOUNCE_CAP * c->debounce_ns)
				deadline = first + DEBOUNCE_CAP * c->debounce_ns;
		}
		if (requested || (pending && mono_ns() >= deadline)) {
			/* A request reads the files as they are now: it covers pending events. */
			pending = false;
			attempt(c, requested);
			if (c->ifd >= 0)
				watch_refresh(c);
		}
		tl_live_reclaim(c->live);
	}
	return NULL;
}

/* ---- public API ------------------------------------------------------------------------------ */

int
tl_reload_create(const struct tl_reload_conf *conf, struct tl_reload **out)
{
	struct tl_reload *c;
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	if (out == NULL)
		return -EINVAL;
	*out = NULL;
	if (conf == NULL || conf->profile == NULL || conf->loaded == NULL || conf->schema == NULL ||
	        conf->live == NULL)
		return -EINVAL;
	if (strlen(conf->profile) >= TL_LIVE_PATH_MAX)
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->efd = -1;
	c->ifd = -1;
	snprintf(c->profile, sizeof(c->profile), "%s", conf->profile);
	c->schema = conf->schema;
	c->live = conf->live;
	c->debounce_ns = conf->debounce_ns ? conf->debounce_ns : TL_RELOAD_DEBOUNCE_NS;
	c->timeout_ns = conf->publish_timeout_ns ? conf->publish_timeout_ns : TL_RELOAD_TIMEOUT_NS;
	c->prepare = conf->prepare;
	c->on_publish = conf->on_publish;
	c->arg = conf->arg;
	rc = -ENOMEM;
	c->running = malloc(sizeof(*c->running));
	if (c->running == NULL)
		goto fail_free;
	memcpy(c->running, conf->loaded, sizeof(*c->running));
	if (pthread_mutex_init(&c->lock, NULL) != 0)
		goto fail_free;
	if (pthread_condattr_init(&ca) != 0)
		goto fail_mutex;
	/* Waits use CLOCK_MONOTONIC deadlines: a wall-clock step must not cut them short. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		rc = -rc;
		goto fail_mutex;
	}
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		rc = -errno;
		goto fail_cond;
	}
	if (!conf->no_watch) {
		c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (c->ifd < 0) {
			rc = -errno;
			goto fail_fds;
		}
		rc = watch_refresh(c);
		if (rc < 0)
			goto fail_fds;
	}
	/* Signals go to the application's threads, never to this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&c->th, NULL, run, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		goto fail_fds;
	*out = c;
	return 0;

fail_fds:
	if (c->ifd >= 0)
		close(c->ifd);
	close(c->efd);
fail_cond:
	pthread_cond_destroy(&c->cond);
fail_mutex:
	pthread_mutex_destroy(&c->lock);
fail_free:
	free(c->running);
	free(c);
	return rc;
}

void
tl_reload_request(struct tl_reload *ctl)
{
	uint64_t one = 1;
	int saved = errno;
	ssize_t w;

	if (ctl == NULL)
		return;
	w = write(ctl->efd, &one, sizeof(one));
	(void)w; /* only EAGAIN at a counter near 2^64: requests are merged anyway */
	errno = saved;
}

void
tl_reload_destroy(struct tl_reload *ctl)
{
	uint64_t one = 1;
	ssize_t w;

	if (ctl == NULL)
		return;
	__atomic_store_n(&ctl->stop, true, __ATOMIC_RELEASE);
	w = write(ctl->efd, &one, sizeof(one));
	(void)w;
	pthread_join(ctl->th, NULL);
	if (ctl->ifd >= 0)
		close(ctl->ifd);
	close(ctl->efd);
	pthread_cond_destroy(&ctl->cond);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl->running);
	free(ctl);
}

void
tl_reload_status(struct tl_reload *ctl, struct tl_reload_status *st)
{
	struct tl_live_stats ls;

	if (st == NULL)
		return;
	if (ctl == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	pthread_mutex_lock(&ctl->lock);
	*st = ctl->st;
	pthread_mutex_unlock(&ctl->lock);
	tl_live_stats(ctl->live, &ls);
	st->generation = ls.generation;
}

int
tl_reload_wait(
        struct tl_reload *ctl, uint64_t attempts, uint64_t timeout_ns, struct tl_reload_status *st)
{
	struct timespec dl;
	uint64_t end;
	int rc = 0;

	if (ctl == NULL)
		return -EINVAL;
	end = mono_ns() + timeout_ns;
	dl.tv_sec = (time_t)(end / 1000000000ull);
	dl.tv_nsec = (long)(end % 1000000000ull);
	pthread_mutex_lock(&ctl->lock);
	while (ctl->st.attempts <= attempts && rc == 0)
		rc = pthread_cond_timedwait(&ctl->cond, &ctl->lock, &dl);
	if (ctl->st.attempts > attempts)
		rc = 0;
	pthread_mutex_unlock(&ctl->lock);
	tl_reload_status(ctl, st);
	return rc == 0 ? 0 : -ETIMEDOUT;
}
