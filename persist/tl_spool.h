/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The durable spool: an LMDB environment that holds committed batches until the uplink
 * has delivered them.
 *
 * A record is an opaque payload (typically one encoded batch of 16 KiB - 1 MiB) wrapped in
 * the spool's own 32-byte header (magic, version, payload length, producer, creation time,
 * xxh3-64 of the payload) so that recovery can tell a damaged record from a good one.
 * Records are keyed by a u64 sequence number assigned at commit, stored big-endian so that
 * LMDB's order is arrival order; keys keep increasing across restarts (never reused).
 *
 * Threads:
 *  - **Producers** (worker lcores, @c n_producers of them, index 0..n-1): each owns a fixed
 *    pool of preallocated buffers and two single-producer/single-consumer rings to and
 *    from the writer. tl_spool_buf_get(), _put() and _release() never block, lock or
 *    allocate; one producer index must only ever be used by one thread at a time.
 *  - **One writer thread**, started by tl_spool_open(), owns every write transaction: it
 *    drains the producer rings, writes every pending record in one transaction and commits
 *    (group commit: one fsync covers many records), then calls the commit callback for each
 *    record and returns its buffer to the producer's pool. It also applies acks.
 *  - **Readers** (the uplink, tools): tl_spool_read() runs a short read-only transaction
 *    that never blocks the writer's commits. Any number of threads may read at once.
 *
 * Durability: unless @c nosync is set, a record whose commit callback reported status 0
 * survives kill -9 and power loss (LMDB's synced commit).
 *
 * Size: the map starts at @c initial_size and grows (doubling) up to @c max_size. When the
 * live pages reach @c high_water_pct of @c max_size the full policy applies:
 * back-pressure (tl_spool_buf_put refuses), drop the newest records or drop the oldest
 * ones. Every case is counted in struct tl_spool_stats.
 *
 * Recovery: tl_spool_open() clears reader slots left by dead processes and verifies every
 * record; a damaged one is moved (raw bytes) to the `quarantine` database and counted,
 * and the spool goes on.
 */
#ifndef TL_SPOOL_H
#define TL_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_opt.h"

#define TL_SPOOL_PATH_LEN 256

/** What happens when the spool reaches its high-water mark. */
enum tl_spool_policy {
	TL_SPOOL_BACKPRESSURE, /**< tl_spool_buf_put() refuses with -ENOSPC (framed mode) */
	TL_SPOOL_DROP_NEWEST,  /**< the writer discards incoming records (status -ENOSPC) */
	TL_SPOOL_DROP_OLDEST,  /**< the writer deletes the oldest records to make room */
};

/** Names of enum tl_spool_policy, for the option table. */
extern const char *const tl_spool_policy_names[];

/** `spool:` options. */
struct tl_spool_conf {
	char path[TL_SPOOL_PATH_LEN]; /**< directory of the LMDB environment (created) */
	uint64_t initial_size;        /**< first map size, bytes */
	uint64_t max_size;            /**< the map never grows beyond this, bytes */
	uint64_t high_water_pct;      /**< full policy applies at this % of max_size */
	int policy;                   /**< enum tl_spool_policy */
	uint64_t commit_interval_ns;  /**< longest a record waits before its commit starts */
	uint64_t commit_bytes;        /**< commit as soon as this much is pending; also the
	                                   most one transaction takes */
	uint64_t buffer_size;         /**< payload capacity of one producer buffer, bytes */
	uint64_t buffers;             /**< buffers per producer */
	bool nosync;                  /**< no fsync at commit: tests and benchmarks only */
};

/** Option table for `spool:`. */
extern const struct tl_opt tl_spool_opts[];

/** Semantic check of a struct tl_spool_conf (sizes consistent); tl_opt_check_fn. */
int tl_spool_check(const void *obj, char *msg, size_t msglen);

/** Open flags. */
#define TL_SPOOL_RDONLY 0x1u /**< read-only (tools): no writer, no recovery, no puts/acks */

/**
 * A producer buffer. The producer writes at most @c cap bytes of payload at @c data, sets
 * @c len and, if it wants, @c user, then hands it over with tl_spool_buf_put(). Owned by
 * the spool; valid until tl_spool_close().
 */
struct tl_spool_buf {
	uint8_t *data;     /**< payload area, @c cap bytes, 64-byte aligned */
	uint32_t len;      /**< payload bytes written by the producer */
	uint32_t cap;      /**< == conf buffer_size */
	uint64_t user;     /**< producer's cookie, returned by the commit callback */
	uint8_t *meta;     /**< side data for the transaction hook (not stored in the record),
	                        @c meta_cap bytes; NULL without tl_spool_set_hooks() */
	uint32_t meta_len; /**< side bytes written by the producer (0 after every get) */
	uint32_t meta_cap; /**< == hooks meta_size */
};

/**
 * Called by the writer thread for every record handed over with tl_spool_buf_put(), in
 * per-producer order, after its transaction committed (or after it was dropped).
 * Must not block for long and must not call tl_spool_flush() or tl_spool_close();
 * tl_spool_ack() and tl_spool_read() are allowed.
 * @param arg      the argument given to tl_spool_open().
 * @param producer the producer index.
 * @param user     the buffer's cookie.
 * @param key      the record's key (>= 1, increasing in callback order) if committed,
 *                 0 if not.
 * @param status   0: committed (durable unless nosync); -ENOSPC: dropped because the
 *                 spool is full (drop_newest, or drop_oldest with nothing older left, or
 *                 closed while full); another negative code: the writer failed and the
 *                 record was not stored.
 */
typedef void (*tl_spool_commit_fn)(
        void *arg, unsigned producer, uint64_t user, uint64_t key, int status);

struct tl_spool;

/**
 * Open (create if missing) the spool at conf->path, recover it and start the writer.
 *
 * Only one read-write opener (process or handle) at a time: a lock file in the folder
 * (`writer.lock`, released by the kernel if the process dies) enforces it. Read-only
 * openers (other processes: LMDB forbids opening one environment twice in a process) may
 * come and go while it runs; their stats are computed once, at open.
 *
 * @param conf        options; copied.
 * @param n_producers producer count (0..1024); 0 is fine for readers and tools.
 * @param flags       0 or TL_SPOOL_RDONLY (then the environment must exist; n_producers
 *                    must be 0 and @p on_commit NULL).
 * @param on_commit   commit callback, or NULL.
 * @param arg         its argument.
 * @param out         out: the spool (caller owns; tl_spool_close()).
 * @return 0; -EINVAL (bad arguments or conf); -ENOMEM; -ENOENT (RDONLY and missing);
 *         -EBUSY (another read-write opener); -EACCES, -EIO, ... from the file system;
 *         TL_E_SPOOL_CORRUPT if LMDB finds its own structures damaged (the environment
 *         must be moved aside); TL_E_SPOOL for another LMDB failure.
 */
int tl_spool_open(const struct tl_spool_conf *conf, unsigned n_producers, unsigned flags,
        tl_spool_commit_fn on_commit, void *arg, struct tl_spool **out);

/** A write transaction, as seen by the transaction hook. */
struct tl_spool_txn;

/**
 * Called by the writer inside every write transaction that stores records, after the
 * records were written and before the commit, with the buffers of those records in
 * per-producer order (their @c meta side data included). Whatever the hook writes with
 * tl_spool_txn_state_put() commits atomically with the records: both or neither survive
 * a crash. The commit callbacks of these records run after the commit, as usual.
 * Runs on the writer thread; must not block for long. The hook may run more than once
 * for the same records (a transaction that found the map full is retried after growing
 * it, possibly with fewer records; tl_spool_txn_attempt() tells): only the commit
 * callbacks say what was stored. After tl_spool_kick() it also runs with @p n 0 in a
 * transaction of its own.
 * @return 0; a negative code aborts the transaction: the writer fails (its error is
 *         reported in tl_spool_stats.error and every record gets that status).
 */
typedef int (*tl_spool_txn_fn)(
        void *arg, struct tl_spool_txn *txn, const struct tl_spool_buf *const *bufs, unsigned n);

/** Transaction hook and side data. */
struct tl_spool_hooks {
	uint32_t meta_size;     /**< side bytes per producer buffer (0: none; at most 1 MiB) */
	tl_spool_txn_fn on_txn; /**< or NULL */
	void *arg;
};

/**
 * Install the hooks. Call once, after tl_spool_open() and before the first
 * tl_spool_buf_get() of any producer (allocates the side areas of every buffer).
 * @return 0; -EINVAL (read-only spool, meta_size too large); -EBUSY (buffers already in
 *         use, or hooks set before); -ENOMEM.
 */
int tl_spool_set_hooks(struct tl_spool *sp, const struct tl_spool_hooks *h);

#define TL_SPOOL_STATE_NAME_MAX 64 /**< longest state name, bytes */

/**
 * From a transaction hook: store @p len bytes under @p name in the spool's `state`
 * database (replacing what was there), in the hook's transaction.
 * @return 0; -EINVAL (empty or too long name); -ENOSPC (the map is full); TL_E_SPOOL.
 */
int tl_spool_txn_state_put(struct tl_spool_txn *txn, const char *name, const void *val, size_t len);

/**
 * From a transaction hook: delete state @p name (absent: nothing to do) in the hook's
 * transaction.
 * @return 0; -EINVAL; -ENOSPC (the map is full: the round is retried); TL_E_SPOOL.
 */
int tl_spool_txn_state_del(struct tl_spool_txn *txn, const char *name);

/** Receives states from tl_spool_state_scan(); @p val is valid during the call only.
 *  @return 0 to go on, non-zero to stop. */
typedef int (*tl_spool_state_fn)(void *arg, const char *name, const void *val, size_t len);

/**
 * Every state whose name starts with @p prefix, in name order, in one read transaction
 * (a snapshot). Thread-safe.
 * @return the number passed to @p fn; -EINVAL; TL_E_SPOOL.
 */
int tl_spool_state_scan(struct tl_spool *sp, const char *prefix, tl_spool_state_fn fn, void *arg);

/**
 * From a transaction hook: how many times the hook already ran for the records of this
 * transaction (0 the first time; more after a map-full retry, whose earlier transaction
 * was not stored). A hook that changes memory of its own restores it when this is > 0.
 */
unsigned tl_spool_txn_attempt(const struct tl_spool_txn *txn);

/**
 * From a transaction hook: store one more record (e.g. rows derived from the committed
 * ones), with the next key, in the hook's transaction: committed with them or not at
 * all. It counts like a producer's record but gets no commit callback; readers see it
 * like any other. @p producer is the index recorded in it.
 * @param key  out (may be NULL): its key.
 * @return 0; -EINVAL (producer out of range, longer than buffer_size); -ENOSPC (the map
 *         is full: the round is retried in a larger map, the hook runs again); TL_E_SPOOL.
 */
int tl_spool_txn_put_record(
        struct tl_spool_txn *txn, unsigned producer, const void *data, uint32_t len, uint64_t *key);

/**
 * Read the value stored under @p name (read-only transaction; thread-safe).
 * @param val out: a malloc'd copy (caller frees), NULL if absent.
 * @return 0 (also when absent: *val NULL, *len 0); -ENOMEM; TL_E_SPOOL.
 */
int tl_spool_state_get(struct tl_spool *sp, const char *name, void **val, size_t *len);

/**
 * Stop the writer after a final commit of everything already handed over, then close.
 * Producers must have stopped calling tl_spool_buf_*; readers must have returned.
 * NULL-safe.
 */
void tl_spool_close(struct tl_spool *sp);

/**
 * Take a free buffer from @p producer's pool.
 * Never blocks, locks or allocates.
 * @return a buffer with len 0, or NULL if the pool is exhausted (records still waiting
 *         for their commit: back-pressure) or @p producer is out of range.
 */
struct tl_spool_buf *tl_spool_buf_get(struct tl_spool *sp, unsigned producer);

/**
 * Hand a filled buffer to the writer. Never blocks, locks or allocates.
 * On success the buffer belongs to the spool until its commit callback has run and it is
 * back in the pool. On failure the producer keeps it: it may put it again later or give
 * it back with tl_spool_buf_release().
 * @return 0; -ENOSPC (full, back-pressure policy: counted); -EINVAL (@p buf is not one
 *         of @p producer's buffers, or len > cap); the writer's error if it failed.
 */
int tl_spool_buf_put(struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf);

/** tl_spool_buf_put_flags() flags. */
#define TL_SPOOL_PUT_FORCE                                                                         \
	0x1u /**< accept even over the high-water mark (back-pressure                              \
	          policy): the caller has already refused new work at                              \
	          the mark and must not lose this record. The writer                               \
	          stores it unless the map is at max_size (then the                                \
	          commit callback gets -ENOSPC, counted as lost). */

#define TL_SPOOL_PUT_MORE                                                                          \
	0x2u /**< this record commits in the same transaction as the                               \
	          producer's next one: a run of MORE records ends with                             \
	          a put without MORE (or tl_spool_publish()), and only                             \
	          then does the writer see the run, all of it at once.                             \
	          The run's buffers stay taken until then: a run longer                            \
	          than the pool never ends. */

/** tl_spool_buf_put() with @p flags (0, TL_SPOOL_PUT_FORCE, TL_SPOOL_PUT_MORE). */
int tl_spool_buf_put_flags(
        struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf, unsigned flags);

/**
 * End @p producer's run of MORE records without another record: the last one put
 * becomes the run's end and the writer takes them, in one transaction. No-op without a
 * run. Producer side, like the puts; tl_spool_close() ends runs left open.
 * @return 0; -EINVAL.
 */
int tl_spool_publish(struct tl_spool *sp, unsigned producer);

/**
 * Give a buffer back without storing it (e.g. a refused batch the producer drops). It
 * returns to the pool through the writer; no commit callback. Never blocks, locks or
 * allocates, and is never refused.
 * @return 0; -EINVAL (@p buf is not one of @p producer's buffers, or not held).
 */
int tl_spool_buf_release(struct tl_spool *sp, unsigned producer, struct tl_spool_buf *buf);

/** One record as passed to a tl_spool_read_fn. */
struct tl_spool_rec {
	uint64_t key;        /**< sequence number */
	uint64_t created_ns; /**< CLOCK_REALTIME when it was handed to the spool */
	const void *data;    /**< payload; valid only during the callback (points into the
	                          map, no alignment guarantee) */
	uint32_t len;        /**< payload bytes */
	uint16_t producer;   /**< producer index */
	int16_t owner;       /**< its durable claim (tl_spool_claim), -1: none */
};

/**
 * Receives records from tl_spool_read().
 * @return 0: taken, continue; > 0: taken, stop; < 0: not taken, stop (the read resumes at
 *         this record).
 */
typedef int (*tl_spool_read_fn)(void *arg, const struct tl_spool_rec *rec);

/**
 * Pass up to @p max committed records with key >= @p from_key to @p fn, in key order,
 * inside one read-only transaction (a snapshot). The writer keeps committing meanwhile;
 * only a map resize waits for the transaction to end, so @p fn should be short (copy or
 * compress, not send) and must not read again itself. A record that fails verification
 * is skipped and queued for quarantine.
 * Thread-safe.
 * @param next_key out (may be NULL): the key to read from next time.
 * @return the number of records taken (>= 0); -EINVAL; TL_E_SPOOL / TL_E_SPOOL_CORRUPT.
 */
int tl_spool_read(struct tl_spool *sp, uint64_t from_key, unsigned max, tl_spool_read_fn fn,
        void *arg, uint64_t *next_key);

/**
 * Like tl_spool_read() over the quarantine: rec->data is the raw stored value (header
 * and all, as found), rec->key the original key if it was 8 bytes (else 0), created_ns 0.
 */
int tl_spool_read_quarantine(struct tl_spool *sp, uint64_t from_key, unsigned max,
        tl_spool_read_fn fn, void *arg, uint64_t *next_key);

/**
 * Record @p key as delivered: the writer deletes it in its next transaction. Unknown keys
 * are counted (ack_unknown) and ignored. Thread-safe; takes a mutex (not for lcores).
 * @return 0; -EINVAL (key 0); -EROFS (read-only); -ENOMEM.
 */
int tl_spool_ack(struct tl_spool *sp, uint64_t key);

#define TL_SPOOL_MAX_OWNERS 64 /**< claimants: 0..63 */

/**
 * Claim record @p key for consumer @p owner (a failover target): stored durably in the
 * `owner` database by the writer's next transaction (wait for it with
 * tl_spool_sync_acks()) and read back with the record (tl_spool_rec.owner), also after a
 * restart; deleted with the record. A claim for a record no longer there is ignored.
 * Thread-safe; takes a mutex.
 * @return 0; -EINVAL (key 0 or out of range, owner >= TL_SPOOL_MAX_OWNERS); -EROFS
 *         (read-only); -ENOMEM.
 */
int tl_spool_claim(struct tl_spool *sp, uint64_t key, unsigned owner);

/**
 * Ask for a write transaction that runs the transaction hook even if no record and no
 * ack is waiting (with @c n 0 and no buffers): a hook that emits derived records on a
 * clock (rollup windows) gets its turn in a quiet appliance too. Kicks coalesce. Never
 * blocks; thread-safe.
 * @return the kick's number, for tl_spool_kick_wait() (0: @p sp NULL or read-only).
 */
uint64_t tl_spool_kick(struct tl_spool *sp);

/**
 * Wait until kick @p kick has been answered by a committed transaction.
 * @return 0; -EINVAL; -ETIMEDOUT; the writer's error if it failed.
 */
int tl_spool_kick_wait(struct tl_spool *sp, uint64_t kick, uint64_t timeout_ns);

/**
 * Wait until every ack, quarantine and claim queued before the call has been committed
 * (records producers hand over meanwhile are not waited for, so this does not wait on a
 * spool at its high-water mark). Not from the commit callback.
 * @return 0; -ETIMEDOUT; -EROFS; the writer's error if it failed.
 */
int tl_spool_sync_acks(struct tl_spool *sp, uint64_t timeout_ns);

/**
 * Move record @p key to the quarantine database (raw bytes, same key) instead of
 * deleting it: for a record a reader cannot use (not a batch, body does not decompress).
 * `tapline spool dump --quarantine` shows it; it no longer counts as pending. Applied by
 * the writer in its next transaction, like an ack; counted in tl_spool_stats.quarantined.
 * Thread-safe; takes a mutex.
 * @return 0; -EINVAL (key 0 or out of range); -EROFS (read-only); -ENOMEM.
 */
int tl_spool_quarantine(struct tl_spool *sp, uint64_t key);

/**
 * Wait until every record handed over and every ack queued before the call has been
 * committed (or dropped), or @p timeout_ns has passed. Not from the commit callback.
 * @return 0; -ETIMEDOUT; -EROFS (read-only); the writer's error if it failed.
 */
int tl_spool_flush(struct tl_spool *sp, uint64_t timeout_ns);

#define TL_SPOOL_HIST 40 /**< log2 buckets: bucket i counts values in [2^i, 2^(i+1)) */

/**
 * Counters. Each field is read atomically; the set is not one consistent snapshot.
 */
struct tl_spool_stats {
	uint64_t records;           /**< in the spool (committed, not acked) */
	uint64_t bytes;             /**< their payload bytes */
	uint64_t oldest_age_ns;     /**< now - creation of the oldest record; 0 if empty */
	uint64_t next_key;          /**< key the next record will get */
	uint64_t commits;           /**< write transactions committed */
	uint64_t records_committed; /**< records written since open */
	uint64_t bytes_committed;   /**< their payload bytes */
	uint64_t bytes_written;     /**< value bytes written (payload + spool headers) */
	uint64_t max_records_per_commit;
	uint64_t commit_ns[TL_SPOOL_HIST]; /**< transaction begin -> durable */
	uint64_t wait_ns[TL_SPOOL_HIST];   /**< tl_spool_buf_put -> committed */
	uint64_t records_per_commit[TL_SPOOL_HIST];
	uint64_t acked;       /**< records deleted after delivery */
	uint64_t ack_unknown; /**< acks of keys not in the spool */
	uint64_t map_size;    /**< current LMDB map size */
	uint64_t map_grows;
	uint64_t used_bytes; /**< live LMDB pages x page size */
	uint64_t max_size;
	uint64_t high_water_bytes;
	uint64_t high_water_hits; /**< transitions into the full state */
	uint64_t full; /**< 1 while full: a full buffer would cross the high-water mark, or
	                    the map is full at max_size */
	uint64_t dropped_newest;
	uint64_t dropped_oldest;
	uint64_t backpressure;       /**< tl_spool_buf_put refusals */
	uint64_t pool_empty;         /**< tl_spool_buf_get returned NULL */
	uint64_t quarantined;        /**< records moved to quarantine since open
	                                  (read-only: damaged records found at open) */
	uint64_t quarantine_records; /**< records in the quarantine database */
	uint64_t lost;               /**< not stored: the writer failed, or closed while full */
	int64_t error;               /**< the writer's fatal error, 0 while healthy */
};

/**
 * Whether a producer's buffer is with the writer and not yet committed: more records are
 * about to become readable. Thread-safe, lock-free, cheap; NULL-safe (false).
 */
bool tl_spool_writing(const struct tl_spool *sp);

/**
 * Whether new work should be taken now, for a producer that answers its senders (framed
 * mode): two relaxed loads, cheap enough per frame.
 * @return 0; -ENOSPC (at the high-water mark: the same state that makes a plain put
 *         refuse under back-pressure); the writer's error once it failed; -EINVAL (NULL).
 */
int tl_spool_admit(const struct tl_spool *sp);

/** Fill @p st. Thread-safe, lock-free, cheap. NULL-safe for @p sp (zeroes @p st). */
void tl_spool_stats(const struct tl_spool *sp, struct tl_spool_stats *st);

/** Result of tl_spool_bench(). */
struct tl_spool_bench_result {
	uint64_t elapsed_ns;
	uint64_t records;       /**< committed */
	uint64_t events;        /**< records x events_per_record */
	uint64_t payload_bytes; /**< committed payload */
	uint64_t commits;
	double records_per_s;
	double events_per_s;
	double mb_per_s;      /**< payload MB (10^6) per second */
	double commit_p50_ns; /**< from the log2 histogram (bucket upper bound) */
	double commit_p99_ns;
};

/**
 * Durable commit throughput: one producer thread hands @p payload (copied into every
 * buffer) to a fresh spool at conf->path as fast as the pool allows for @p duration_ns;
 * every committed record is acked at once so the spool stays small (steady state).
 * conf->path must not hold a spool already; the environment files are removed afterwards
 * (the folder stays).
 * @param events_per_record events one payload stands for (for events_per_s).
 * @return 0; -EINVAL (payload larger than conf->buffer_size, empty, ...); -EEXIST;
 *         errors of tl_spool_open().
 */
int tl_spool_bench(const struct tl_spool_conf *conf, const void *payload, uint32_t len,
        uint32_t events_per_record, uint64_t duration_ns, struct tl_spool_bench_result *res);

#endif
