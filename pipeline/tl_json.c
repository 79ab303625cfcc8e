/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Strict single-pass JSON extractor.
 *
 * Shape of the parser: the objects on mapped paths (the top-level object, "metadata",
 * ...) are walked by parse_obj(), which looks each key up in the schema trie and hands
 * the value to parse_col() (a column), parse_prefix() (a deeper mapped object) or
 * unknown() (kept for the extra column). Everything else is validated by skip_value(),
 * which is iterative with a bit stack so that nesting bombs cost no C stack. parse_obj()
 * recursion is bounded by the schema's path depth, not by the input.
 *
 * Every reader checks against c->end before it dereferences: the input is not padded
 * and need not be terminated. The AVX2 string scanner uses full 32-byte loads only
 * while 32 bytes remain, then one overlapping load that ends exactly at c->end.
 *
 * On the first problem the parser stores the reason in the context and unwinds with
 * NULL, so the reason reported is the first one met in document order.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TL_JSON_X86 1
#endif

#include "tl_json.h"
#include "tl_json_private.h"
#include "tl_schema_private.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define NUM_FRAC 0x1u
#define NUM_EXP 0x2u

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
#define WS_MASK                                                                                    \
	((UINT64_C(1) << ' ') | (UINT64_C(1) << '\t') | (UINT64_C(1) << '\n') |                    \
	        (UINT64_C(1) << '\r'))

/* Chosen once at start-up (json_init); only the test hook changes it later. */
static int cpu_avx2;
static int use_avx2;
/* strtod() obeys LC_NUMERIC; numbers must parse the same whatever the process locale. */
static locale_t c_locale;

struct ctx {
	const uint8_t *buf;
	const uint8_t *end;
	const struct tl_schema *s;
	struct tl_event *ev;
	const uint8_t *errpos; /* where a string scanner stopped on error */
	enum tl_reason err;
	uint32_t max_depth;
	uint32_t max_string;
	uint32_t max_extra;
	int avx2;
	uint64_t prefix_seen; /* bit i: prefix object i met */
	uint32_t xhash[TL_EVENT_MAX_EXTRA];
	uint8_t xesc[TL_EVENT_MAX_EXTRA];
};

static const uint8_t *
fail(struct ctx *c, enum tl_reason r)
{
	c->err = r;
	return NULL;
}

static const uint8_t *
fail_at(struct ctx *c, enum tl_reason r, const uint8_t *at)
{
	c->err = r;
	c->errpos = at;
	return NULL;
}

static inline const uint8_t *
skip_ws(const uint8_t *p, const uint8_t *end)
{
	while (p < end && *p <= ' ' && ((WS_MASK >> *p) & 1))
		p++;
	return p;
}

static inline int
hexd(uint8_t ch)
{
	if ((unsigned)(ch - '0') < 10)
		return ch - '0';
	ch |= 0x20;
	if ((unsigned)(ch - 'a') < 6)
		return ch - 'a' + 10;
	return -1;
}

static inline int32_t
hex4(const uint8_t *p)
{
	int a = hexd(p[0]), b = hexd(p[1]), c = hexd(p[2]), d = hexd(p[3]);

	if ((a | b | c | d) < 0)
		return -1;
	return a << 12 | b << 8 | c << 4 | d;
}

/*
 * Validate one escape at p (*p == '\\'); return the byte after it. A \u escape of a
 * high surrogate must be followed by one of a low surrogate. Input that ends where a
 * valid escape could still continue is a syntax error (truncation); bytes that can
 * never form a valid code point are a UTF-8 error.
 */
static const uint8_t *
escape(struct ctx *c, const uint8_t *p)
{
	const uint8_t *end = c->end;
	const uint8_t *q;
	int32_t hi, lo;

	if (end - p < 2)
		return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
	switch (p[1]) {
	case '"':
	case '\\':
	case '/':
	case 'b':
	case 'f':
	case 'n':
	case 'r':
	case 't':
		return p + 2;
	case 'u':
		break;
	default:
		return fail_at(c, TL_REASON_EV_JSON_SYNTAX, p);
	}
	if (end - p < 6 || (hi = hex4(p + 2)) < 0)
		return fail_at(c, TL_REASON_EV_JSON_SYNTAX, p);
	if (hi < 0xD800 || hi > 0xDFFF)
		return p + 6;
	if (hi >= 0xDC00)
		return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
	q = p + 6;
	if ((q < end && q[0] != '\\') || (q + 1 < end && q[1] != 'u'))
		return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
	if (end - q < 6 || (lo = hex4(q + 2)) < 0)
		return fail_at(c, TL_REASON_EV_JSON_SYNTAX, q);
	if (lo < 0xDC00 || lo > 0xDFFF)
		return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
	return q + 6;
}

