/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer target for the request parser and the JSON writer. Each input
 * is fed whole, in chunks whose sizes come from its first bytes, and byte
 * by byte, with the default limits and with small ones. It aborts when a
 * value or error line written the way replies are written is not one line
 * of ASCII valid JSON, when the feeds disagree (results must not depend on
 * the split, nor on the callback holding the parser after every message
 * and the rest being fed again, as the channel does), when yajl and the
 * scanner disagree (nbug), or when the tree held for an open message
 * outgrows its limit.
 *
 *   CC=clang ./configure --enable-fuzzing && make fuzz
 *   t/fuzz/proto-fuzz -max_total_time=60 t/fuzz/corpus
 *
 * (or make fuzz-run, which keeps new inputs out of the source tree).
 * Without -DFUZZING the file builds a replay main, t1030-fuzz-replay, that
 * runs every file in t/fuzz/corpus (or those on its command line) as TAP.
 */

#include "../../src/proto.c"

#include <dirent.h>
#include <stdio.h>

#include <yajl/yajl_parse.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct fz {
	struct buf out;
	size_t nlines;
	struct proto *p;
	int hold; /* proto_hold() after every message */
};

/* One whole JSON text of printable ASCII, or abort. */
static void
fz_check_line(const struct buf *b)
{
	const unsigned char *s = (const unsigned char *)buf_head(b);
	size_t i, n = buf_used(b);
	yajl_handle h;
	yajl_status st;

	for (i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] > 0x7e) {
			fprintf(stderr, "byte 0x%02x at %zu in %.*s\n", s[i], i,
			    (int)n, (const char *)s);
			abort();
		}
	}
	h = yajl_alloc(NULL, NULL, NULL);
	st = yajl_parse(h, s, n);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	yajl_free(h);
	if (st != yajl_status_ok) {
		fprintf(stderr, "not JSON: %.*s\n", (int)n, (const char *)s);
		abort();
	}
}

static void
fz_cb(void *arg, struct jval *v, const char *desc)
{
	struct fz *f = arg;
	struct buf line;

	buf_init(&line, 0);
	if (v != NULL) {
		(void)buf_adds(&line, "{\"return\": {}, \"id\": ");
		json_put_val(&line, v);
		(void)buf_addc(&line, '}');
		jval_free(v);
	} else {
		if (desc == NULL)
			abort();
		(void)buf_adds(&line,
		    "{\"error\": {\"class\": \"GenericError\", \"desc\": ");
		json_put_cstr(&line, desc);
		(void)buf_adds(&line, "}}");
	}
	fz_check_line(&line);
	(void)buf_add(&f->out, buf_head(&line), buf_used(&line));
	(void)buf_addc(&f->out, '\n');
	f->nlines++;
	buf_free(&line);
	if (f->hold)
		proto_hold(f->p);
}

static size_t
fz_tree_bytes(const struct jval *v)
{
	size_t i, n;

	if (v == NULL)
		return 0;
	n = sizeof *v + v->slen;
	for (i = 0; i < v->n; i++) {
		n += fz_tree_bytes(v->v[i]) + sizeof(void *);
		if (v->keys != NULL)
			n += v->keylens[i] + 2 * sizeof(void *);
	}
	return n;
}

/* What the parser may hold between feeds. */
static void
fz_check_bounds(const struct proto *p)
{
	size_t held;

	if (p->nbug != 0) {
		fprintf(stderr, "scanner and yajl disagree\n");
		abort();
	}
	if (p->nready > 1 || p->toklen > PROTO_TOKMAX ||
	    p->nfr > p->lim.max_depth || p->depth > p->lim.max_depth) {
		fprintf(stderr, "state out of bounds\n");
		abort();
	}
	held = p->nfr > 0 ? fz_tree_bytes(p->fr[0].v) : 0;
	held += p->nready > 0 ? fz_tree_bytes(p->ready[0]) : 0;
	if (held > 160 * p->lim.max_size + 4096) {
		fprintf(stderr, "%zu bytes held for a %zu-byte limit\n", held,
		    p->lim.max_size);
		abort();
	}
}

/*
 * step 0: whole; SIZE_MAX: chunk sizes from seed; else fixed steps. hold:
 * every feed ends after its first message and the rest is fed again.
 */
