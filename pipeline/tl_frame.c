/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The framed protocol codec: frame and ACK layout, HMAC-SHA256 tags, zstd bodies and the
 * keys file. See tl_frame.h for the layout and docs/protocol.md ("Framed mode") for the
 * rules a producer follows.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "tl_error.h"
#include "tl_frame.h"
#include "tl_hex.h"

/* A keys file holds ids and hex keys: a few hundred KB at TL_FRAME_MAX_KEYS. Anything far
 * larger is not a keys file. */
#define KEYS_FILE_MAX (16u << 20)

struct key {
	uint64_t producer_id;
	uint32_t key_id;
	uint32_t line; /* where it was defined, for duplicate messages */
	uint8_t len;
	uint8_t bytes[TL_FRAME_KEY_MAX];
};

/* Sorted by (producer_id, key_id): binary search on the hot path, no allocation. */
struct tl_frame_keys {
	struct key *k;
	uint32_t n;
	bool allow_unkeyed;
};

struct tl_frame_inflater {
	ZSTD_DCtx *dctx;
	uint8_t *buf; /* TL_FRAME_MAX_RAW bytes */
};

static const char *const frame_reason_names[TL_FRAME_REASON_MAX] = {
        [TL_FRAME_OK] = "ok",
        [TL_FRAME_TRUNCATED] = "frame_truncated",
        [TL_FRAME_BAD_MAGIC] = "frame_bad_magic",
        [TL_FRAME_BAD_VERSION] = "frame_bad_version",
        [TL_FRAME_BAD_FLAGS] = "frame_bad_flags",
        [TL_FRAME_BAD_LENGTH] = "frame_bad_length",
        [TL_FRAME_BAD_COUNT] = "frame_bad_count",
        [TL_FRAME_BAD_PRODUCER] = "frame_bad_producer",
        [TL_FRAME_UNKNOWN_KEY] = "frame_unknown_key",
        [TL_FRAME_BAD_TAG] = "frame_bad_tag",
        [TL_FRAME_BAD_ZSTD] = "frame_bad_zstd",
};

static const char *const ack_status_names[TL_ACK_STATUS_MAX] = {
        [TL_ACK_COMMITTED] = "committed",
        [TL_ACK_DUPLICATE] = "duplicate",
        [TL_ACK_RETRY_LATER] = "retry_later",
        [TL_ACK_REJECTED] = "rejected",
};

const char *
tl_frame_reason_name(enum tl_frame_reason r)
{
	return (unsigned)r < TL_FRAME_REASON_MAX ? frame_reason_names[r] : "?";
}

const char *
tl_ack_status_name(enum tl_ack_status s)
{
	return (unsigned)s < TL_ACK_STATUS_MAX ? ack_status_names[s] : "?";
}

/* ---- big-endian fields ---- */

static inline uint16_t
get_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static inline void
put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* ---- helpers ---- */

static size_t key_lower_bound(
        const struct tl_frame_keys *keys, uint64_t producer_id, uint32_t key_id);

/* HMAC-SHA256 into out[TL_FRAME_TAG_LEN]. Fails only if OpenSSL cannot (out of memory, no
 * SHA-256 provider): callers fail closed. */
static bool
hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t n, uint8_t *out)
{
	unsigned int md_len = 0;

	if (key_len > INT_MAX)
		return false;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &md_len) == NULL)
		return false;
	return md_len == TL_FRAME_TAG_LEN;
}

/* Number of '\n' in p[0..n), or UINT64_MAX if the bytes do not end with '\n' (a last line
 * without its terminator is not an event). Stops counting past @p stop. */
static uint64_t
count_lines(const uint8_t *p, size_t n, uint64_t stop)
{
	const uint8_t *end = p + n;
	uint64_t lines = 0;

	if (n == 0 || end[-1] != '\n')
		return UINT64_MAX;
	while (p < end && lines <= stop) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		lines++;
		p = nl + 1;
	}
	return lines;
}

/* ---- frames ---- */

bool
tl_frame_is_frame(const uint8_t *buf, size_t len)
{
	return buf != NULL && len >= 4 && get_be32(buf) == TL_FRAME_MAGIC;
}