/*
 * Validate a run of non-ASCII bytes at p (*p >= 0x80) as UTF-8 (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF). Returns the first byte after the run.
 */
static const uint8_t *
utf8_run(struct ctx *c, const uint8_t *p)
{
	const uint8_t *end = c->end;

	while (p < end && *p >= 0x80) {
		uint8_t b = *p, lo = 0x80, hi = 0xBF;
		unsigned n;

		if (b < 0xC2 || b > 0xF4)
			return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
		n = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
		if (b == 0xE0)
			lo = 0xA0;
		else if (b == 0xED)
			hi = 0x9F;
		else if (b == 0xF0)
			lo = 0x90;
		else if (b == 0xF4)
			hi = 0x8F;
		if (p + 1 == end)
			return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
		if (p[1] < lo || p[1] > hi)
			return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
		for (unsigned i = 2; i < n; i++) {
			if (p + i == end)
				return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
			if ((p[i] & 0xC0) != 0x80)
				return fail_at(c, TL_REASON_EV_JSON_UTF8, p);
		}
		p += n;
	}
	return p;
}

/*
 * Bytes that end the fast scan of a string: '"', '\\', < 0x20 or >= 0x80. Classic
 * has-zero-byte tricks; a borrow only starts at a flagged byte, so the lowest flagged
 * byte is exact (the ones above it may be false positives, which is harmless).
 */
static inline uint64_t
swar_special(uint64_t v)
{
	uint64_t q = v ^ (ONES * '"');
	uint64_t b = v ^ (ONES * '\\');

	return (((q - ONES) & ~q) | ((b - ONES) & ~b) | ((v - ONES * 0x20) & ~v) | v) & HIGHS;
}

static inline int
byte_special(uint8_t b)
{
	return b == '"' || b == '\\' || b < 0x20 || b >= 0x80;
}

/*
 * Handle the special byte at p inside a string. Returns p itself if it is the closing
 * quote, the byte to resume scanning at otherwise, NULL on error.
 */
static inline const uint8_t *
special(struct ctx *c, const uint8_t *p, uint8_t *esc, int *done)
{
	if (*p == '"') {
		*done = 1;
		return p;
	}
	if (*p == '\\') {
		*esc = 1;
		return escape(c, p);
	}
	if (*p < 0x20)
		return fail_at(c, TL_REASON_EV_JSON_SYNTAX, p);
	return utf8_run(c, p);
}

/* Scalar scanner: 8 bytes at a time (SWAR), bytewise near the special ones. */
static const uint8_t *
scan_scalar(struct ctx *c, const uint8_t *p, uint8_t *esc)
{
	const uint8_t *end = c->end;
	int done = 0;

	for (;;) {
		if (end - p >= 8) {
			uint64_t v, m;

			memcpy(&v, p, 8);
			m = swar_special(v);
			if (m == 0) {
				p += 8;
				continue;
			}
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			p += __builtin_ctzll(m) >> 3;
#else
			while (!byte_special(*p))
				p++;
#endif
		} else {
			while (p < end && !byte_special(*p))
				p++;
			if (p == end)
				return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
		}
		p = special(c, p, esc, &done);
		if (p == NULL || done)
			return p;
	}
}

#ifdef TL_JSON_X86
static inline __attribute__((target("avx2"), always_inline)) uint32_t
avx2_mask(const uint8_t *p)
{
	const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
	/* Signed compare: 0x20 > v catches both v < 0x20 and v >= 0x80. */
	const __m256i s =
	        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')),
	                                _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\'))),
	                _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v));

	return (uint32_t)_mm256_movemask_epi8(s);
}

__attribute__((target("avx2"))) static const uint8_t *
scan_avx2(struct ctx *c, const uint8_t *p, uint8_t *esc)
{
	const uint8_t *end = c->end;
	int done = 0;

	for (;;) {
		uint32_t m;

		if (likely(end - p >= 64)) {
			uint32_t m2;

			m = avx2_mask(p);
			if (m == 0) {
				m2 = avx2_mask(p + 32);
				if (m2 == 0) {
					p += 64;
					continue;
				}
				p += 32;
				m = m2;
			}
		} else if (end - p >= 32) {
			m = avx2_mask(p);
			if (m == 0) {
				p += 32;
				continue;
			}
		} else if (p == end) {
			return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
		} else if (end - c->buf >= 32) {
			/* Last 32 bytes of the buffer, shifted so bit 0 is p. */
			const uint8_t *b = end - 32;

			m = avx2_mask(b) >> (p - b);
			if (m == 0)
				return fail_at(c, TL_REASON_EV_JSON_SYNTAX, end);
		} else {
			return scan_scalar(c, p, esc);
		}
		p += __builtin_ctz(m);
		p = special(c, p, esc, &done);
		if (p == NULL || done)
			return p;
	}
}
#endif

