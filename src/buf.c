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

/* Formats in place: only text longer than the room left formats twice. */
int
buf_addvf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	size_t room = b->size - b->len;
	int n, r;

	va_copy(aq, ap);
	n = vsnprintf(room > 0 ? b->data + b->len : NULL, room, fmt, aq);
	va_end(aq);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= room) {
		if ((r = buf_reserve(b, (size_t)n + 1)) < 0)
			return r;
		(void)vsnprintf(b->data + b->len, b->size - b->len, fmt, ap);
	}
	b->len += (size_t)n;
	if (b->len > b->peak)
		b->peak = b->len;
	return 0;
}

int
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_addvf(b, fmt, ap);
	va_end(ap);
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