enum tl_frame_reason
tl_frame_parse(const uint8_t *buf, size_t len, struct tl_frame_view *v)
{
	static const uint8_t magic[4] = {'T', 'L', 'F', '1'};
	uint64_t need;

	v->producer_id = 0;
	v->sequence = 0;
	if (buf == NULL)
		len = 0;
	/* A short datagram that does not even start like a frame is raw input, not a
	 * truncated frame. */
	if (memcmp(buf ? buf : magic, magic, len < 4 ? len : 4) != 0)
		return TL_FRAME_BAD_MAGIC;
	if (len < TL_FRAME_HDR_LEN)
		return TL_FRAME_TRUNCATED;
	v->version = buf[4];
	v->flags = buf[5];
	if (v->version != TL_FRAME_VERSION || get_be16(buf + 6) != TL_FRAME_HDR_LEN)
		return TL_FRAME_BAD_VERSION;
	/* From here the layout is known: producer and sequence are filled even when the frame
	 * is refused, so that the caller can answer with a rejected ACK. */
	v->producer_id = get_be64(buf + 8);
	v->sequence = get_be64(buf + 16);
	v->count = get_be32(buf + 24);
	v->body_len = get_be32(buf + 28);
	v->raw_len = get_be32(buf + 32);
	v->key_id = get_be32(buf + 36);
	if (v->flags & ~TL_FRAME_F_KNOWN)
		return TL_FRAME_BAD_FLAGS;
	/* The key id is signed but means nothing without a tag: one meaning per byte string. */
	if (!(v->flags & TL_FRAME_F_HMAC) && v->key_id != 0)
		return TL_FRAME_BAD_FLAGS;
	if (v->producer_id == 0 || v->sequence == 0)
		return TL_FRAME_BAD_PRODUCER;
	if (v->count == 0 || v->count > TL_FRAME_MAX_EVENTS)
		return TL_FRAME_BAD_COUNT;
	if (v->body_len == 0 || v->raw_len == 0 || v->raw_len > TL_FRAME_MAX_RAW)
		return TL_FRAME_BAD_LENGTH;
	if (!(v->flags & TL_FRAME_F_ZSTD) && v->raw_len != v->body_len)
		return TL_FRAME_BAD_LENGTH;
	/* Every event is at least its '\n': refuse before spending time on the body. */
	if (v->raw_len < v->count)
		return TL_FRAME_BAD_COUNT;
	need = (uint64_t)TL_FRAME_HDR_LEN + v->body_len +
	       (v->flags & TL_FRAME_F_HMAC ? TL_FRAME_TAG_LEN : 0);
	if (need > TL_FRAME_MAX)
		return TL_FRAME_BAD_LENGTH;
	if ((uint64_t)len < need)
		return TL_FRAME_TRUNCATED;
	if ((uint64_t)len > need)
		return TL_FRAME_BAD_LENGTH;
	v->body = buf + TL_FRAME_HDR_LEN;
	v->signed_bytes = buf;
	v->signed_len = TL_FRAME_HDR_LEN + v->body_len;
	v->tag = v->flags & TL_FRAME_F_HMAC ? buf + v->signed_len : NULL;
	return TL_FRAME_OK;
}

enum tl_frame_reason
tl_frame_verify(const struct tl_frame_keys *keys, const struct tl_frame_view *v)
{
	uint8_t mac[TL_FRAME_TAG_LEN];
	const uint8_t *key;
	size_t key_len;
	int diff;

	if (keys == NULL)
		return TL_FRAME_OK;
	if (!(v->flags & TL_FRAME_F_HMAC) || v->tag == NULL) {
		/* A producer with keys must use them: otherwise anyone could send in its name
		 * by leaving the tag off. */
		size_t i = key_lower_bound(keys, v->producer_id, 0);

		if (i < keys->n && keys->k[i].producer_id == v->producer_id)
			return TL_FRAME_UNKNOWN_KEY;
		return keys->allow_unkeyed ? TL_FRAME_OK : TL_FRAME_UNKNOWN_KEY;
	}
	key = tl_frame_keys_find(keys, v->producer_id, v->key_id, &key_len);
	if (key == NULL)
		return TL_FRAME_UNKNOWN_KEY;
	if (!hmac_sha256(key, key_len, v->signed_bytes, v->signed_len, mac))
		return TL_FRAME_BAD_TAG;
	diff = CRYPTO_memcmp(mac, v->tag, TL_FRAME_TAG_LEN);
	OPENSSL_cleanse(mac, sizeof(mac));
	return diff == 0 ? TL_FRAME_OK : TL_FRAME_BAD_TAG;
}

