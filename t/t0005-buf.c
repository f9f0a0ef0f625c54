/* SPDX-License-Identifier: ISC */
/*
 * buf.c: append, consume and compaction; the hard cap leaves a buffer as
 * it was; formatting in place and past the room left; a mapped buffer
 * that never moves and gives its pages back when it is empty.
 */

#include "../src/buf.c"

#include "tap.h"
#include "memtest.h"

static int
is_bytes(const struct buf *b, const char *want)
{
	return buf_used(b) == strlen(want) &&
	    memcmp(buf_head(b), want, strlen(want)) == 0;
}

static void
test_heap(void)
{
	struct buf b;
	char big[3000];
	size_t size;

	buf_init(&b, 0);
	ok(buf_used(&b) == 0 && b.data == NULL, "empty: nothing allocated");
	is_int(0, buf_adds(&b, "hello "), "adds");
	is_int(0, buf_addc(&b, 'w'), "addc");
	is_int(0, buf_addf(&b, "orld %d%s", 42, "!"), "addf in the room left");
	ok(is_bytes(&b, "hello world 42!"), "the bytes in order");
	buf_consume(&b, 6);
	ok(is_bytes(&b, "world 42!"), "consume drops from the front");
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	size = b.size;
	is_int(0, buf_addf(&b, "[%s]", big), "addf longer than the room left");
	ok(b.size > size && buf_used(&b) == 9 + 2 + sizeof big - 1 &&
		memcmp(buf_head(&b), "world 42![x", 11) == 0 &&
		buf_head(&b)[buf_used(&b) - 1] == ']',
	    "... grew once and holds all of it");
	buf_consume(&b, buf_used(&b));
	ok(buf_used(&b) == 0 && b.off == 0 && b.len == 0,
	    "consuming everything rewinds");
	buf_shrink(&b, 1024);
	ok(b.data == NULL, "shrink: an empty heap buffer over keep is freed");
	buf_free(&b);
}

static void
test_cap(void)
{
	struct buf b;

	buf_init(&b, 16);
	is_int(0, buf_adds(&b, "0123456789"), "cap: 10 of 16");
	is_int(-ENOBUFS, buf_adds(&b, "abcdefg"), "cap: 7 more: -ENOBUFS");
	ok(is_bytes(&b, "0123456789"), "cap: ... and the buffer is as it was");
	is_int(-ENOBUFS, buf_addf(&b, "%s", "abcdefg"),
	    "cap: addf past the cap: -ENOBUFS");
	ok(is_bytes(&b, "0123456789"), "cap: ... as it was");
	buf_consume(&b, 8);
	is_int(0, buf_adds(&b, "abcdefghijklmn"),
	    "cap: room made by consume is used (compaction)");
	ok(is_bytes(&b, "89abcdefghijklmn"), "cap: compacted bytes in order");
	buf_free(&b);
}

static void
test_mapped(void)
{
	struct buf b;
	char *data, chunk[4096];
	size_t i;

	buf_init_mapped(&b, 1024 * 1024);
	data = b.data;
	ok(b.mapped && b.size == 1024 * 1024 && resident_kib(&b) == 0,
	    "mapped: 1 MiB reserved, none of it resident");
	memset(chunk, 'm', sizeof chunk);
	for (i = 0; i < 64; i++)
		(void)buf_add(&b, chunk, sizeof chunk);
	ok(b.data == data && buf_used(&b) == 64 * sizeof chunk,
	    "mapped: 256 KiB queued, the data did not move");
	ok(resident_kib(&b) >= 256, "mapped: ... and is resident (%zu KiB)",
	    resident_kib(&b));
	buf_shrink(&b, 8 * 1024);
	ok(resident_kib(&b) == 256, "mapped: shrink with data queued: no-op");
	buf_consume(&b, buf_used(&b));
	buf_shrink(&b, 8 * 1024);
	ok(resident_kib(&b) <= 8,
	    "mapped: empty, shrink keeps 8 KiB resident (%zu)",
	    resident_kib(&b));
	is_int(-ENOBUFS, buf_add(&b, data, 1024 * 1024 + 1),
	    "mapped: past the cap: -ENOBUFS");
	is_int(0, buf_addf(&b, "%d", 7), "mapped: addf");
	ok(b.data == data && is_bytes(&b, "7"), "mapped: ... in place");
	buf_free(&b);
	ok(b.data == NULL && !b.mapped, "mapped: free unmaps");
}

int
main(void)
{
	plan_lazy();
	test_heap();
	test_cap();
	test_mapped();
	return tap_done();
}
