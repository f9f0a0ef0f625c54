/* SPDX-License-Identifier: ISC */
/* Byte buffers with a hard cap, for channel output and replies. */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

void
buf_init(struct buf *b, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->size = 0;
}

void
buf_reset(struct buf *b)
{
	b->off = b->len = 0;
}

size_t
buf_used(const struct buf *b)
{
	return b->len - b->off;
}

const char *
buf_head(const struct buf *b)
{
	return b->data + b->off;
}

/* Make room for n more bytes; compacts before it grows. */
static int
buf_reserve(struct buf *b, size_t n)
{
	size_t used = b->len - b->off, want;

	if (b->cap != 0 && n > b->cap - used)
		return -ENOBUFS;
	if (b->off > 0 && b->len + n > b->size) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
	}
	if (b->len + n <= b->size)
		return 0;
	want = b->size ? b->size : 256;
	while (want < b->len + n)
		want *= 2;
	if (b->cap != 0 && want > b->cap)
		want = b->cap;
	b->data = xrealloc(b->data, want);
	b->size = want;
	return 0;
}

int
buf_add(struct buf *b, const void *p, size_t n)
{
	int r;

	if (n == 0)
		return 0;
	if ((r = buf_reserve(b, n)) < 0)
		return r;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int
buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n, r;

	va_start(ap, fmt);
	n = xvasprintf(&s, fmt, ap);
	va_end(ap);
	r = buf_add(b, s, (size_t)n);
	free(s);
	return r;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len - b->off)
		b->off = b->len = 0;
	else
		b->off += n;
}