int
tl_frame_inflater_create(struct tl_frame_inflater **out)
{
	struct tl_frame_inflater *z;

	*out = NULL;
	z = calloc(1, sizeof(*z));
	if (z == NULL)
		return -ENOMEM;
	z->buf = malloc(TL_FRAME_MAX_RAW);
	z->dctx = ZSTD_createDCtx();
	if (z->buf == NULL || z->dctx == NULL) {
		tl_frame_inflater_free(z);
		return -ENOMEM;
	}
	*out = z;
	return 0;
}

void
tl_frame_inflater_free(struct tl_frame_inflater *z)
{
	if (z == NULL)
		return;
	ZSTD_freeDCtx(z->dctx);
	free(z->buf);
	free(z);
}

enum tl_frame_reason
tl_frame_body(struct tl_frame_inflater *z, const struct tl_frame_view *v, const uint8_t **body,
        size_t *len)
{
	const uint8_t *p = v->body;
	size_t n = v->body_len;

	if (v->flags & TL_FRAME_F_ZSTD) {
		unsigned long long csize;
		size_t r;

		if (z == NULL || v->raw_len > TL_FRAME_MAX_RAW)
			return TL_FRAME_BAD_ZSTD;
		/* Exactly one zstd frame, nothing after it: ZSTD_decompressDCtx would otherwise
		 * go on through concatenated (or skippable) frames. */
		r = ZSTD_findFrameCompressedSize(p, n);
		if (ZSTD_isError(r) || r != n)
			return TL_FRAME_BAD_ZSTD;
		csize = ZSTD_getFrameContentSize(p, n);
		if (csize == ZSTD_CONTENTSIZE_ERROR)
			return TL_FRAME_BAD_ZSTD;
		if (csize != ZSTD_CONTENTSIZE_UNKNOWN && csize != v->raw_len)
			return TL_FRAME_BAD_ZSTD;
		/* Capacity raw_len: a frame that would inflate further fails here instead of
		 * writing past what the header promised. */
		r = ZSTD_decompressDCtx(z->dctx, z->buf, v->raw_len, p, n);
		if (ZSTD_isError(r) || r != v->raw_len)
			return TL_FRAME_BAD_ZSTD;
		p = z->buf;
		n = r;
	}
	if (count_lines(p, n, v->count) != v->count)
		return TL_FRAME_BAD_COUNT;
	*body = p;
	*len = n;
	return TL_FRAME_OK;
}

