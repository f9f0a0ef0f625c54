/* SPDX-License-Identifier: ISC */
/* The request value tree and the writer that prints values as qemu-ga does. */

#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

void
jval_free(struct jval *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n; i++) {
		jval_free(v->v[i]);
		if (v->keys != NULL)
			free(v->keys[i]);
	}
	free(v->v);
	free(v->keys);
	free(v->keylens);
	/* the parser puts a string's text in the jval's own allocation */
	if (v->s != (char *)(v + 1))
		free(v->s);
	free(v);
}

struct jval *
jval_get(const struct jval *v, const char *key)
{
	size_t i, len;

	if (v == NULL || v->type != JV_OBJECT || key == NULL)
		return NULL;
	len = strlen(key);
	for (i = 0; i < v->n; i++) {
		if (v->keylens[i] == len && memcmp(v->keys[i], key, len) == 0)
			return v->v[i];
	}
	return NULL;
}

static char *
json_memdup(const char *s, size_t len)
{
	char *p;

	p = xmalloc(len + 1);
	if (len > 0)
		memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

struct jval *
jval_dup(const struct jval *v)
{
	struct jval *d;
	size_t i;

	if (v == NULL)
		return NULL;
	d = xmalloc(sizeof *d);
	*d = *v;
	d->s = v->s != NULL ? json_memdup(v->s, v->slen) : NULL;
	d->v = NULL;
	d->keys = NULL;
	d->keylens = NULL;
	d->n = 0;
	if (v->type != JV_ARRAY && v->type != JV_OBJECT)
		return d;
	d->v = xcalloc(v->n, sizeof *d->v);
	if (v->type == JV_OBJECT) {
		d->keys = xcalloc(v->n, sizeof *d->keys);
		d->keylens = xcalloc(v->n, sizeof *d->keylens);
	}
	for (i = 0; i < v->n; i++) {
		d->v[i] = jval_dup(v->v[i]);
		if (v->type == JV_OBJECT) {
			d->keys[i] = json_memdup(v->keys[i], v->keylens[i]);
			d->keylens[i] = v->keylens[i];
		}
		d->n = i + 1;
	}
	return d;
}

/*
 * One code point of s[0, n) by QEMU's rules (util/unicode.c
 * mod_utf8_codepoint): -1 for a byte or sequence that is not valid UTF-8
 * (overlong, surrogate, noncharacter, beyond U+10FFFF, 0xFE, 0xFF), except
 * that the modified-UTF-8 NUL C0 80 is U+0000. *len is what it spans: a
 * broken sequence ends at its first byte that is not a continuation, so each
 * broken sequence becomes one U+FFFD, as in qemu-ga's error texts.
 */
static long
json_utf8_decode(const unsigned char *s, size_t n, size_t *len)
{
	static const long min_cp[] = { 0x80, 0x800, 0x10000, 0x200000,
		0x4000000 };
	unsigned char c = s[0];
	unsigned char mask;
	size_t i, seq;
	long cp;

	*len = 1;
	if (c < 0x80)
		return c;
	if (c >= 0xfe || (c & 0x40) == 0)
		return -1;
	seq = 0;
	for (mask = 0x80; c & mask; mask >>= 1)
		seq++;
	cp = c & (mask - 1);
	for (i = 1; i < seq; i++) {
		if (i >= n || (s[i] & 0xc0) != 0x80) {
			*len = i;
			return -1;
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	*len = seq;
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
	    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return -1;
	if (cp < min_cp[seq - 2] && !(cp == 0 && seq == 2))
		return -1;
	return cp;
}

static void
json_put_u4(struct buf *b, unsigned int u)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[6];

	e[0] = '\\';
	e[1] = 'u';
	e[2] = hex[(u >> 12) & 0xf];
	e[3] = hex[(u >> 8) & 0xf];
	e[4] = hex[(u >> 4) & 0xf];
	e[5] = hex[u & 0xf];
	(void)buf_add(b, e, sizeof e);
}

/*
 * qobject/json-writer.c quoted_str(): the short escapes for " \ and five
 * control characters, everything else outside 0x20-0x7E as upper-case
 * \uXXXX (surrogate pairs above the BMP), '/' as is, broken UTF-8 as
 * \uFFFD. The result is pure ASCII.
 */
void
json_put_str(struct buf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run, len;
	long cp;

	(void)buf_addc(b, '"');
	while (i < n) {
		for (run = i; run < n && s[run] >= 0x20 && s[run] < 0x7f &&
		     s[run] != '"' && s[run] != '\\';
		     run++)
			;
		if (run > i) {
			(void)buf_add(b, s + i, run - i);
			i = run;
			continue;
		}
		cp = json_utf8_decode(s + i, n - i, &len);
		i += len;
		switch (cp) {
		case '"':
			(void)buf_add(b, "\\\"", 2);
			break;
		case '\\':
			(void)buf_add(b, "\\\\", 2);
			break;
		case '\b':
			(void)buf_add(b, "\\b", 2);
			break;
		case '\f':
			(void)buf_add(b, "\\f", 2);
			break;
		case '\n':
			(void)buf_add(b, "\\n", 2);
			break;
		case '\r':
			(void)buf_add(b, "\\r", 2);
			break;
		case '\t':
			(void)buf_add(b, "\\t", 2);
			break;
		default:
			if (cp < 0)
				cp = 0xfffd;
			if (cp > 0xffff) {
				json_put_u4(b, 0xd800 + ((cp - 0x10000) >> 10));
				json_put_u4(
				    b, 0xdc00 + ((cp - 0x10000) & 0x3ff));
			} else
				json_put_u4(b, (unsigned int)cp);
			break;
		}
	}
	(void)buf_addc(b, '"');
}

void
json_put_cstr(struct buf *b, const char *s)
{
	json_put_str(b, s, strlen(s));
}

/*
 * qemu-ga prints an integer token that fits int64 or uint64 as that
 * integer and anything else as a double with %.17g (so 1.0 is "1", 1e3 is
 * "1000", 0.1 is "0.10000000000000001", 2^64 is "1.8446744073709552e+19";
 * the token -0 is the integer 0, while -0.0 is the double -0 and prints
 * "-0", as %.17g does). A number beyond a double's range (1e400) is where we
 * differ: qemu-ga writes "inf", which is not JSON and makes libvirt drop
 * the agent (protocol.md 6.3). We echo the original token instead, which
 * is valid JSON because our lexer accepted it. Without a token there is
 * nothing valid to echo and null is written: never inf or nan.
 */
static void
json_put_number(struct buf *b, const struct jval *v)
{
	char tmp[40];
	int n;

	if (v->numflags & JV_NUM_INT64)
		n = snprintf(tmp, sizeof tmp, "%" PRId64, v->i);
	else if (v->numflags & JV_NUM_UINT64)
		n = snprintf(tmp, sizeof tmp, "%" PRIu64, v->u);
	else if (isfinite(v->d))
		n = snprintf(tmp, sizeof tmp, "%.17g", v->d);
	else if (v->s != NULL && v->slen > 0) {
		(void)buf_add(b, v->s, v->slen);
		return;
	} else
		n = snprintf(tmp, sizeof tmp, "null");
	if (n > 0 && (size_t)n < sizeof tmp)
		(void)buf_add(b, tmp, (size_t)n);
}

/*
 * QEMU dictionaries (qobject/qdict.c) iterate bucket by bucket, 512 of
 * them by tdb_hash() of the key, newest entry first within a bucket; its
 * JSON writer prints members in that order, so we do too, for replies to
 * be byte-identical ({"z":1,"a":2} is echoed as {"a": 2, "z": 1}).
 */
#define JSON_QDICT_BUCKETS 512

static unsigned int
json_qdict_bucket(const char *key, size_t len)
{
	const unsigned char *k = (const unsigned char *)key;
	unsigned int value, i;
	size_t n;

	/* a C string to QEMU */
	for (n = 0; n < len && k[n] != '\0'; n++)
		;
	value = 0x238F13AFu * (unsigned int)n;
	for (i = 0; i < n; i++)
		value += (unsigned int)k[i] << (i * 5 % 24);
	return (1103515243u * value + 12345u) % JSON_QDICT_BUCKETS;
}

struct json_member {
	unsigned int bucket;
	size_t idx;
};

static int
json_member_cmp(const void *a, const void *b)
{
	const struct json_member *x = a, *y = b;

	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	/* newest first */
	return x->idx < y->idx ? 1 : x->idx > y->idx ? -1 : 0;
}

static void
json_put_object(struct buf *b, const struct jval *v)
{
	struct json_member small[16], *m;
	size_t i, k;

	m = v->n <= nitems(small) ? small : xcalloc(v->n, sizeof *m);
	for (i = 0; i < v->n; i++) {
		m[i].bucket = json_qdict_bucket(v->keys[i], v->keylens[i]);
		m[i].idx = i;
	}
	qsort(m, v->n, sizeof *m, json_member_cmp);
	(void)buf_addc(b, '{');
	for (i = 0; i < v->n; i++) {
		k = m[i].idx;
		if (i > 0)
			(void)buf_add(b, ", ", 2);
		json_put_str(b, v->keys[k], v->keylens[k]);
		(void)buf_add(b, ": ", 2);
		json_put_val(b, v->v[k]);
	}
	(void)buf_addc(b, '}');
	if (m != small)
		free(m);
}

void
json_put_val(struct buf *b, const struct jval *v)
{
	size_t i;

	if (v == NULL) {
		(void)buf_adds(b, "null");
		return;
	}
	switch (v->type) {
	case JV_NULL:
		(void)buf_add(b, "null", 4);
		break;
	case JV_BOOL:
		(void)buf_adds(b, v->b ? "true" : "false");
		break;
	case JV_NUMBER:
		json_put_number(b, v);
		break;
	case JV_STRING:
		json_put_str(b, v->s != NULL ? v->s : "", v->slen);
		break;
	case JV_ARRAY:
		(void)buf_addc(b, '[');
		for (i = 0; i < v->n; i++) {
			if (i > 0)
				(void)buf_add(b, ", ", 2);
			json_put_val(b, v->v[i]);
		}
		(void)buf_addc(b, ']');
		break;
	case JV_OBJECT:
		json_put_object(b, v);
		break;
	}
}
