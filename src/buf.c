/* SPDX-License-Identifier: ISC */
/* Byte buffers with a hard cap, for channel output and replies. */

#include "config.h"

#include <sys/mman.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

void
buf_init(struct buf *b, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->cap = cap;
}

/*
 * The whole cap reserved at once as an anonymous mapping: the data never
 * moves, the heap never sees it, and only pages that have held data cost
 * memory, until buf_shrink() gives them back. For a queue that swings
 * between empty and large, such as a channel's output.
 */
void
buf_init_mapped(struct buf *b, size_t cap)
{
	void *p;

	buf_init(b, cap);
	p = mmap(NULL, cap, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		fatal("mmap %zu bytes", cap);
	b->data = p;
	b->size = cap;
	b->mapped = 1;
}

void
buf_free(struct buf *b)
{
	if (b->mapped)
		(void)munmap(b->data, b->size);
	else
		free(b->data);
	b->data = NULL;
	b->off = b->len = b->size = b->peak = 0;
	b->mapped = 0;
}

/* Empty: keep about keep bytes of storage, give the rest back. */
void
buf_shrink(struct buf *b, size_t keep)
{
	size_t pg = (size_t)getpagesize(), from;

	if (buf_used(b) > 0)
		return;
	b->off = b->len = 0;
	if (!b->mapped) {
		if (b->size > keep)
			buf_free(b);
		return;
	}
	from = (keep + pg - 1) / pg * pg;
	if (b->peak > from)
		(void)madvise(b->data + from, b->peak - from, MADV_DONTNEED);
	b->peak = 0;
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
	if (b->len > b->peak)
		b->peak = b->len;
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
