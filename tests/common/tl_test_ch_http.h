/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * The tests' own plain HTTP client for ClickHouse (libcurl easy interface): DDL,
 * inserts of prepared bodies and reading results back, independent of the uplink's
 * client under test. Header-only; link libcurl.
 */
#ifndef TL_TEST_CH_HTTP_H
#define TL_TEST_CH_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_test_clickhouse.h"

/** A reply: NUL-terminated, caller frees p. */
struct tl_test_http {
	char *p;
	size_t n;
};

static inline size_t
tl_test_http_write(char *d, size_t sz, size_t nm, void *arg)
{
	struct tl_test_http *h = arg;
	char *np = realloc(h->p, h->n + sz * nm + 1);

	if (np == NULL)
		return 0;
	h->p = np;
	memcpy(h->p + h->n, d, sz * nm);
	h->n += sz * nm;
	h->p[h->n] = '\0';
	return sz * nm;
}

/**
 * POST @p body to @p url with the extra header @p hdr (may be NULL; freed here).
 * @return the HTTP status, 0 if no answer; the reply is in *out (caller frees out->p).
 */
static inline long
tl_test_http_post(const char *url, const void *body, size_t len, struct curl_slist *hdr,
		struct tl_test_http *out)
{
	CURL *c = curl_easy_init();
	long code = 0;

	out->p = calloc(1, 1);
	out->n = 0;
	if (c == NULL) {
		curl_slist_free_all(hdr);
		return 0;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tl_test_http_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	return code;
}

/**
 * POST to @p ch. With @p query, it goes in the URL and @p body is the data (gzip'd when
 * @p gzip); without, @p body is the query.
 * @return the HTTP status, 0 if no answer; the reply is in *out (caller frees out->p).
 */
static inline long
tl_test_ch_post(const struct tl_test_ch *ch, const char *query, const void *body, size_t len,
		bool gzip, struct tl_test_http *out)
{
	char url[16384];

	if (query) {
		char *q = curl_easy_escape(NULL, query, 0); /* no handle needed (7.82+) */

		snprintf(url, sizeof(url), "%s?query=%s", ch->url, q ? q : "");
		curl_free(q);
	} else {
		snprintf(url, sizeof(url), "%s", ch->url);
	}
	return tl_test_http_post(url, body, len,
			gzip ? curl_slist_append(NULL, "Content-Encoding: gzip") : NULL, out);
}

#endif
