/* SPDX-License-Identifier: ISC */
/*
 * The parser's limits: nesting depth, message size, and 100 MiB streams of
 * garbage, of one string, of brackets: one error each, memory bounded (the
 * parser holds nothing for a skipped message, RSS does not grow) and the
 * next request parses. Also the pipelined ping rate, for the record.
 */

#include "../src/proto.c"

#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#define PING "{\"execute\":\"guest-ping\"}\n"
#define PING_OUT "{\"execute\": \"guest-ping\"}\n"
#define MiB (1024 * 1024)
#define HUGE_LEN ((size_t)100 * MiB)
#define CHUNK ((size_t)64 * 1024)

struct rec {
	struct buf out;
	size_t nval;
	size_t nerr;
	char lasterr[256]; /* no allocation: 10^7 errors must not churn */
	int keep;	   /* write values and errors to out */
};

static void
rec_cb(void *arg, struct jval *v, const char *desc)
{
	struct rec *r = arg;

	if (v != NULL)
		r->nval++;
	else {
		r->nerr++;
		(void)snprintf(r->lasterr, sizeof r->lasterr, "%s", desc);
	}
	if (r->keep) {
		if (v != NULL)
			json_put_val(&r->out, v);
		else {
			(void)buf_adds(&r->out, "E ");
			(void)buf_adds(&r->out, desc);
		}
		(void)buf_addc(&r->out, '\n');
	}
	jval_free(v);
}

static void
rec_init(struct rec *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->out, 0);
	r->keep = 1;
}

static char *
rec_take(struct rec *r)
{
	char *s;

	s = xstrndup(
	    buf_used(&r->out) ? buf_head(&r->out) : "", buf_used(&r->out));
	buf_reset(&r->out);
	return s;
}

static void
rec_free(struct rec *r)
{
	buf_free(&r->out);
}

/* Feed s whole to a new parser with lim; the transcript. */
static char *
run(const struct proto_limits *lim, const char *s, size_t len)
{
	struct rec r;
	struct proto *p;
	char *t;

	rec_init(&r);
	p = proto_new(lim, rec_cb, &r);
	proto_feed(p, s, len);
	proto_free(p);
	t = rec_take(&r);
	rec_free(&r);
	return t;
}

/* The same, fed as [0, k) and [k, len). */
static char *
run_split(const struct proto_limits *lim, const char *s, size_t len, size_t k)
{
	struct rec r;
	struct proto *p;
	char *t;

	rec_init(&r);
	p = proto_new(lim, rec_cb, &r);
	proto_feed(p, s, k);
	proto_feed(p, s + k, len - k);
	proto_free(p);
	t = rec_take(&r);
	rec_free(&r);
	return t;
}

static char *
repeat(const char *head, const char *unit, size_t n, const char *tail)
{
	struct buf b;
	size_t i;
	char *s;

	buf_init(&b, 0);
	(void)buf_adds(&b, head);
	for (i = 0; i < n; i++)
		(void)buf_adds(&b, unit);
	(void)buf_adds(&b, tail);
	s = xstrndup(buf_head(&b), buf_used(&b));
	buf_free(&b);
	return s;
}

static void
test_depth(void)
{
	char *open, *in, *got, *want;

	open = repeat("", "[", 32, "");
	in = repeat(open, "]", 32, "\n" PING);
	free(open);
	got = run(NULL, in, strlen(in));
	want = repeat("", "[", 32, "");
	free(in);
	in = repeat(want, "]", 32, "\n" PING_OUT);
	is_str(in, got, "32 nested arrays parse");
	free(want);
	free(in);
	free(got);

	open = repeat("", "[", 33, "");
	in = repeat(open, "]", 33, "\n" PING);
	got = run(NULL, in, strlen(in));
	is_str("E JSON nesting depth limit exceeded\n" PING_OUT, got,
	    "33 nested arrays: one error, then the next request");
	free(open);
	free(in);
	free(got);

	open = repeat("{\"execute\":\"guest-ping\",\"id\":", "[", 32, "");
	in = repeat(open, "]", 32, "} " PING);
	got = run(NULL, in, strlen(in));
	is_str("E JSON nesting depth limit exceeded\n" PING_OUT, got,
	    "an id 32 deep in a request: the rest of that message skipped, "
	    "the next one on the line parses");
	free(open);
	free(in);
	free(got);

	open = repeat("", "[", 5000, "");
	in = repeat(open, "]", 5000, "\n" PING);
	got = run(NULL, in, strlen(in));
	is_str("E JSON nesting depth limit exceeded\n" PING_OUT, got,
	    "5000 [ and 5000 ]: one error (qemu-ga gives 4105)");
	free(open);
	free(in);
	free(got);

	open = repeat("", "[", 5, "");
	in = repeat(open, "]", 5, "[[[[[[\"]]]]]]\\\"]]\"]]]]]] " PING);
	got = run(&(struct proto_limits){ 0, 4 }, in, strlen(in));
	is_str("E JSON nesting depth limit exceeded\n"
	       "E JSON nesting depth limit exceeded\n" PING_OUT,
	    got, "brackets in strings do not count while skipping");
	free(open);
	free(in);
	free(got);
}