static char *
fz_run(const uint8_t *data, size_t size, const struct proto_limits *lim,
    size_t step, unsigned int seed, int hold, size_t *len)
{
	struct fz f;
	struct proto *p;
	size_t off = 0, n, used, before;
	char *s;

	buf_init(&f.out, 0);
	f.nlines = 0;
	f.hold = hold;
	p = f.p = proto_new(lim, fz_cb, &f);
	while (off < size) {
		if (step == 0)
			n = size;
		else if (step == SIZE_MAX) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % ((seed & 0x100) ? 7 : 300);
		} else
			n = step;
		if (n > size - off)
			n = size - off;
		before = f.nlines;
		used = proto_feed(p, data + off, n);
		/* Short only when held, and then only after a message. */
		if (used > n || (used < n && (!hold || f.nlines == before))) {
			fprintf(stderr, "feed of %zu took %zu\n", n, used);
			abort();
		}
		off += used;
		if (step != 1)
			fz_check_bounds(p);
	}
	fz_check_bounds(p);
	proto_free(p);
	*len = buf_used(&f.out);
	s = xmalloc(*len + 1);
	if (*len > 0)
		memcpy(s, buf_head(&f.out), *len);
	s[*len] = '\0';
	buf_free(&f.out);
	return s;
}

static void
fz_compare(
    const char *what, const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen == blen && memcmp(a, b, alen) == 0)
		return;
	fprintf(stderr,
	    "%s differs from the whole feed:\n--- whole\n%.*s\n"
	    "--- %s\n%.*s\n",
	    what, (int)alen, a, what, (int)blen, b);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct proto_limits small = { 64 + (size > 0 ? data[0] : 0) * 4,
		1 + (size > 1 ? data[1] % 8 : 3) };
	const struct proto_limits *lims[] = { NULL, &small };
	unsigned int seed;
	char *whole, *other;
	size_t wlen, olen, k;

	seed = (size > 0 ? data[0] : 0) | (size > 1 ? data[1] << 8 : 0);
	for (k = 0; k < nitems(lims); k++) {
		whole = fz_run(data, size, lims[k], 0, seed, 0, &wlen);
		other = fz_run(data, size, lims[k], SIZE_MAX, seed, 0, &olen);
		fz_compare("random chunks", whole, wlen, other, olen);
		free(other);
		other = fz_run(data, size, lims[k], 0, seed, 1, &olen);
		fz_compare(
		    "held after every message", whole, wlen, other, olen);
		free(other);
		other = fz_run(data, size, lims[k], SIZE_MAX, seed, 1, &olen);
		fz_compare("held, random chunks", whole, wlen, other, olen);
		free(other);
		if (size <= 2048) {
			other = fz_run(data, size, lims[k], 1, seed, 0, &olen);
			fz_compare("byte by byte", whole, wlen, other, olen);
			free(other);
		}
		free(whole);
	}
	return 0;
}

#ifndef FUZZING
#include "../tap.h"

static int
fz_replay(const char *path)
{
	FILE *fp;
	uint8_t *data = NULL;
	size_t size = 0, cap = 0, n;

	if ((fp = fopen(path, "rb")) == NULL)
		return -1;
	for (;;) {
		if (size == cap) {
			cap = cap ? cap * 2 : 4096;
			data = xrealloc(data, cap);
		}
		if ((n = fread(data + size, 1, cap - size, fp)) == 0)
			break;
		size += n;
	}
	(void)fclose(fp);
	(void)LLVMFuzzerTestOneInput(data, size);
	free(data);
	return 0;
}

static int
fz_namecmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(int argc, char **argv)
{
	const char *top = getenv("top_srcdir");
	char *dir, *path, **names = NULL;
	struct dirent *de;
	size_t n = 0, i;
	DIR *d;
	int k;

	plan_lazy();
	if (argc > 1) {
		for (k = 1; k < argc; k++)
			ok(fz_replay(argv[k]) == 0, "%s", argv[k]);
		return tap_done();
	}
	(void)xasprintf(&dir, "%s/t/fuzz/corpus", top != NULL ? top : ".");
	if ((d = opendir(dir)) == NULL)
		bail("%s: cannot open", dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		names = xreallocarray(names, n + 1, sizeof *names);
		names[n++] = xstrdup(de->d_name);
	}
	(void)closedir(d);
	qsort(names, n, sizeof *names, fz_namecmp);
	ok(n >= 12, "%zu corpus files", n);
	for (i = 0; i < n; i++) {
		(void)xasprintf(&path, "%s/%s", dir, names[i]);
		ok(fz_replay(path) == 0, "replay %s", names[i]);
		free(path);
		free(names[i]);
	}
	free(names);
	free(dir);
	return tap_done();
}
#endif
