/* SPDX-License-Identifier: ISC */
/* Helpers for the C tests that look at what memory is resident. */
#ifndef MEMTEST_H
#define MEMTEST_H

#include <sys/mman.h>

#include <stdlib.h>
#include <unistd.h>

/* KiB of a mapped buffer's storage that are in memory (mincore). */
__attribute__((unused)) static size_t
resident_kib(const struct buf *b)
{
	size_t pg = (size_t)getpagesize(), n = (b->size + pg - 1) / pg, i, k = 0;
	unsigned char *vec = xcalloc(n, 1);

	if (mincore(b->data, b->size, vec) == 0)
		for (i = 0; i < n; i++)
			k += vec[i] & 1;
	free(vec);
	return k * pg / 1024;
}

#endif