long
tl_frame_encode(uint64_t producer_id, uint64_t sequence, const uint8_t *events, size_t events_len,
        uint32_t count, int zstd_level, const uint8_t *key, size_t key_len, uint32_t key_id,
        uint8_t *out, size_t cap)
{
	size_t tag_len = key != NULL ? TL_FRAME_TAG_LEN : 0;
	size_t limit = cap < TL_FRAME_MAX ? cap : TL_FRAME_MAX;
	size_t body_len = 0;
	uint8_t flags = 0;

	if (events == NULL || events_len == 0 || out == NULL || producer_id == 0 || sequence == 0 ||
	        count == 0 || count > TL_FRAME_MAX_EVENTS || (key != NULL && key_len == 0))
		return -EINVAL;
	if (count_lines(events, events_len, count) != count)
		return -EINVAL;
	if (events_len > TL_FRAME_MAX_RAW || limit < TL_FRAME_HDR_LEN + tag_len)
		return -E2BIG;
	if (zstd_level > 0) {
		size_t room = limit - TL_FRAME_HDR_LEN - tag_len;
		size_t r;

		/* Capacity below events_len: zstd fails with dstSize_tooSmall exactly when
		 * compressing does not pay, and the body goes out as it is. */
		if (room > events_len - 1)
			room = events_len - 1;
		r = ZSTD_compress(out + TL_FRAME_HDR_LEN, room, events, events_len, zstd_level);
		if (!ZSTD_isError(r)) {
			body_len = r;
			flags |= TL_FRAME_F_ZSTD;
		} else if (ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall) {
			return -EIO;
		}
	}
	if (!(flags & TL_FRAME_F_ZSTD)) {
		if (events_len > limit - TL_FRAME_HDR_LEN - tag_len)
			return -E2BIG;
		memcpy(out + TL_FRAME_HDR_LEN, events, events_len);
		body_len = events_len;
	}
	if (key != NULL)
		flags |= TL_FRAME_F_HMAC;
	put_be32(out, TL_FRAME_MAGIC);
	out[4] = TL_FRAME_VERSION;
	out[5] = flags;
	put_be16(out + 6, TL_FRAME_HDR_LEN);
	put_be64(out + 8, producer_id);
	put_be64(out + 16, sequence);
	put_be32(out + 24, count);
	put_be32(out + 28, (uint32_t)body_len);
	put_be32(out + 32, (uint32_t)events_len);
	put_be32(out + 36, key != NULL ? key_id : 0);
	if (key != NULL && !hmac_sha256(key, key_len, out, TL_FRAME_HDR_LEN + body_len,
	                           out + TL_FRAME_HDR_LEN + body_len))
		return -EIO;
	return (long)(TL_FRAME_HDR_LEN + body_len + tag_len);
}

/* ---- ACKs ---- */

/* The fields must agree with the status: a reason only when rejected, a count only for
 * events that are in the spool, a delay only with retry-later. */
static bool
ack_consistent(const struct tl_ack *a)
{
	if (a->status >= TL_ACK_STATUS_MAX || a->reason >= TL_FRAME_REASON_MAX)
		return false;
	if ((a->status == TL_ACK_REJECTED) != (a->reason != TL_FRAME_OK))
		return false;
	if (a->count != 0 && a->status != TL_ACK_COMMITTED && a->status != TL_ACK_DUPLICATE)
		return false;
	if (a->retry_ms != 0 && a->status != TL_ACK_RETRY_LATER)
		return false;
	return true;
}

long
tl_ack_encode(const struct tl_ack *a, const uint8_t *key, size_t key_len, uint8_t *out, size_t cap)
{
	size_t n = key != NULL ? TL_ACK_MAX : TL_ACK_LEN;

	if (a == NULL || out == NULL || (key != NULL && key_len == 0) || !ack_consistent(a))
		return -EINVAL;
	if (cap < n)
		return -E2BIG;
	put_be32(out, TL_ACK_MAGIC);
	out[4] = TL_FRAME_VERSION;
	out[5] = a->status;
	put_be16(out + 6, a->reason);
	put_be64(out + 8, a->producer_id);
	put_be64(out + 16, a->sequence);
	put_be32(out + 24, a->count);
	put_be32(out + 28, a->retry_ms);
	if (key != NULL && !hmac_sha256(key, key_len, out, TL_ACK_LEN, out + TL_ACK_LEN))
		return -EIO;
	return (long)n;
}

int
tl_ack_parse(const uint8_t *buf, size_t len, const uint8_t *key, size_t key_len, struct tl_ack *a)
{
	struct tl_ack t;

	if (buf == NULL || a == NULL || (len != TL_ACK_LEN && len != TL_ACK_MAX))
		return -EBADMSG;
	if (get_be32(buf) != TL_ACK_MAGIC || buf[4] != TL_FRAME_VERSION)
		return -EBADMSG;
	/* Authenticate before believing any field. */
	if (key != NULL) {
		uint8_t mac[TL_FRAME_TAG_LEN];
		int diff;

		if (len != TL_ACK_MAX || key_len == 0)
			return -EACCES;
		if (!hmac_sha256(key, key_len, buf, TL_ACK_LEN, mac))
			return -EACCES;
		diff = CRYPTO_memcmp(mac, buf + TL_ACK_LEN, TL_FRAME_TAG_LEN);
		OPENSSL_cleanse(mac, sizeof(mac));
		if (diff != 0)
			return -EACCES;
	}
	t.status = buf[5];
	t.reason = get_be16(buf + 6);
	t.producer_id = get_be64(buf + 8);
	t.sequence = get_be64(buf + 16);
	t.count = get_be32(buf + 24);
	t.retry_ms = get_be32(buf + 28);
	if (!ack_consistent(&t))
		return -EBADMSG;
	*a = t;
	return 0;
}

