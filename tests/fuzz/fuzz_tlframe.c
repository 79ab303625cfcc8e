/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the framed protocol codec (tl_frame.h): frames through parse,
 * verify (a fixed key set, with and without unkeyed producers) and body decoding; ACKs
 * through tl_ack_parse with and without a key; keys files through tl_frame_keys_load.
 *
 * Input: one mode byte, then the bytes under test.
 *   mode & 0x80: the rest is a keys file (handed over as a memfd);
 *   mode & 0x40: the rest is an ACK;
 *   otherwise:   the rest is a frame; mode & 0x01 lets unkeyed producers in.
 *
 * Invariants: a parsed frame's body and tag lie inside the input and account for all of
 * it; an accepted body holds exactly count '\n'-terminated lines and raw_len bytes; an
 * accepted uncompressed frame re-encodes to the very same bytes (so does an accepted
 * ACK); what verifies under a key set that refuses unkeyed producers verifies under the
 * one that lets them in; a keys file either loads or fails with TL_E_CONFIG and a
 * "path:line: message".
 *
 * Seeds (tests/fuzz/corpus_tlframe) come from this file built as a program:
 *   cc -DTL_FUZZ_TLFRAME_GEN -Iconfig -Ipipeline -Itests/common tests/fuzz/fuzz_tlframe.c \
 *      pipeline/tl_frame.c -lzstd -lcrypto -o /tmp/gen && /tmp/gen tests/fuzz/corpus_tlframe
 * Run: build-asan/tests/fuzz_tlframe -max_total_time=60 tests/fuzz/corpus_tlframe
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tl_error.h"
#include "tl_frame.h"
#include "tl_test_fuzz.h"

#define MODE_KEYS 0x80
#define MODE_ACK 0x40
#define MODE_UNKEYED 0x01

/* producer 1: key ids 1 (32 bytes) and 2 (16 bytes); producer 2: key id 7 (64 bytes). */
#define K1_HEX "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
#define K2_HEX "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
#define K3_HEX                                                                                     \
	"f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"                         \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
static const char keys_text[] = "# fuzz keys\n"
                                "1 1 " K1_HEX "\n"
                                "1 2 " K2_HEX "\n"
                                "2 7 " K3_HEX "\n";

static uint8_t k1[32], k2[16], k3[64];

static void
unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		TL_FUZZ_CHECK(sscanf(s + 2 * i, "%2x", &v) == 1);
		out[i] = (uint8_t)v;
	}
}

static void
init_keys(void)
{
	unhex(K1_HEX, k1, sizeof(k1));
	unhex(K2_HEX, k2, sizeof(k2));
	unhex(K3_HEX, k3, sizeof(k3));
}

#ifndef TL_FUZZ_TLFRAME_GEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tl_frame_keys *strict, *lax;
static struct tl_frame_inflater *z;
static uint8_t scratch[TL_FRAME_MAX];

static void
init(void)
{
	char path[] = "/tmp/fuzz_tlframe_keys.XXXXXX", err[256];
	int fd = mkstemp(path);

	TL_FUZZ_CHECK(fd >= 0);
	TL_FUZZ_CHECK(write(fd, keys_text, strlen(keys_text)) == (ssize_t)strlen(keys_text));
	close(fd);
	TL_FUZZ_CHECK(tl_frame_keys_load(path, false, &strict, err, sizeof(err)) == 0);
	TL_FUZZ_CHECK(tl_frame_keys_load(path, true, &lax, err, sizeof(err)) == 0);
	unlink(path);
	TL_FUZZ_CHECK(tl_frame_inflater_create(&z) == 0);
	init_keys();
}

static void
fuzz_keys(const uint8_t *data, size_t size)
{
	struct tl_frame_keys *k = NULL;
	char path[64], err[256];
	int fd = memfd_create("fuzz_keys", MFD_CLOEXEC);
	int rc;

	TL_FUZZ_CHECK(fd >= 0);
	TL_FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rc = tl_frame_keys_load(path, false, &k, err, sizeof(err));
	close(fd);
	if (rc == 0) {
		TL_FUZZ_CHECK(k != NULL);
		tl_frame_keys_free(k);
		return;
	}
	TL_FUZZ_CHECK(rc == TL_E_CONFIG);
	TL_FUZZ_CHECK(k == NULL);
	TL_FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
}