/*
 * Scan a string whose contents start at b; return its closing quote. Length is checked
 * against max_string; an error met beyond max_string bytes counts as "too long", since
 * the string was already too long when it was reached.
 */
static inline const uint8_t *
str(struct ctx *c, const uint8_t *b, uint8_t *esc)
{
	const uint8_t *q;

#ifdef TL_JSON_X86
	if (likely(c->avx2))
		q = scan_avx2(c, b, esc);
	else
#endif
		q = scan_scalar(c, b, esc);
	if (likely(q != NULL)) {
		if (unlikely((size_t)(q - b) > c->max_string))
			return fail(c, TL_REASON_EV_JSON_STRING_TOO_LONG);
		return q;
	}
	if ((size_t)(c->errpos - b) > c->max_string)
		c->err = TL_REASON_EV_JSON_STRING_TOO_LONG;
	return NULL;
}

static inline const uint8_t *
lit(struct ctx *c, const uint8_t *p, const char *w, uint32_t n)
{
	if (likely((size_t)(c->end - p) >= n && memcmp(p, w, n) == 0))
		return p + n;
	return fail(c, TL_REASON_EV_JSON_SYNTAX);
}

static inline int
is_digit(uint8_t b)
{
	return (unsigned)(b - '0') < 10;
}

/* RFC 8259 number grammar; *fl gets NUM_FRAC / NUM_EXP. */
static const uint8_t *
scan_number(struct ctx *c, const uint8_t *p, unsigned *fl)
{
	const uint8_t *end = c->end;

	*fl = 0;
	if (*p == '-' && ++p == end)
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	if (*p == '0') {
		p++;
	} else if ((unsigned)(*p - '1') < 9) {
		p++;
		while (p < end && is_digit(*p))
			p++;
	} else {
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	}
	if (p < end && *p == '.') {
		*fl |= NUM_FRAC;
		if (++p == end || !is_digit(*p))
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p | 0x20) == 'e') {
		*fl |= NUM_EXP;
		if (++p == end)
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		if ((*p == '+' || *p == '-') && ++p == end)
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		if (!is_digit(*p))
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		while (p < end && is_digit(*p))
			p++;
	}
	return p;
}

/* Object key at p (must be '"'): scan it, the colon and the whitespace around it. */
static inline const uint8_t *
member_key(struct ctx *c, const uint8_t *p, const uint8_t **k, uint32_t *klen, uint8_t *kesc)
{
	const uint8_t *end = c->end;
	const uint8_t *q;

	if (unlikely(*p != '"'))
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	*kesc = 0;
	q = str(c, p + 1, kesc);
	if (q == NULL)
		return NULL;
	*k = p + 1;
	*klen = (uint32_t)(q - (p + 1));
	p = q + 1;
	if (likely(p < end && *p == ':'))
		p++;
	else if ((p = skip_ws(p, end)) < end && *p == ':')
		p++;
	else
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	p = skip_ws(p, end);
	if (unlikely(p == end))
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	return p;
}

/*
 * Validate any value at p (p < end, whitespace skipped) nested in a container of depth
 * @p depth; return the byte after it. Iterative: bit i of stk is set when the container
 * at depth base+1+i is an object.
 */
static const uint8_t *
skip_value(struct ctx *c, const uint8_t *p, uint32_t depth)
{
	const uint8_t *end = c->end;
	const uint32_t base = depth;
	uint64_t stk[TL_SCHEMA_MAX_DEPTH / 64 + 1];
	const uint8_t *k;
	uint32_t klen;
	uint8_t esc;
	unsigned fl;

	for (;;) {
		uint8_t ch = *p;

		switch (ch) {
		case '"':
			esc = 0;
			p = str(c, p + 1, &esc);
			if (p == NULL)
				return NULL;
			p++;
			break;
		case '{':
		case '[': {
			uint32_t lvl = depth - base;

			if (unlikely(++depth > c->max_depth))
				return fail(c, TL_REASON_EV_JSON_DEPTH);
			if (ch == '{')
				stk[lvl >> 6] |= UINT64_C(1) << (lvl & 63);
			else
				stk[lvl >> 6] &= ~(UINT64_C(1) << (lvl & 63));
			p = skip_ws(p + 1, end);
			if (p == end)
				return fail(c, TL_REASON_EV_JSON_SYNTAX);
			if (*p == (ch == '{' ? '}' : ']')) {
				depth--;
				p++;
				break;
			}
			if (ch == '{') {
				p = member_key(c, p, &k, &klen, &esc);
				if (p == NULL)
					return NULL;
			}
			continue;
		}
		case 't':
			p = lit(c, p, "true", 4);
			break;
		case 'f':
			p = lit(c, p, "false", 5);
			break;
		case 'n':
			p = lit(c, p, "null", 4);
			break;
		default:
			if (ch != '-' && !is_digit(ch))
				return fail(c, TL_REASON_EV_JSON_SYNTAX);
			p = scan_number(c, p, &fl);
			break;
		}
		if (p == NULL)
			return NULL;
		/* A value ended: close containers until one has another element. */
		for (;;) {
			uint32_t lvl;
			int obj;

			if (depth == base)
				return p;
			lvl = depth - base - 1;
			obj = (stk[lvl >> 6] >> (lvl & 63)) & 1;
			p = skip_ws(p, end);
			if (p == end)
				return fail(c, TL_REASON_EV_JSON_SYNTAX);
			if (*p == ',') {
				p = skip_ws(p + 1, end);
				if (p == end)
					return fail(c, TL_REASON_EV_JSON_SYNTAX);
				if (obj) {
					p = member_key(c, p, &k, &klen, &esc);
					if (p == NULL)
						return NULL;
				}
				break;
			}
			if (*p != (obj ? '}' : ']'))
				return fail(c, TL_REASON_EV_JSON_SYNTAX);
			p++;
			depth--;
		}
	}
}

