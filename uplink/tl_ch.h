/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * ClickHouse over HTTP(S) with libcurl: the `uplink:` option table, a synchronous query
 * for DDL and checks, and asynchronous inserts on a libcurl multi handle with a fixed
 * number of in-flight slots.
 *
 * Works with Debian's ClickHouse 18.16 and current releases: the query goes in the URL
 * (`?query=INSERT ...`), the rows in the POST body (RowBinary, TSV, ...), credentials as
 * HTTP basic auth (never in the URL). The error code comes from the
 * `X-ClickHouse-Exception-Code` header when the server sends one (current releases),
 * else from the `Code: N` that starts every ClickHouse error text (18.16 sends no header).
 *
 * ## Compression (`uplink.compression`)
 *
 * - gzip: `Content-Encoding: gzip` (libdeflate, gzip_level). Every release takes it.
 * - zstd: `Content-Encoding: zstd` (libzstd, zstd_level). Current releases take it;
 *   18.16 answers code 89 "Unknown Content-Encoding".
 * - lz4: ClickHouse's own framing (tl_chblock.h: LZ4 blocks with CityHash128 checksums)
 *   with `decompress=1` in the URL. 18.16 and current releases take it.
 * - none: bodies as given.
 * - auto (the default): zstd if the server takes it, else gzip.
 *
 * Why: one core compressing ~2 MB of sink_output rows (tests/uplink/test_chblock.c,
 * this machine): gzip level 1 ~350 MB/s at 5.7x, zstd level 1 ~970 MB/s at 9.5x, the LZ4
 * framing ~1020 MB/s at 4.5x. zstd is both smaller and nearly as fast as LZ4, so it wins
 * wherever the server takes it. Without it (18.16), gzip rather than LZ4 because:
 * - an appliance usually reaches its ClickHouse over a WAN or shared uplink where bytes
 *   are the limit (and cost egress): LZ4 sends about a quarter more bytes than gzip;
 * - a gzip body ends with a trailer, so a body cut short fails as a whole. 18.16 takes
 *   a plain body cut at a row boundary, or a framed one cut at a block boundary, as
 *   complete and inserts that prefix (ClickHouse issue #9666, fixed in later releases;
 *   reproduced here on 18.16);
 * - gzip is the one encoding every HTTP proxy or load balancer understands.
 * A core's throughput is min(speed, link rate x ratio), so LZ4 overtakes gzip once the
 * link carries more than about 75 MB/s (600 Mbit/s) per compressing core: same rack,
 * loopback. There choose lz4 explicitly (it also costs the server the least to
 * decompress); auto never picks it.
 *
 * Until tl_ch_negotiate() has run, auto sends gzip and an explicit choice is used as is.
 * The codec applies to TL_CH_BODY_PLAIN bodies; gzip and framed LZ4 bodies (a spooled
 * batch already compressed) go out as they are whatever the codec.
 *
 * ## Query ids
 *
 * An insert may carry a `query_id` (sent as the `query_id=` URL parameter). ClickHouse
 * refuses a second query with the id of one still running (code 216), and
 * tl_ch_query_running() asks system.processes whether an id is running. Together they
 * close the window of an ambiguous insert: after a timeout, wait until the id no longer
 * runs, then count the rows, then resend if they are missing.
 *
 * ## Outcome of an insert (enum tl_ch_outcome)
 *
 * This decides whether a batch is retried as is, bisected, or checked before resending:
 *
 * - TL_CH_OK: HTTP 200. ClickHouse answers an INSERT only once the rows are written.
 * - TL_CH_RETRY: the insert was certainly not applied; resend the same body later
 *   (tl_ch_backoff_ns()):
 *   - no byte of the body was handed to the connection: connection refused, DNS
 *     failure, connect timeout, TLS handshake or certificate failure (TL_CH_F_TLS);
 *     flag TL_CH_F_TRANSPORT;
 *   - ClickHouse answered an error whose code is not a data error (table, column or
 *     database missing: 8, 16, 47, 60, 81 with TL_CH_F_SCHEMA; too many parts 252,
 *     memory limit 241, too many queries 202, timeouts 159/209, read-only 164/242, ...);
 *     authentication and grants (192, 193, 194, 195, 291, 497, 516, or HTTP 401/403
 *     without a code) also set TL_CH_F_AUTH so the caller can alert;
 *   - an HTTP 4xx without a ClickHouse code (a proxy refused the request itself);
 *   - code 216 (QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING) with TL_CH_F_QUERY_RUNNING: this
 *     attempt was refused before it started, but an earlier attempt with the same
 *     query id is still running and may yet land: wait for it (tl_ch_query_running())
 *     and check the rows before resending, as for TL_CH_AMBIGUOUS;
 *   - code 89 (UNKNOWN_COMPRESSION_METHOD) with TL_CH_F_ENCODING | TL_CH_F_MAYBE_DATA:
 *     the server does not know the Content-Encoding (a server downgraded behind the
 *     URL: call tl_ch_negotiate() again), or a framed block's method byte is damaged.
 *   A ClickHouse error means the INSERT failed as a whole: rows are parsed into one block
 *   before anything is written as long as a batch stays below the server's
 *   max_insert_block_size (1,048,576 rows by default; TL_BATCH_MAX_ROWS) and the format
 *   is not parsed in parallel (RowBinary never is).
 *   Code 241 also sets TL_CH_F_MAYBE_DATA: 18.16 answers a RowBinary string whose length
 *   prefix is absurd (>= 4 GiB) with "memory limit exceeded" instead of a parse error,
 *   and a proxy's HTTP 413 sets it too; after a few such retries the caller should
 *   bisect as for TL_CH_REJECT.
 * - TL_CH_REJECT: ClickHouse refused the data itself (tl_ch_is_data_error(): 6, 19, 25,
 *   26, 27, 32, 33, 38, 39, 40, 41, 53, 69, 70, 72, 117, 128, 130, 131, 190, 271, 321,
 *   349, 354, 376, 407, 441, 467, 561, 691). Nothing was written; resending the same body
 *   fails the same way: bisect it (pipeline/tl_batch.h row ends) and quarantine the bad
 *   rows. Checked against 18.16: a truncated RowBinary row is 33, bad TSV/JSON 27, a bad
 *   date 38, datetime 41, FixedString overflow 131, a corrupt gzip body 354, a framed
 *   LZ4 block with a wrong checksum 40.
 *   When the body's compression rather than its rows is at fault, TL_CH_F_ENCODING is
 *   set: 354 (gzip), 561 (zstd), 39, 40 and 271 (LZ4 framing: size, checksum, data).
 *   Bisecting such a body by rows is pointless: rebuild it from the plain rows (a framed
 *   body decodes with tl_chblock_decode(), which names the damaged block) and send that;
 *   only if the plain rows are refused too are the rows at fault.
 * - TL_CH_AMBIGUOUS: body bytes were handed to the connection but no complete answer
 *   came (timeout, reset, server killed mid-request, HTTP 200 cut short), or an HTTP 5xx
 *   without a ClickHouse code (a proxy's 502/504: the server behind it may have
 *   written the rows), or code 319 (UNKNOWN_STATUS_OF_INSERT). The rows may or may not
 *   have landed: check before resending. With a plain or LZ4-framed body on 18.16 they
 *   may also have landed in part (a prefix: see the gzip rationale above): count rows,
 *   do not assume all or nothing. If the insert carried a query id, wait until it no
 *   longer runs (tl_ch_query_running()) before counting.
 *
 * "Sent" is counted by this client, not by libcurl's counters: libcurl silently resends
 * a request on a fresh connection when a reused one died without an answer, which could
 * write a batch twice after a server crash. The client refuses that rewind once any body
 * byte went out, so such a transfer ends as TL_CH_AMBIGUOUS instead.
 *
 * ## Threads, signals, memory
 *
 * One client per uplink thread: a struct tl_ch is not thread-safe; different clients may
 * be used from different threads at once. libcurl is initialised once per process
 * (thread-safe) and never cleaned up. Signals are not used (CURLOPT_NOSIGNAL): the
 * process must ignore SIGPIPE, as TLS writes to a closed peer raise it.
 *
 * Slots, their easy handles, URL, response and compression buffers are allocated at
 * open (the zstd context's workspace on its first use); a buffer (and that workspace)
 * grows only when a larger request than any before comes, so steady-state inserts
 * allocate nothing in this module (libcurl allocates internally per transfer).
 *
 * Secrets: the password is read from a file or an environment variable at open, sent
 * only in the Authorization header, never logged, and scrubbed from every message this
 * client returns.
 */
#ifndef TL_CH_H
#define TL_CH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_failover.h"
#include "tl_opt.h"

#define TL_CH_URL_LEN 512
#define TL_CH_NAME_LEN 128
#define TL_CH_PATH_LEN 256
#define TL_CH_MAX_IN_FLIGHT 64

/** `uplink.compression`, and the effective codec after tl_ch_negotiate(). */
enum tl_ch_compression {
	TL_CH_COMPRESS_NONE, /**< send plain bodies as given */
	TL_CH_COMPRESS_GZIP, /**< gzip plain bodies with libdeflate (Content-Encoding: gzip) */
	TL_CH_COMPRESS_ZSTD, /**< zstd plain bodies with libzstd (Content-Encoding: zstd) */
	TL_CH_COMPRESS_LZ4,  /**< ClickHouse LZ4 framing (tl_chblock.h) with decompress=1 */
	TL_CH_COMPRESS_AUTO, /**< zstd if the server takes it, else gzip (configuration only) */
};

/** "none", "gzip", "zstd", "lz4", "auto", NULL: indexed by enum tl_ch_compression. */
extern const char *const tl_ch_compression_names[];

/** The `uplink:` section of a profile (tl_uplink_opts). */
struct tl_uplink_conf {
	char url[TL_CH_URL_LEN];            /**< http(s)://host:port/[?database=db] */
	char database[TL_CH_NAME_LEN];      /**< default database of inserts */
	char user[TL_CH_NAME_LEN];          /**< ClickHouse user */
	char password_file[TL_CH_PATH_LEN]; /**< file holding the password (not secret) */
	char password_env[TL_CH_NAME_LEN];  /**< env variable holding it (the name, not secret) */
	char ca_file[TL_CH_PATH_LEN];       /**< PEM CA bundle for https ("" = system) */
	bool tls_verify;                    /**< verify the server certificate and name */
	uint64_t connect_timeout;           /**< ns */
	uint64_t timeout;                   /**< ns, whole request */
	uint64_t max_in_flight;             /**< inserts in flight at once */
	uint64_t backoff_initial;           /**< ns, cap of the first retry delay */
	uint64_t backoff_max;               /**< ns, cap of any retry delay */
	int compression;                    /**< enum tl_ch_compression */
	uint64_t gzip_level;                /**< libdeflate level 1..12 */
	uint64_t zstd_level;                /**< libzstd level 1..19 */
	uint64_t insert_bytes;              /**< largest INSERT body (uncompressed), bytes */
	uint64_t insert_delay;              /**< ns a partial INSERT waits while others fly */
	bool verify_rows;                   /**< walk every row against its table's types */
	bool stream;                        /**< streamed INSERTs where the codec allows */
	uint64_t streams;                   /**< streamed INSERTs open per table at once */
	struct tl_failover_conf failover;   /**< more targets, policies, health checks */
};

extern const struct tl_opt tl_uplink_opts[];

/**
 * Section check for `uplink:` (a tl_opt_check_fn): the URL parses, is http or https,
 * carries no user or password (use `user:` and password_file/password_env), at most
 * one password source is set, backoff_initial <= backoff_max.
 */
int tl_uplink_check(const void *obj, char *msg, size_t msglen);

/** An open client (opaque). */
struct tl_ch;

enum tl_ch_outcome {
	TL_CH_OK = 0,
	TL_CH_RETRY,
	TL_CH_REJECT,
	TL_CH_AMBIGUOUS,
};

/** @return "ok", "retry", "reject", "ambiguous" (or "?"); static. */
const char *tl_ch_outcome_name(enum tl_ch_outcome o);

/* Result flags (struct tl_ch_result.flags). */
#define TL_CH_F_TRANSPORT 0x1u      /**< no HTTP answer: see curl_code */
#define TL_CH_F_TLS 0x2u            /**< TLS handshake or certificate failure */
#define TL_CH_F_AUTH 0x4u           /**< credentials or grants refused: alert */
#define TL_CH_F_SCHEMA 0x8u         /**< table, column or database missing: re-apply DDL */
#define TL_CH_F_MAYBE_DATA 0x10u    /**< retryable, but may be caused by the body itself */
#define TL_CH_F_ENCODING 0x20u      /**< the body's compression was refused, not its rows */
#define TL_CH_F_QUERY_RUNNING 0x40u /**< code 216: an earlier attempt may still land */

#define TL_CH_MSG_LEN 192

/** The outcome of one insert (or of the last tl_ch_query). */
struct tl_ch_result {
	uint64_t id; /**< tl_ch_insert.id */
	void *user;  /**< tl_ch_insert.user */
	enum tl_ch_outcome outcome;
	uint32_t flags;              /**< TL_CH_F_* */
	int http_status;             /**< 0 if no HTTP answer */
	int ch_code;                 /**< ClickHouse error code, 0 if none */
	int curl_code;               /**< CURLcode, 0 if the transfer completed */
	uint64_t latency_ns;         /**< submit to completion */
	uint64_t bytes_sent;         /**< body bytes handed to the connection (as sent) */
	int encoding;                /**< enum tl_ch_compression the body went out in */
	char message[TL_CH_MSG_LEN]; /**< first line of the error, truncated; "" if OK */
};

/** What an insert's body holds (struct tl_ch_insert.kind). */
enum tl_ch_body {
	TL_CH_BODY_PLAIN = 0, /**< rows: compressed by the client with the effective codec */
	TL_CH_BODY_GZIP,      /**< a gzip member: sent as is with Content-Encoding: gzip */
	TL_CH_BODY_CHLZ4,     /**< framed LZ4 blocks (tl_chblock.h): as is, decompress=1 */
};

/** Longest query id tl_ch_submit() and tl_ch_query_running() take. */
#define TL_CH_QUERY_ID_MAX 64

/**
 * Pull the next bytes of a streamed insert's body (struct tl_ch_insert.pull). Called
 * from tl_ch_poll() and tl_ch_resume() on the caller's thread.
 * @param user   struct tl_ch_insert.user
 * @param off    bytes of the body pulled so far
 * @param data   out: the body's bytes from @p off on
 * @return > 0: that many bytes at *data (valid until the caller changes its buffer, i.e.
 *         not across a return to the caller's own code); 0: the body is complete;
 *         -EAGAIN: nothing yet, the transfer waits for tl_ch_resume().
 */
typedef long (*tl_ch_pull_fn)(void *user, size_t off, const uint8_t **data);

/** One insert: `INSERT INTO database.table (columns) FORMAT format` + body. */
struct tl_ch_insert {
	uint64_t id;          /**< caller's id (batch id), returned in the result */
	const char *database; /**< NULL: the client's database */
	const char *table;
	const char *columns;  /**< "a, b, c" or NULL/"" for all columns in table order */
	const char *format;   /**< e.g. "RowBinary" */
	const void *body;     /**< must stay valid until tl_ch_poll returns this insert */
	size_t len;           /**< > 0 */
	enum tl_ch_body kind; /**< what body holds; 0 (TL_CH_BODY_PLAIN) for rows */
	/** NULL, or 1..TL_CH_QUERY_ID_MAX characters of [A-Za-z0-9_.:-], sent as query_id=.
	 * Copied at submit. Reuse it when resending the same rows. */
	const char *query_id;
	void *user; /**< returned in the result */
	/**
	 * NULL: body/len hold the whole body. Else a streamed insert: body/len are ignored,
	 * the body is pulled with this function as it grows and goes out with chunked
	 * transfer encoding, so the server parses rows while the caller still adds them and
	 * writes them as one part when the body ends (one INSERT of rows, however long it
	 * took to arrive). A TL_CH_BODY_CHLZ4 body streams as it is (the caller pulls whole
	 * framed blocks); a TL_CH_BODY_PLAIN body needs the codec none or lz4 (each pulled
	 * piece becomes LZ4 blocks): gzip and zstd cannot stream here.
	 */
	tl_ch_pull_fn pull;
};

/**
 * Open a client: read the password, create the multi handle and max_in_flight slots.
 * No connection is made yet.
 *
 * A `database=` parameter in the URL (e.g. from `--clickhouse URL`) replaces
 * conf->database and is removed from the URL (so `CREATE DATABASE` works through it).
 *
 * @return 0 and *out set; -EINVAL if the configuration is unusable (bad URL, a password
 *         in the URL, both password sources set, bad name, a level or compression out
 *         of range); -ENOENT if password_env is not set; -errno if password_file cannot
 *         be read; -E2BIG if the password is longer than 1023 bytes; -ENOMEM; -EIO if
 *         libcurl, libdeflate or libzstd fail.
 *         Problems are logged (names, never the secret).
 */
int tl_ch_open(const struct tl_uplink_conf *conf, struct tl_ch **out);

/**
 * Close a client. Inserts still in flight are abandoned: their outcome is unknown to the
 * caller (treat them as TL_CH_AMBIGUOUS). NULL-safe.
 */
void tl_ch_close(struct tl_ch *ch);

/** @return the default database of inserts (conf or URL). Owned by @p ch. */
const char *tl_ch_database(const struct tl_ch *ch);

/**
 * Use database @p db instead of the configured one (a route's database). Call before
 * any request. @return 0; -EINVAL if it is not a valid name.
 */
int tl_ch_set_database(struct tl_ch *ch, const char *db);

/**
 * Health check: `SELECT 1` synchronously, answered within @p timeout_ns (connect
 * included) or failed. Does not drive inserts in flight meanwhile.
 * @return 0; the errors of tl_ch_query().
 */
int tl_ch_ping(struct tl_ch *ch, uint64_t timeout_ns);

/**
 * Run one statement synchronously (DDL, checks): POST @p sql, wait for the whole answer
 * (`wait_end_of_query=1`, so an error found late still gives an error status). Does not
 * drive inserts in flight meanwhile.
 *
 * @param out  NULL, or receives the response body, NUL-terminated, allocated with
 *             malloc (the caller frees it); set to NULL on error.
 * @param len  NULL, or receives the body length (without the NUL).
 * @return 0; -EREMOTEIO if ClickHouse answered an error; -EACCES if it refused the
 *         credentials; -ECONNREFUSED, -EHOSTUNREACH (DNS), -ETIMEDOUT, -EPROTO (TLS),
 *         -ECONNRESET or -EIO for transport failures; -EFBIG if the answer exceeds
 *         64 MiB; -ENOMEM; -EINVAL. Details (code, message, outcome) are in
 *         tl_ch_last_error().
 */
int tl_ch_query(struct tl_ch *ch, const char *sql, char **out, size_t *len);

/**
 * @return the result of the last synchronous request (tl_ch_query, tl_ch_version,
 *         tl_ch_query_running, tl_ch_negotiate's probe); owned by @p ch.
 */
const struct tl_ch_result *tl_ch_last_error(const struct tl_ch *ch);

struct tl_ch_server_version {
	uint32_t major, minor, patch;
	char text[64]; /**< as the server prints it, e.g. "18.16.1" */
};

/**
 * `SELECT version()`.
 * @return 0; the errors of tl_ch_query; -EPROTO if the answer is not a version.
 */
int tl_ch_version(struct tl_ch *ch, struct tl_ch_server_version *v);

/**
 * Probe the server once for the configured compression and settle the codec plain
 * bodies are sent with from now on. Synchronous (one small request at most); does not
 * drive inserts in flight meanwhile. Call it after open and again after the server
 * changed (e.g. TL_CH_F_ENCODING on code 89).
 *
 * - none, gzip: nothing to probe (every release takes them).
 * - zstd: POST `SELECT 1` compressed with zstd, `Content-Encoding: zstd`; supported if
 *   the answer is "1".
 * - lz4: POST `SELECT 1` as one framed LZ4 block with `decompress=1` (the server
 *   decompresses the body before parsing the query from it; 18.16 and current).
 * - auto: the zstd probe; zstd if supported, else gzip.
 *
 * A server that answers a probe with an error about the encoding (code 89, 354, 561,
 * 39, 40, 271, 62 or 115, or HTTP 415) does not support it.
 *
 * @param effective NULL, or out: the codec now in use (enum tl_ch_compression, never
 *                  AUTO).
 * @return 0; -ENOTSUP if an explicit zstd or lz4 is not supported: logged as an error,
 *         and the client falls back to gzip (the caller may close it instead); the
 *         errors of tl_ch_query() if a probe got no usable answer (unreachable,
 *         credentials, overloaded): the codec is unchanged (auto stays gzip); -ENOMEM;
 *         -EIO if a compressor fails.
 */
int tl_ch_negotiate(struct tl_ch *ch, int *effective);

/** @return the codec plain bodies are sent with now (enum tl_ch_compression, not AUTO). */
int tl_ch_compression(const struct tl_ch *ch);

/**
 * Whether a query with this id is running on the server (system.processes; 18.16 and
 * current). The answer is about the server the URL reaches (one replica) and about
 * now: a request still travelling (in socket buffers after the client gave up) starts
 * after it. To close the ambiguous-insert window, have seen the id running or let the
 * server's receive timeout pass before trusting "not running".
 * @return 0 and *running; -EINVAL if @p query_id is not a valid query id; the errors of
 *         tl_ch_query(); -EPROTO if the answer is not a count.
 */
int tl_ch_query_running(struct tl_ch *ch, const char *query_id, bool *running);

/**
 * Start an insert. A plain body is compressed into the slot's buffer with the effective
 * codec (gzip, zstd or LZ4 framing); gzip and framed bodies are sent as they are. The
 * request goes out during tl_ch_poll().
 * @return 0; -EBUSY if max_in_flight inserts are in flight; -EINVAL if the insert is
 *         malformed (no table/format/body, a name with a backquote or control
 *         character, an unknown kind, a bad query id); -ENOMEM if a buffer could not
 *         grow; -EIO on a libcurl, libdeflate or libzstd failure.
 */
int tl_ch_submit(struct tl_ch *ch, const struct tl_ch_insert *ins);

/**
 * Whether plain inserts can be streamed (struct tl_ch_insert.pull) with the effective
 * codec. Framed LZ4 bodies always can.
 */
bool tl_ch_can_stream(const struct tl_ch *ch);

/**
 * A streamed insert's pull function has more to give (or the body has ended): continue
 * the transfer of the insert whose user pointer is @p user, if it waits.
 * @return 0; -ENOENT if no such streamed insert is in flight.
 */
int tl_ch_resume(struct tl_ch *ch, void *user);

/** @return the number of inserts in flight. */
unsigned tl_ch_in_flight(const struct tl_ch *ch);

/**
 * Drive the transfers and collect completed inserts.
 * Waits up to @p timeout_ms for at least one completion; returns at once if some are
 * ready or nothing is in flight. A completed insert's slot is free again on return.
 * @return the number of results written to @p results (0..max); -EINVAL if max is 0;
 *         -EIO if libcurl's multi interface fails.
 */
int tl_ch_poll(struct tl_ch *ch, int timeout_ms, struct tl_ch_result *results, unsigned max);

/**
 * Retry delay: exponential backoff with full jitter. The cap is
 * min(backoff_max, backoff_initial * 2^attempt); the delay is @p random64 scaled
 * uniformly onto [0, cap]. Deterministic in its inputs.
 * @param attempt  0 for the first retry.
 * @param random64 a uniformly random 64-bit value supplied by the caller.
 * @return nanoseconds to wait.
 */
uint64_t tl_ch_backoff_ns(const struct tl_uplink_conf *conf, unsigned attempt, uint64_t random64);

/**
 * Classify an answer (the rules in this file's header). Pure; exposed for tests and for
 * callers that talk to ClickHouse otherwise.
 * @param curl_code   CURLcode of the transfer (0: completed).
 * @param http_status 0 if no status line came.
 * @param ch_code     ClickHouse code from the answer, 0 if none.
 * @param body_sent   whether any body byte was handed to a connection.
 * @param flags       out: TL_CH_F_*.
 */
enum tl_ch_outcome tl_ch_classify(
        int curl_code, int http_status, int ch_code, bool body_sent, uint32_t *flags);

/** @return true if ClickHouse @p code means the rows themselves are invalid. */
bool tl_ch_is_data_error(int code);

/**
 * Find the ClickHouse code in an error text: "Code: N" followed by ',' or '.'.
 * @return N, or 0 if there is none (or it is cut short).
 */
int tl_ch_parse_code(const char *text, size_t len);

#endif