static void
fuzz_ack(const uint8_t *data, size_t size)
{
	struct tl_ack a, b;
	uint8_t out[TL_ACK_MAX];
	int plain = tl_ack_parse(data, size, NULL, 0, &a);
	int keyed = tl_ack_parse(data, size, k1, sizeof(k1), &b);

	TL_FUZZ_CHECK(plain == 0 || plain == -EBADMSG);
	TL_FUZZ_CHECK(keyed == 0 || keyed == -EBADMSG || keyed == -EACCES);
	if (plain == 0) {
		TL_FUZZ_CHECK(tl_ack_encode(&a, NULL, 0, out, sizeof(out)) == TL_ACK_LEN);
		TL_FUZZ_CHECK(memcmp(out, data, TL_ACK_LEN) == 0);
	}
	if (keyed == 0) {
		TL_FUZZ_CHECK(plain == 0);
		TL_FUZZ_CHECK(a.status == b.status && a.reason == b.reason &&
		              a.producer_id == b.producer_id && a.sequence == b.sequence &&
		              a.count == b.count && a.retry_ms == b.retry_ms);
		TL_FUZZ_CHECK(size == TL_ACK_MAX);
		TL_FUZZ_CHECK(tl_ack_encode(&b, k1, sizeof(k1), out, sizeof(out)) == TL_ACK_MAX);
		TL_FUZZ_CHECK(memcmp(out, data, TL_ACK_MAX) == 0);
	}
}