/*
 * Decode one character of an escaped string at *pp into out (1-4 bytes). The input is
 * normally validated already; malformed escapes are copied through rather than read
 * past @p end.
 */
static unsigned
dec_char(const uint8_t **pp, const uint8_t *end, uint8_t out[4])
{
	const uint8_t *p = *pp;
	uint32_t cp;
	int32_t h, lo;

	if (*p != '\\' || end - p < 2) {
		out[0] = *p;
		*pp = p + 1;
		return 1;
	}
	switch (p[1]) {
	case 'b':
		out[0] = '\b';
		break;
	case 'f':
		out[0] = '\f';
		break;
	case 'n':
		out[0] = '\n';
		break;
	case 'r':
		out[0] = '\r';
		break;
	case 't':
		out[0] = '\t';
		break;
	case 'u':
		h = end - p >= 6 ? hex4(p + 2) : -1;
		if (h < 0) {
			out[0] = '\\';
			*pp = p + 1;
			return 1;
		}
		cp = (uint32_t)h;
		p += 6;
		if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
			lo = hex4(p + 2);
			if (lo >= 0xDC00 && lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
				p += 6;
			}
		}
		*pp = p;
		if (cp < 0x80) {
			out[0] = (uint8_t)cp;
			return 1;
		}
		if (cp < 0x800) {
			out[0] = (uint8_t)(0xC0 | cp >> 6);
			out[1] = (uint8_t)(0x80 | (cp & 0x3F));
			return 2;
		}
		if (cp < 0x10000) {
			out[0] = (uint8_t)(0xE0 | cp >> 12);
			out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
			out[2] = (uint8_t)(0x80 | (cp & 0x3F));
			return 3;
		}
		out[0] = (uint8_t)(0xF0 | cp >> 18);
		out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		out[3] = (uint8_t)(0x80 | (cp & 0x3F));
		return 4;
	default: /* '"', '\\', '/' */
		out[0] = p[1];
		break;
	}
	*pp = p + 2;
	return 1;
}

size_t
tl_json_unescape(const uint8_t *in, size_t in_len, uint8_t *out)
{
	const uint8_t *p = in, *end = in + in_len;
	uint8_t *o = out;

	while (p < end) {
		const uint8_t *bs = memchr(p, '\\', (size_t)(end - p));
		size_t run = (size_t)((bs ? bs : end) - p);
		uint8_t ch[4];
		unsigned n;

		/* memmove: decoding never grows, so in == out works too. */
		memmove(o, p, run);
		o += run;
		p += run;
		if (p == end)
			break;
		n = dec_char(&p, end, ch);
		memcpy(o, ch, n);
		o += n;
	}
	return (size_t)(o - out);
}

/* FNV-1a of a key's decoded bytes (so "a" and "\u0061" collide, as they must). */
static uint32_t
key_hash(const uint8_t *k, uint32_t len, uint8_t esc)
{
	const uint8_t *p = k, *end = k + len;
	uint32_t h = 2166136261u;
	uint8_t ch[4];

	if (!esc) {
		for (; p < end; p++)
			h = (h ^ *p) * 16777619u;
		return h;
	}
	while (p < end) {
		unsigned n = dec_char(&p, end, ch);

		for (unsigned i = 0; i < n; i++)
			h = (h ^ ch[i]) * 16777619u;
	}
	return h;
}