static void
test_size(void)
{
	const struct proto_limits small = { 64, 32 };
	char *in, *got, *pad, *want, *t;
	size_t base, k, bad;

	/* {"execute":"guest-ping","id":"<pad>"} is 31 + pad + 2 bytes */
	base = strlen("{\"execute\":\"guest-ping\",\"id\":\"\"}");
	pad = repeat("", "a", 64 - base, "");
	xasprintf(
	    &in, "{\"execute\":\"guest-ping\",\"id\":\"%s\"}\n" PING, pad);
	xasprintf(&want,
	    "{\"execute\": \"guest-ping\", \"id\": \"%s\"}\n" PING_OUT, pad);
	got = run(&small, in, strlen(in));
	is_str(want, got, "a message of max_size bytes parses");
	free(in);
	free(got);
	free(want);
	xasprintf(
	    &in, "{\"execute\":\"guest-ping\",\"id\":\"%sa\"}\n" PING, pad);
	got = run(&small, in, strlen(in));
	is_str("E JSON message size limit exceeded\n" PING_OUT, got,
	    "one byte more: one error, then the next request");
	free(in);
	free(got);
	free(pad);

	pad = repeat("", "a", 100, "");
	xasprintf(&in, "{\"id\":\"%s\",\n\"x\":[1,\n2]}" PING, pad);
	got = run(&small, in, strlen(in));
	is_str("E JSON message size limit exceeded\n" PING_OUT, got,
	    "the skip follows the message over lines to its end");
	free(in);
	free(got);
	free(pad);

	/* said at the size limit, where a single feed finds the key too */
	pad = repeat("{\"a\":1,\"a\":\"", "x", 100, "\xff" PING);
	got = run(&small, pad, strlen(pad));
	is_str("E JSON parse error, duplicate key\n" PING_OUT, got,
	    "a duplicate key, then the size limit, then 0xFF");
	bad = 0;
	for (k = 1; k < strlen(pad); k++) {
		t = run_split(&small, pad, strlen(pad), k);
		bad += strcmp(t, got) != 0;
		free(t);
	}
	ok(bad == 0, "... the same at every split offset");
	free(pad);
	free(got);

	in = repeat("", "\n \t\r", 100000, PING);
	got = run(&small, in, strlen(in));
	is_str(PING_OUT, got, "blanks between messages do not count");
	free(in);
	free(got);

	pad = repeat("", "a", PROTO_MAX_SIZE - base, "");
	xasprintf(
	    &in, "{\"execute\":\"guest-ping\",\"id\":\"%s\"}\n" PING, pad);
	got = run(NULL, in, strlen(in));
	ok(strlen(got) > PROTO_MAX_SIZE &&
		strcmp(got + strlen(got) - strlen(PING_OUT), PING_OUT) == 0 &&
		strncmp(got, "E ", 2) != 0,
	    "a 64 KiB message parses by default");
	free(in);
	free(got);
	xasprintf(
	    &in, "{\"execute\":\"guest-ping\",\"id\":\"%sa\"}\n" PING, pad);
	got = run(NULL, in, strlen(in));
	is_str("E JSON message size limit exceeded\n" PING_OUT, got,
	    "64 KiB + 1 does not");
	free(in);
	free(got);
	free(pad);
}