static size_t
lines(const uint8_t *p, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

static void
fuzz_frame(const uint8_t *data, size_t size, bool unkeyed)
{
	struct tl_frame_view v;
	enum tl_frame_reason r, rs, rl;
	const uint8_t *body, *key = NULL;
	size_t len, key_len = 0;
	long n;

	r = tl_frame_parse(data, size, &v);
	TL_FUZZ_CHECK((unsigned)r < TL_FRAME_REASON_MAX);
	TL_FUZZ_CHECK(tl_frame_is_frame(data, size) == (size >= 4 && memcmp(data, "TLF1", 4) == 0));
	if (r != TL_FRAME_OK) {
		TL_FUZZ_CHECK(r != TL_FRAME_BAD_MAGIC || !tl_frame_is_frame(data, size));
		return;
	}
	TL_FUZZ_CHECK(tl_frame_is_frame(data, size));
	TL_FUZZ_CHECK(v.producer_id != 0 && v.sequence != 0);
	TL_FUZZ_CHECK(v.count >= 1 && v.count <= TL_FRAME_MAX_EVENTS);
	TL_FUZZ_CHECK(v.raw_len >= v.count && v.raw_len <= TL_FRAME_MAX_RAW);
	TL_FUZZ_CHECK((v.flags & ~TL_FRAME_F_KNOWN) == 0);
	TL_FUZZ_CHECK(v.body == data + TL_FRAME_HDR_LEN && v.body_len > 0);
	TL_FUZZ_CHECK(v.signed_bytes == data && v.signed_len == TL_FRAME_HDR_LEN + v.body_len);
	if (v.flags & TL_FRAME_F_HMAC) {
		TL_FUZZ_CHECK(v.tag == data + v.signed_len);
		TL_FUZZ_CHECK((uint64_t)v.signed_len + TL_FRAME_TAG_LEN == size);
	} else {
		TL_FUZZ_CHECK(v.tag == NULL && v.key_id == 0);
		TL_FUZZ_CHECK(v.signed_len == size);
	}
	rs = tl_frame_verify(strict, &v);
	rl = tl_frame_verify(lax, &v);
	TL_FUZZ_CHECK(rs == TL_FRAME_OK || rs == TL_FRAME_UNKNOWN_KEY || rs == TL_FRAME_BAD_TAG);
	TL_FUZZ_CHECK(rs != TL_FRAME_OK || rl == TL_FRAME_OK);
	TL_FUZZ_CHECK(tl_frame_verify(NULL, &v) == TL_FRAME_OK);
	r = unkeyed ? rl : rs;
	if (r == TL_FRAME_OK && (v.flags & TL_FRAME_F_HMAC)) {
		key = tl_frame_keys_find(strict, v.producer_id, v.key_id, &key_len);
		TL_FUZZ_CHECK(key != NULL);
	}
	r = tl_frame_body(z, &v, &body, &len);
	TL_FUZZ_CHECK(r == TL_FRAME_OK || r == TL_FRAME_BAD_COUNT || r == TL_FRAME_BAD_ZSTD);
	if (r != TL_FRAME_OK)
		return;
	TL_FUZZ_CHECK(len == v.raw_len && body[len - 1] == '\n' && lines(body, len) == v.count);
	if (!(v.flags & TL_FRAME_F_ZSTD)) {
		TL_FUZZ_CHECK(body == v.body);
		/* The only encoding of these fields: the same bytes again (and the same tag,
		 * when the key is known and verified it). */
		if (key != NULL || !(v.flags & TL_FRAME_F_HMAC)) {
			n = tl_frame_encode(v.producer_id, v.sequence, body, len, v.count, 0, key,
			        key_len, v.key_id, scratch, sizeof(scratch));
			TL_FUZZ_CHECK(n > 0 && (size_t)n == size);
			TL_FUZZ_CHECK(memcmp(scratch, data, size) == 0);
		}
	} else if (len <= TL_FRAME_MAX - TL_FRAME_HDR_LEN) {
		/* A decoded body survives a plain round trip. */
		struct tl_frame_view w;
		const uint8_t *b2;
		size_t l2;

		n = tl_frame_encode(v.producer_id, v.sequence, body, len, v.count, 0, NULL, 0, 0,
		        scratch, sizeof(scratch));
		TL_FUZZ_CHECK(n > 0);
		TL_FUZZ_CHECK(tl_frame_parse(scratch, (size_t)n, &w) == TL_FRAME_OK);
		TL_FUZZ_CHECK(tl_frame_body(NULL, &w, &b2, &l2) == TL_FRAME_OK);
		TL_FUZZ_CHECK(l2 == len);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t mode;

	if (strict == NULL)
		init();
	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if (mode & MODE_KEYS)
		fuzz_keys(data, size);
	else if (mode & MODE_ACK)
		fuzz_ack(data, size);
	else
		fuzz_frame(data, size, mode & MODE_UNKEYED);
	return 0;
}

#else /* TL_FUZZ_TLFRAME_GEN: write the seed corpus */

int main(int argc, char **argv);

static const char ev[] =
        "{\"query_id\":\"q-1842\",\"timestamp\":\"2026-11-21T05:00:00.123+05:30\","
        "\"event_type\":\"queued\",\"query_text\":\"select l_returnflag, sum(l_quantity) from "
        "lineitem group by l_returnflag\",\"metadata\":{\"user_id\":\"josé\",\"database\":"
        "\"tpch\",\"duration_ms\":0,\"rows_affected\":0}}\n"
        "{\"query_id\":\"q-1842\",\"timestamp\":\"2026-11-21T05:00:05.354+05:30\","
        "\"event_type\":\"failed\",\"query_text\":\"select l_returnflag, sum(l_quantity) from "
        "lineitem group by l_returnflag\",\"metadata\":{\"user_id\":\"josé\",\"database\":"
        "\"tpch\",\"duration_ms\":5231,\"rows_affected\":0,\"error\":\"java.lang."
        "OutOfMemoryError: GC overhead limit exceeded\"},\"payload\":{\"stage\":7}}\n";

static void
put(const char *dir, const char *name, uint8_t mode, const uint8_t *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	TL_FUZZ_CHECK(f != NULL);
	TL_FUZZ_CHECK(fwrite(&mode, 1, 1, f) == 1);
	TL_FUZZ_CHECK(fwrite(p, 1, n, f) == n);
	TL_FUZZ_CHECK(fclose(f) == 0);
}

static void
frame(const char *dir, const char *name, uint8_t mode, uint64_t producer, const uint8_t *evs,
        size_t len, uint32_t count, int level, const uint8_t *key, size_t key_len, uint32_t key_id)
{
	static uint8_t out[TL_FRAME_MAX];
	long n = tl_frame_encode(
	        producer, 1, evs, len, count, level, key, key_len, key_id, out, sizeof(out));

	TL_FUZZ_CHECK(n > 0);
	put(dir, name, mode, out, (size_t)n);
}

int
main(int argc, char **argv)
{
	static uint8_t many[40 * sizeof(ev)];
	struct tl_ack a = {.status = TL_ACK_COMMITTED, .producer_id = 1, .sequence = 1, .count = 2};
	uint8_t out[TL_ACK_MAX];
	size_t evlen = sizeof(ev) - 1, m = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	init_keys();
	for (int i = 0; i < 40; i++, m += evlen)
		memcpy(many + m, ev, evlen);
	frame(argv[1], "plain_unkeyed", MODE_UNKEYED, 3, (const uint8_t *)ev, evlen, 2, 0, NULL, 0,
	        0);
	frame(argv[1], "plain_hmac", 0, 1, (const uint8_t *)ev, evlen, 2, 0, k1, sizeof(k1), 1);
	frame(argv[1], "zstd_hmac", 0, 1, many, m, 80, 3, k2, sizeof(k2), 2);
	frame(argv[1], "zstd_unkeyed", MODE_UNKEYED, 4, many, m, 80, 3, NULL, 0, 0);
	frame(argv[1], "hmac_key64", 0, 2, (const uint8_t *)ev, evlen, 2, 0, k3, sizeof(k3), 7);
	TL_FUZZ_CHECK(tl_ack_encode(&a, NULL, 0, out, sizeof(out)) == TL_ACK_LEN);
	put(argv[1], "ack_plain", MODE_ACK, out, TL_ACK_LEN);
	a = (struct tl_ack){
	        .status = TL_ACK_RETRY_LATER, .producer_id = 1, .sequence = 9, .retry_ms = 200};
	TL_FUZZ_CHECK(tl_ack_encode(&a, k1, sizeof(k1), out, sizeof(out)) == TL_ACK_MAX);
	put(argv[1], "ack_signed", MODE_ACK, out, TL_ACK_MAX);
	put(argv[1], "keys_file", MODE_KEYS, (const uint8_t *)keys_text, strlen(keys_text));
	return 0;
}

#endif