/* Compare two keys by their decoded bytes. */
static int
key_equal(const uint8_t *a, uint32_t alen, uint8_t aesc, const uint8_t *b, uint32_t blen,
        uint8_t besc)
{
	const uint8_t *ea = a + alen, *eb = b + blen;
	uint8_t ba[4], bb[4];
	unsigned na = 0, nb = 0, ia = 0, ib = 0;

	if (!aesc && !besc)
		return alen == blen && memcmp(a, b, alen) == 0;
	for (;;) {
		if (ia == na && a < ea) {
			na = dec_char(&a, ea, ba);
			ia = 0;
		}
		if (ib == nb && b < eb) {
			nb = dec_char(&b, eb, bb);
			ib = 0;
		}
		if (ia == na || ib == nb)
			return ia == na && ib == nb;
		if (ba[ia++] != bb[ib++])
			return 0;
	}
}

/* Key head as the schema stores it: first min(len, 8) bytes, zero padded. */
static inline uint64_t
load_head(const uint8_t *k, uint32_t len, const uint8_t *end)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (likely(end - k >= 8)) {
		uint64_t v;

		memcpy(&v, k, 8);
		if (len < 8)
			v &= (UINT64_C(1) << (8 * len)) - 1;
		return v;
	}
#else
	(void)end;
#endif
	return tl_schema_head(k, len);
}

/*
 * Child of trie node @p node whose segment equals the key, or -1. Children are tried
 * from *hint on (the one after the previous match) since producers usually write the
 * fields in the same order the schema lists them.
 */
static inline int
lookup(const struct ctx *c, const struct tl_schema_node *n, const uint8_t *k, uint32_t klen,
        uint8_t kesc, uint32_t *hint)
{
	const struct tl_schema_trie *t = &c->s->trie;
	const uint8_t *end = c->end;
	uint8_t dec[TL_SCHEMA_PATH_MAX + 8];
	uint32_t i = *hint, cnt = n->n;
	uint64_t head;

	if (unlikely(kesc)) {
		/* Rare: an escaped key may still spell a mapped name. */
		const uint8_t *p = k, *e = k + klen;
		uint32_t dl = 0;

		memset(dec, 0, sizeof(dec));
		while (p < e) {
			uint8_t ch[4];
			unsigned m = dec_char(&p, e, ch);

			if (dl + m > t->max_seg)
				return -1;
			memcpy(dec + dl, ch, m);
			dl += m;
		}
		k = dec;
		klen = dl;
		end = dec + sizeof(dec);
	}
	if (klen > t->max_seg)
		return -1;
	head = load_head(k, klen, end);
	for (uint32_t j = 0; j < cnt; j++) {
		const struct tl_schema_key *e = &t->key[n->first + i];

		if (e->head == head && e->len == klen &&
		        (klen <= 8 || memcmp(k + 8, e->str + 8, klen - 8) == 0)) {
			*hint = i + 1 == cnt ? 0 : i + 1;
			return e->node;
		}
		if (++i == cnt)
			i = 0;
	}
	return -1;
}

static inline int
accepts_string(uint8_t t)
{
	return t == TL_COL_STRING || t == TL_COL_ANY || t == TL_COL_DATETIME;
}

static const uint8_t *
set_raw(struct ctx *c, struct tl_value *v, int ci, const uint8_t *p, const uint8_t *q)
{
	if ((size_t)(q - p) > c->s->col_max[ci])
		return fail(c, TL_REASON_EV_JSON_STRING_TOO_LONG);
	v->kind = TL_VAL_RAW;
	v->ptr = p;
	v->len = (uint32_t)(q - p);
	return q;
}

/* A number [p, q) for column ci of type t. */
static const uint8_t *
set_number(
        struct ctx *c, struct tl_value *v, int ci, const uint8_t *p, const uint8_t *q, unsigned fl)
{
	uint8_t t = c->s->col_type[ci];
	const uint8_t *d = p;
	uint64_t u = 0;
	int neg;

	if (t == TL_COL_ANY)
		return set_raw(c, v, ci, p, q);
	v->ptr = p;
	v->len = (uint32_t)(q - p);
	if (t == TL_COL_FLOAT64) {
		char tmp[128];
		const char *src = tmp;
		size_t n = (size_t)(q - p);

		if (n < sizeof(tmp)) {
			memcpy(tmp, p, n);
			tmp[n] = '\0';
		} else if (q < c->end) {
			/* Whatever ends a JSON number also ends it for strtod. */
			src = (const char *)p;
		} else {
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		}
		v->f = c_locale ? strtod_l(src, NULL, c_locale) : strtod(src, NULL);
		if (!isfinite(v->f))
			return fail(c, TL_REASON_EV_NUMBER_RANGE);
		v->kind = TL_VAL_FLOAT;
		return q;
	}
	if (t != TL_COL_INT64 && t != TL_COL_UINT64)
		return fail(c, TL_REASON_EV_FIELD_TYPE);
	if (fl)
		return fail(c, TL_REASON_EV_FIELD_TYPE);
	neg = *d == '-';
	d += neg;
	for (; d < q; d++)
		if (__builtin_mul_overflow(u, 10, &u) || __builtin_add_overflow(u, *d - '0', &u))
			return fail(c, TL_REASON_EV_NUMBER_RANGE);
	if (t == TL_COL_UINT64) {
		if (neg && u != 0)
			return fail(c, TL_REASON_EV_NUMBER_RANGE);
		v->kind = TL_VAL_UINT;
		v->u = u;
		return q;
	}
	if (neg) {
		if (u > (UINT64_C(1) << 63))
			return fail(c, TL_REASON_EV_NUMBER_RANGE);
		v->i = u == (UINT64_C(1) << 63) ? INT64_MIN : -(int64_t)u;
	} else {
		if (u > INT64_MAX)
			return fail(c, TL_REASON_EV_NUMBER_RANGE);
		v->i = (int64_t)u;
	}
	v->kind = TL_VAL_INT;
	return q;
}