static size_t
rss_bytes(void)
{
	FILE *fp;
	unsigned long size, rss = 0;

	if ((fp = fopen("/proc/self/statm", "r")) == NULL)
		return 0;
	if (fscanf(fp, "%lu %lu", &size, &rss) != 2)
		rss = 0;
	(void)fclose(fp);
	return rss * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t
heap_bytes(void)
{
	return mallinfo2().uordblks;
}

/* Nothing of the message is held: no tree, no yajl state, no token. */
static int
holds_nothing(const struct proto *p)
{
	return p->nfr == 0 && p->nready == 0 && p->key == NULL &&
	    (p->yh == NULL || !p->ydirty);
}

/*
 * head, then unit repeated up to HUGE_LEN bytes in CHUNK feeds, then tail,
 * then a request: nerr errors (SIZE_MAX: one per unit), the last one
 * lastdesc, and the request. RSS may keep what one message of max_size
 * bytes cost (its tree, when it is an array of small numbers, is ~70
 * times that), never what the stream cost.
 */
static void
huge(const char *name, const char *head, const char *unit, const char *tail,
    size_t nerr, const char *lastdesc)
{
	struct rec r;
	struct proto *p;
	char *chunk, *got;
	size_t ulen = strlen(unit), n, fed, rss0, heap0, rss1 = 0, heap1 = 0;
	int held = 0;
	struct timespec t0, t1;

	chunk = xmalloc(CHUNK);
	for (n = 0; n + ulen <= CHUNK; n += ulen)
		memcpy(chunk + n, unit, ulen);
	rec_init(&r);
	r.keep = 0;
	p = proto_new(NULL, rec_cb, &r);
	proto_feed(p, PING, strlen(PING));
	rss0 = rss_bytes();
	heap0 = heap_bytes();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	proto_feed(p, head, strlen(head));
	for (fed = 0; fed < HUGE_LEN; fed += n) {
		proto_feed(p, chunk, n);
		if (fed > 10 * (size_t)MiB && !holds_nothing(p))
			held = 1;
	}
	rss1 = rss_bytes();
	heap1 = heap_bytes();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (nerr == SIZE_MAX)
		nerr = (fed / n) * (n / ulen);
	r.keep = 1;
	proto_feed(p, tail, strlen(tail));
	proto_feed(p, PING, strlen(PING));
	got = rec_take(&r);
	is_int(
	    (long long)nerr, (long long)r.nerr, "%s: %zu errors", name, nerr);
	is_str(lastdesc, nerr > 0 ? r.lasterr : NULL, "%s: the error", name);
	/* an error the tail completes (a keyword's) comes before it */
	ok(strlen(got) >= strlen(PING_OUT) &&
		strcmp(got + strlen(got) - strlen(PING_OUT), PING_OUT) == 0,
	    "%s: the next request parses", name);
	ok(r.nval == 2, "%s: no other value", name);
	ok(!held, "%s: the parser holds nothing of the message", name);
	ok(rss1 < rss0 + 16 * MiB, "%s: RSS grew by %zd KiB", name,
	    ((ssize_t)rss1 - (ssize_t)rss0) / 1024);
	ok(heap1 < heap0 + 1 * MiB, "%s: the heap grew by %zd KiB", name,
	    ((ssize_t)heap1 - (ssize_t)heap0) / 1024);
	diag("%s: %.0f MiB/s", name,
	    100.0 /
		((double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
	free(got);
	proto_free(p);
	rec_free(&r);
	free(chunk);
}

static void
test_huge(void)
{
	char *a;

	huge("100 MiB of garbage", "", "garbage! ", "\n", 1,
	    "JSON parse error, invalid keyword 'garbage'");
	huge("100 MiB of garbage lines", "", "HELLO WORLD\n", "", SIZE_MAX,
	    "JSON parse error, stray 'H'");
	huge("a 100 MiB string id", "{\"execute\":\"guest-ping\",\"id\":\"",
	    "0123456789abcdef\\\"\\u00e9\xc3\xa9", "\"}\n", 1,
	    "JSON message size limit exceeded");
	huge("a 100 MiB top-level string", "\"", "aaaaaaaa", "\"", 1,
	    "JSON message size limit exceeded");
	huge("a 100 MiB number", "1", "00000000", "\n", 1,
	    "JSON message size limit exceeded");
	a = repeat(
	    "JSON parse error, invalid keyword '", "a", PROTO_TOKMAX, "'");
	huge("a 100 MiB keyword (the desc quotes the first 128 bytes)", "",
	    "aaaaaaaa", "\n", 1, a);
	free(a);
	huge("100 MiB of [", "", "[[[[", "\xff", 1,
	    "JSON nesting depth limit exceeded");
	huge("100 MiB of one array", "[", "1,2,3,", "4]\n", 1,
	    "JSON message size limit exceeded");
}

/* Not a limit: the rate the benchmark's pipelined pings would parse at. */
static void
test_rate(void)
{
	const char req[] = "{\"execute\":\"guest-ping\",\"id\":12345}\n";
	struct rec r;
	struct proto *p;
	struct timespec t0, t1;
	char *chunk;
	size_t n = 0, per = (CHUNK / (sizeof req - 1)), i;
	double s;

	chunk = xmalloc(CHUNK);
	for (i = 0; i < per; i++)
		memcpy(chunk + i * (sizeof req - 1), req, sizeof req - 1);
	rec_init(&r);
	r.keep = 0;
	p = proto_new(NULL, rec_cb, &r);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 200; i++) {
		proto_feed(p, chunk, per * (sizeof req - 1));
		n += per;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ok(r.nval == n && r.nerr == 0, "%zu pipelined pings parsed", n);
	diag("%.0f ns per ping, parse and free (qemu-ga: ~28000 ns per "
	     "ping, all in)",
	    s * 1e9 / (double)n);
	proto_free(p);
	rec_free(&r);
	free(chunk);
}

int
main(void)
{
	plan_lazy();
	test_depth();
	test_size();
	test_huge();
	test_rate();
	return tap_done();
}