/* ---- keys ---- */

static int
key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;

	if (a->producer_id != b->producer_id)
		return a->producer_id < b->producer_id ? -1 : 1;
	if (a->key_id != b->key_id)
		return a->key_id < b->key_id ? -1 : 1;
	return a->line < b->line ? -1 : a->line > b->line;
}

/* Index of the first key >= (producer_id, key_id). */
static size_t
key_lower_bound(const struct tl_frame_keys *keys, uint64_t producer_id, uint32_t key_id)
{
	size_t lo = 0, hi = keys->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct key *k = &keys->k[mid];

		if (k->producer_id < producer_id ||
		        (k->producer_id == producer_id && k->key_id < key_id))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const uint8_t *
tl_frame_keys_find(
        const struct tl_frame_keys *keys, uint64_t producer_id, uint32_t key_id, size_t *len)
{
	size_t i;

	if (keys == NULL)
		return NULL;
	i = key_lower_bound(keys, producer_id, key_id);
	if (i >= keys->n || keys->k[i].producer_id != producer_id || keys->k[i].key_id != key_id)
		return NULL;
	if (len != NULL)
		*len = keys->k[i].len;
	return keys->k[i].bytes;
}

void
tl_frame_keys_free(struct tl_frame_keys *keys)
{
	if (keys == NULL)
		return;
	if (keys->k != NULL) {
		OPENSSL_cleanse(keys->k, sizeof(*keys->k) * keys->n);
		free(keys->k);
	}
	free(keys);
}

static bool
is_blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Unsigned decimal, digits only, at most @p max. */
static bool
parse_dec(const uint8_t *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)s[i] - '0';

		if (d > 9 || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/*
 * One line of a keys file (without its '\n'). @return 1 and *k filled, 0 for a blank or
 * comment line, -1 with *msg set.
 */
static int
parse_key_line(const uint8_t *s, size_t n, struct key *k, const char **msg)
{
	const uint8_t *tok[4];
	size_t tlen[4];
	size_t ntok = 0, i = 0;
	uint64_t v;

	/* Everything from '#' on is a comment; ids and hex keys never contain one. */
	const uint8_t *hash = memchr(s, '#', n);

	if (hash != NULL)
		n = (size_t)(hash - s);
	while (i < n) {
		while (i < n && is_blank(s[i]))
			i++;
		if (i == n)
			break;
		if (ntok == 4)
			break;
		tok[ntok] = s + i;
		while (i < n && !is_blank(s[i]))
			i++;
		tlen[ntok] = (size_t)(s + i - tok[ntok]);
		ntok++;
	}
	if (ntok == 0)
		return 0;
	if (ntok != 3) {
		*msg = "expected `<producer_id> <key_id> <hex key>`";
		return -1;
	}
	if (!parse_dec(tok[0], tlen[0], UINT64_MAX, &v) || v == 0) {
		*msg = "producer id must be a decimal number from 1 to 18446744073709551615";
		return -1;
	}
	k->producer_id = v;
	if (!parse_dec(tok[1], tlen[1], UINT32_MAX, &v)) {
		*msg = "key id must be a decimal number from 0 to 4294967295";
		return -1;
	}
	k->key_id = (uint32_t)v;
	if (tlen[2] % 2 != 0 || tlen[2] < 32 || tlen[2] > 2 * TL_FRAME_KEY_MAX) {
		*msg = "key must be 32 to 128 hex digits (16 to 64 bytes)";
		return -1;
	}
	for (size_t j = 0; j < tlen[2] / 2; j++) {
		int hi = tl_hexval(tok[2][2 * j]), lo = tl_hexval(tok[2][2 * j + 1]);

		if (hi < 0 || lo < 0) {
			*msg = "key must be hex digits only";
			return -1;
		}
		k->bytes[j] = (uint8_t)(hi << 4 | lo);
	}
	k->len = (uint8_t)(tlen[2] / 2);
	return 1;
}

/* Read a whole regular file into one buffer (so that it can be wiped: no stdio copies
 * left behind by line readers). */
static int
read_file(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf = NULL;
	FILE *f;
	int rc;

	*out = NULL;
	*len = 0;
	f = fopen(path, "rbe");
	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fileno(f), &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = TL_E_CONFIG;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > KEYS_FILE_MAX) {
		rc = TL_E_CONFIG;
		snprintf(err, errlen, "%s: larger than %u bytes: not a keys file", path,
		        KEYS_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	*len = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		OPENSSL_cleanse(buf, *len);
		free(buf);
		goto out;
	}
	*out = buf;
	rc = 0;
out:
	fclose(f);
	return rc;
}

int
tl_frame_keys_load(
        const char *path, bool allow_unkeyed, struct tl_frame_keys **out, char *err, size_t errlen)
{
	struct tl_frame_keys *keys = NULL;
	uint8_t *buf = NULL;
	size_t len = 0, max = 1, pos;
	uint32_t line = 0;
	char dummy[1];
	int rc;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	*out = NULL;
	if (path == NULL)
		return -EINVAL;
	rc = read_file(path, &buf, &len, err, errlen);
	if (rc != 0)
		return rc;
	/* One key per line at most: size the array once, never realloc (which would leave
	 * unwiped copies of keys in freed memory). */
	for (pos = 0; pos < len; pos++)
		if (buf[pos] == '\n' && max < TL_FRAME_MAX_KEYS)
			max++;
	keys = calloc(1, sizeof(*keys));
	if (keys != NULL)
		keys->k = calloc(max, sizeof(*keys->k));
	if (keys == NULL || keys->k == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	keys->allow_unkeyed = allow_unkeyed;
	for (pos = 0; pos < len;) {
		const uint8_t *s = buf + pos;
		const uint8_t *nl = memchr(s, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - s) : len - pos;
		const char *msg = NULL;
		int r;

		line++;
		pos += n + 1;
		if (keys->n == max) {
			/* Only reachable past TL_FRAME_MAX_KEYS (max counts every line). */
			struct key scratch;

			r = parse_key_line(s, n, &scratch, &msg);
			OPENSSL_cleanse(&scratch, sizeof(scratch));
			if (r > 0) {
				rc = TL_E_CONFIG;
				snprintf(err, errlen, "%s:%u: more than %d keys", path, line,
				        TL_FRAME_MAX_KEYS);
				goto fail;
			}
		} else {
			r = parse_key_line(s, n, &keys->k[keys->n], &msg);
			if (r > 0) {
				keys->k[keys->n].line = line;
				keys->n++;
			}
		}
		if (r < 0) {
			rc = TL_E_CONFIG;
			snprintf(err, errlen, "%s:%u: %s", path, line, msg);
			goto fail;
		}
	}
	qsort(keys->k, keys->n, sizeof(*keys->k), key_cmp);
	/* Report the duplicate that comes first in the file. */
	{
		const struct key *dup = NULL, *first = NULL;

		for (uint32_t i = 1; i < keys->n; i++) {
			const struct key *a = &keys->k[i - 1], *b = &keys->k[i];

			if (a->producer_id == b->producer_id && a->key_id == b->key_id &&
			        (dup == NULL || b->line < dup->line)) {
				dup = b;
				first = a;
			}
		}
		if (dup != NULL) {
			rc = TL_E_CONFIG;
			snprintf(err, errlen,
			        "%s:%u: duplicate key: producer %llu key id %u already "
			        "defined on line %u",
			        path, dup->line, (unsigned long long)dup->producer_id, dup->key_id,
			        first->line);
			goto fail;
		}
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	*out = keys;
	return 0;
fail:
	if (keys != NULL && keys->k != NULL)
		keys->n = (uint32_t)max; /* wipe every slot, parsed or half-parsed */
	tl_frame_keys_free(keys);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}