/* The value at p of column ci, inside an object of depth @p depth. */
static const uint8_t *
parse_col(struct ctx *c, const uint8_t *p, int ci, uint32_t depth)
{
	struct tl_value *v = &c->ev->col[ci];
	const uint8_t t = c->s->col_type[ci];
	const uint8_t *q;
	unsigned fl;
	uint8_t esc;
	uint32_t len;

	if (unlikely(v->kind != TL_VAL_ABSENT))
		return fail(c, TL_REASON_EV_JSON_DUPLICATE_KEY);
	switch (*p) {
	case '"':
		esc = 0;
		q = str(c, p + 1, &esc);
		if (q == NULL)
			return NULL;
		len = (uint32_t)(q - (p + 1));
		if (!accepts_string(t))
			return fail(c, TL_REASON_EV_FIELD_TYPE);
		if (len > c->s->col_max[ci])
			return fail(c, TL_REASON_EV_JSON_STRING_TOO_LONG);
		v->ptr = p + 1;
		v->len = len;
		if (t == TL_COL_DATETIME) {
			if (esc || tl_json_parse_time(p + 1, len, &v->ns) != 0)
				return fail(c, TL_REASON_EV_TIMESTAMP);
			v->kind = TL_VAL_TIME;
		} else {
			v->kind = TL_VAL_STRING;
			v->escaped = esc;
		}
		return q + 1;
	case 'n':
		q = lit(c, p, "null", 4);
		if (q != NULL)
			v->kind = TL_VAL_NULL;
		return q;
	case 't':
	case 'f':
		q = *p == 't' ? lit(c, p, "true", 4) : lit(c, p, "false", 5);
		if (q == NULL)
			return NULL;
		if (t == TL_COL_ANY)
			return set_raw(c, v, ci, p, q);
		if (t != TL_COL_BOOL)
			return fail(c, TL_REASON_EV_FIELD_TYPE);
		v->kind = TL_VAL_BOOL;
		v->b = *p == 't';
		v->ptr = p;
		v->len = (uint32_t)(q - p);
		return q;
	case '{':
	case '[':
		q = skip_value(c, p, depth);
		if (q == NULL)
			return NULL;
		if (t != TL_COL_ANY)
			return fail(c, TL_REASON_EV_FIELD_TYPE);
		return set_raw(c, v, ci, p, q);
	default:
		if (*p != '-' && !is_digit(*p))
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		q = scan_number(c, p, &fl);
		if (q == NULL)
			return NULL;
		return set_number(c, v, ci, p, q, fl);
	}
}

/* An unknown member (key k) whose value is at p, in the object of prefix @p parent. */
static const uint8_t *
unknown(struct ctx *c, const uint8_t *p, int parent, const uint8_t *k, uint32_t klen, uint8_t kesc,
        uint32_t depth)
{
	struct tl_event *ev = c->ev;
	uint32_t h = key_hash(k, klen, kesc);
	struct tl_extra *x;
	const uint8_t *q;

	for (uint32_t i = 0; i < ev->n_extra; i++)
		if (c->xhash[i] == h && ev->extra[i].parent == parent &&
		        key_equal(
		                ev->extra[i].key, ev->extra[i].key_len, c->xesc[i], k, klen, kesc))
			return fail(c, TL_REASON_EV_JSON_DUPLICATE_KEY);
	if (ev->n_extra >= c->max_extra)
		return fail(c, TL_REASON_EV_JSON_TOO_MANY_FIELDS);
	q = skip_value(c, p, depth);
	if (q == NULL)
		return NULL;
	x = &ev->extra[ev->n_extra];
	x->key = k;
	x->key_len = klen;
	x->val = p;
	x->val_len = (uint32_t)(q - p);
	x->parent = parent;
	c->xhash[ev->n_extra] = h;
	c->xesc[ev->n_extra] = kesc;
	ev->n_extra++;
	return q;
}

