/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * ClickHouse over HTTP(S) with libcurl: the `uplink:` option table, a synchronous query
 * for DDL and checks, and asynchronous inserts on a libcurl multi handle with a fixed
 * number of in-flight slots.
 *
 * Works with Debian's ClickHouse 18.16 and current releases: the query goes in the URL
 * (`?query=INSERT ...`), the rows in the POST body as given (RowBinary, TSV, ...), gzip
 * bodies with `Content-Encoding: gzip`, credentials as HTTP basic auth (never in the URL).
 * The error code comes from the `X-ClickHouse-Exception-Code` header when the server
 * sends one (current releases), else from the `Code: N` that starts every ClickHouse
 * error text (18.16 sends no header).
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
 *   - an HTTP 4xx without a ClickHouse code (a proxy refused the request itself).
 *   A ClickHouse error means the INSERT failed as a whole: rows are parsed into one block
 *   before anything is written as long as a batch stays below the server's
 *   max_insert_block_size (1,048,576 rows by default; TL_BATCH_MAX_ROWS) and the format
 *   is not parsed in parallel (RowBinary never is).
 *   Code 241 also sets TL_CH_F_MAYBE_DATA: 18.16 answers a RowBinary string whose length
 *   prefix is absurd (>= 4 GiB) with "memory limit exceeded" instead of a parse error,
 *   and a proxy's HTTP 413 sets it too; after a few such retries the caller should
 *   bisect as for TL_CH_REJECT.
 * - TL_CH_REJECT: ClickHouse refused the data itself (tl_ch_is_data_error(): 6, 19, 25,
 *   26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 128, 130, 131, 190, 321, 349, 354, 376,
 *   407, 441, 467, 691). Nothing was written; resending the same body fails the same
 *   way: bisect it (pipeline/tl_batch.h row ends) and quarantine the bad rows. Checked
 *   against 18.16: a truncated RowBinary row is 33, bad TSV/JSON 27, a bad date 38,
 *   datetime 41, FixedString overflow 131, a corrupt gzip body 354.
 * - TL_CH_AMBIGUOUS: body bytes were handed to the connection but no complete answer
 *   came (timeout, reset, server killed mid-request, HTTP 200 cut short), or an HTTP 5xx
 *   without a ClickHouse code (a proxy's 502/504: the server behind it may have
 *   written the rows), or code 319 (UNKNOWN_STATUS_OF_INSERT). The rows may or may not
 *   have landed: check before resending.
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
 * Slots, their easy handles, URL, response and gzip buffers are allocated at open; a
 * buffer grows only when a larger request than any before comes, so steady-state inserts
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

#include "tl_opt.h"

#define TL_CH_URL_LEN 512
#define TL_CH_NAME_LEN 128
#define TL_CH_PATH_LEN 256
#define TL_CH_MAX_IN_FLIGHT 64

enum tl_ch_compression {
	TL_CH_COMPRESS_NONE, /**< send bodies as given */
	TL_CH_COMPRESS_GZIP, /**< gzip plain bodies with libdeflate before sending */
};

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
#define TL_CH_F_TRANSPORT 0x1u   /**< no HTTP answer: see curl_code */
#define TL_CH_F_TLS 0x2u         /**< TLS handshake or certificate failure */
#define TL_CH_F_AUTH 0x4u        /**< credentials or grants refused: alert */
#define TL_CH_F_SCHEMA 0x8u      /**< table, column or database missing: re-apply DDL */
#define TL_CH_F_MAYBE_DATA 0x10u /**< retryable, but may be caused by the body itself */

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
	uint64_t bytes_sent;         /**< body bytes handed to the connection (as sent: gzip'd) */
	char message[TL_CH_MSG_LEN]; /**< first line of the error, truncated; "" if OK */
};

/** One insert: `INSERT INTO database.table (columns) FORMAT format` + body. */
struct tl_ch_insert {
	uint64_t id;          /**< caller's id (batch id), returned in the result */
	const char *database; /**< NULL: the client's database */
	const char *table;
	const char *columns; /**< "a, b, c" or NULL/"" for all columns in table order */
	const char *format;  /**< e.g. "RowBinary" */
	const void *body;    /**< must stay valid until tl_ch_poll returns this insert */
	size_t len;          /**< > 0 */
	bool body_is_gzip;   /**< body is gzip: sent as is with Content-Encoding: gzip */
	void *user;          /**< returned in the result */
};

/**
 * Open a client: read the password, create the multi handle and max_in_flight slots.
 * No connection is made yet.
 *
 * A `database=` parameter in the URL (e.g. from `--clickhouse URL`) replaces
 * conf->database and is removed from the URL (so `CREATE DATABASE` works through it).
 *
 * @return 0 and *out set; -EINVAL if the configuration is unusable (bad URL, a password
 *         in the URL, both password sources set, bad name); -ENOENT if password_env is
 *         not set; -errno if password_file cannot be read; -E2BIG if the password is
 *         longer than 1023 bytes; -ENOMEM; -EIO if libcurl or libdeflate fail.
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

/** @return the result of the last tl_ch_query (or tl_ch_version); owned by @p ch. */
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
 * Start an insert. Plain bodies are gzip'd into the slot's buffer when compression is
 * gzip; the request goes out during tl_ch_poll().
 * @return 0; -EBUSY if max_in_flight inserts are in flight; -EINVAL if the insert is
 *         malformed (no table/format/body, a name with a backquote or control
 *         character); -ENOMEM if a buffer could not grow; -EIO on a libcurl or
 *         libdeflate failure.
 */
int tl_ch_submit(struct tl_ch *ch, const struct tl_ch_insert *ins);

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