static const uint8_t *parse_obj(struct ctx *c, const uint8_t *p, uint32_t node, uint32_t depth);

/* The value at p of a mapped object path (trie node @p node). */
static const uint8_t *
parse_prefix(struct ctx *c, const uint8_t *p, uint32_t node, uint32_t depth)
{
	uint64_t bit = UINT64_C(1) << c->s->trie.node[node].prefix;
	const uint8_t *q;

	if (c->prefix_seen & bit)
		return fail(c, TL_REASON_EV_JSON_DUPLICATE_KEY);
	c->prefix_seen |= bit;
	if (*p != '{') {
		q = skip_value(c, p, depth);
		if (q == NULL)
			return NULL;
		/* "metadata": null is how many producers say "no metadata": every column
		 * under it is absent (a required one is then missing_field). */
		if (q - p == 4 && *p == 'n')
			return q;
		return fail(c, TL_REASON_EV_FIELD_TYPE);
	}
	if (depth + 1 > c->max_depth)
		return fail(c, TL_REASON_EV_JSON_DEPTH);
	return parse_obj(c, p + 1, node, depth + 1);
}

/* Members of a mapped object (p just after its '{'); returns the byte after its '}'. */
static const uint8_t *
parse_obj(struct ctx *c, const uint8_t *p, uint32_t node, uint32_t depth)
{
	const struct tl_schema_node *n = &c->s->trie.node[node];
	const uint8_t *end = c->end;
	uint32_t hint = 0;

	p = skip_ws(p, end);
	if (p == end)
		return fail(c, TL_REASON_EV_JSON_SYNTAX);
	if (*p == '}')
		return p + 1;
	for (;;) {
		const uint8_t *k;
		uint32_t klen;
		uint8_t kesc;
		int child;

		p = member_key(c, p, &k, &klen, &kesc);
		if (p == NULL)
			return NULL;
		child = lookup(c, n, k, klen, kesc, &hint);
		if (child < 0)
			p = unknown(c, p, n->prefix, k, klen, kesc, depth);
		else if (c->s->trie.node[child].col >= 0)
			p = parse_col(c, p, c->s->trie.node[child].col, depth);
		else
			p = parse_prefix(c, p, (uint32_t)child, depth);
		if (p == NULL)
			return NULL;
		if (likely(p < end && *p == ','))
			p++;
		else if ((p = skip_ws(p, end)) == end)
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		else if (*p == ',')
			p++;
		else if (*p == '}')
			return p + 1;
		else
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
		p = skip_ws(p, end);
		if (p == end)
			return fail(c, TL_REASON_EV_JSON_SYNTAX);
	}
}

enum tl_reason
tl_json_extract(const struct tl_schema *s, const uint8_t *buf, uint32_t len, struct tl_event *ev)
{
	struct ctx c;
	const uint8_t *p, *end = buf + len;
	const struct tl_value *v;
	uint64_t req;

	ev->raw = buf;
	ev->raw_len = len;
	ev->is_error = false;
	ev->n_extra = 0;
	ev->cls_db = NULL;
	ev->route = 0;
	ev->cls.n = 0;
	ev->cls.dropped = 0;
	ev->cls.severity = 0;
	ev->time_ns = 0;
	memset(ev->col, 0, sizeof(ev->col));
	if (len > s->lim.max_event_size)
		return TL_REASON_EV_TOO_LARGE;
	if (len == 0)
		return TL_REASON_EV_JSON_SYNTAX;
	c.buf = buf;
	c.end = end;
	c.s = s;
	c.ev = ev;
	c.errpos = NULL;
	c.err = TL_REASON_OK;
	c.max_depth = (uint32_t)s->lim.max_depth;
	c.max_string = s->lim.max_string > UINT32_MAX ? UINT32_MAX : (uint32_t)s->lim.max_string;
	c.max_extra = (uint32_t)s->lim.max_extra;
	c.avx2 = use_avx2;
	c.prefix_seen = 0;

	p = skip_ws(buf, end);
	if (p == end)
		return TL_REASON_EV_JSON_SYNTAX;
	if (*p != '{') {
		if (*p == '[' || *p == '"' || *p == '-' || is_digit(*p) || *p == 't' || *p == 'f' ||
		        *p == 'n')
			return TL_REASON_EV_JSON_NOT_OBJECT;
		return TL_REASON_EV_JSON_SYNTAX;
	}
	p = parse_obj(&c, p + 1, 0, 1);
	if (p == NULL)
		return c.err;
	if (skip_ws(p, end) != end)
		return TL_REASON_EV_JSON_SYNTAX;

	for (req = s->required; req != 0; req &= req - 1)
		if (ev->col[__builtin_ctzll(req)].kind <= TL_VAL_NULL)
			return TL_REASON_EV_MISSING_FIELD;
	v = &ev->col[s->time_col];
	if (v->kind == TL_VAL_TIME)
		ev->time_ns = v->ns;
	v = &ev->col[s->error_col];
	ev->is_error = v->kind > TL_VAL_NULL && !(v->kind == TL_VAL_STRING && v->len == 0);
	return TL_REASON_OK;
}

static inline int
d2(const uint8_t *p)
{
	unsigned a = (unsigned)(p[0] - '0'), b = (unsigned)(p[1] - '0');

	return a > 9 || b > 9 ? -1 : (int)(a * 10 + b);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int
tl_json_parse_time(const uint8_t *p, size_t len, int64_t *ns)
{
	static const uint8_t mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y1, y2, year, mon, day, hh, mm, ss, oh = 0, om = 0, sign = 0, leap;
	int64_t frac = 0, secs;
	size_t i = 19;

	if (len < 20)
		return -EINVAL;
	y1 = d2(p);
	y2 = d2(p + 2);
	mon = d2(p + 5);
	day = d2(p + 8);
	hh = d2(p + 11);
	mm = d2(p + 14);
	ss = d2(p + 17);
	if ((y1 | y2 | mon | day | hh | mm | ss) < 0 || p[4] != '-' || p[7] != '-' ||
	        p[13] != ':' || p[16] != ':')
		return -EINVAL;
	if (p[10] != 'T' && p[10] != 't' && p[10] != ' ')
		return -EINVAL;
	year = y1 * 100 + y2;
	if (year < 1678 || year > 2261 || mon < 1 || mon > 12 || day < 1 || hh > 23 || mm > 59 ||
	        ss > 59)
		return -EINVAL;
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (day > mdays[mon - 1] + (mon == 2 && leap))
		return -EINVAL;
	if (p[i] == '.') {
		size_t start = ++i, nd;

		while (i < len && is_digit(p[i])) {
			if (i - start == 9)
				return -EINVAL;
			frac = frac * 10 + (p[i] - '0');
			i++;
		}
		nd = i - start;
		if (nd == 0)
			return -EINVAL;
		for (; nd < 9; nd++)
			frac *= 10;
	}
	if (i >= len)
		return -EINVAL;
	if (p[i] == 'Z' || p[i] == 'z') {
		if (i + 1 != len)
			return -EINVAL;
	} else if (p[i] == '+' || p[i] == '-') {
		size_t rest = len - i - 1;

		sign = p[i] == '-' ? -1 : 1;
		if (rest == 2) {
			oh = d2(p + i + 1);
		} else if (rest == 4) {
			oh = d2(p + i + 1);
			om = d2(p + i + 3);
		} else if (rest == 5 && p[i + 3] == ':') {
			oh = d2(p + i + 1);
			om = d2(p + i + 4);
		} else {
			return -EINVAL;
		}
		if (oh < 0 || om < 0 || oh > 23 || om > 59)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	secs = days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 + hh * 3600 + mm * 60 +
	       ss - sign * (oh * 3600 + om * 60);
	*ns = secs * 1000000000 + frac;
	return 0;
}

static inline void
put(uint8_t *out, size_t cap, size_t *n, const void *src, size_t len)
{
	if (*n < cap)
		memcpy(out + *n, src, len < cap - *n ? len : cap - *n);
	*n += len;
}

size_t
tl_json_format_extra(const struct tl_schema *s, const struct tl_event *ev, uint8_t *out, size_t cap)
{
	size_t n = 0;

	put(out, cap, &n, "{", 1);
	for (uint32_t i = 0; i < ev->n_extra; i++) {
		const struct tl_extra *x = &ev->extra[i];

		if (i > 0)
			put(out, cap, &n, ",", 1);
		put(out, cap, &n, "\"", 1);
		if (x->parent >= 0 && (uint32_t)x->parent < s->trie.n_prefix) {
			put(out, cap, &n, s->trie.prefix[x->parent].path,
			        s->trie.prefix[x->parent].len);
			put(out, cap, &n, ".", 1);
		}
		put(out, cap, &n, x->key, x->key_len);
		put(out, cap, &n, "\":", 2);
		put(out, cap, &n, x->val, x->val_len);
	}
	put(out, cap, &n, "}", 1);
	return n;
}

const char *
tl_json_impl(void)
{
	return use_avx2 ? "avx2" : "scalar";
}

void
tl_json_force_scalar(int on)
{
	use_avx2 = !on && cpu_avx2;
}

__attribute__((constructor)) static void
json_init(void)
{
	const char *e = getenv("TAPLINE_JSON_SCALAR");

#ifdef TL_JSON_X86
	__builtin_cpu_init();
	cpu_avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	tl_json_force_scalar(e != NULL && *e != '\0' && strcmp(e, "0") != 0);
}
