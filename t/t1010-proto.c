/* SPDX-License-Identifier: ISC */
/*
 * The request parser and the JSON writer: values and errors from split and
 * packed input, the id echo of every JSON type, 0xFF resync, qemu-ga's
 * error families, duplicate keys, multi-line requests, reentrancy.
 */

#include "../src/proto.c"

#include "tap.h"

#define PING "{\"execute\":\"guest-ping\"}\n"
#define PING_OUT "{\"execute\": \"guest-ping\"}\n"
#define ERR(d) "E \"JSON parse error, " d "\"\n"

/* What the parser said, one line per call: the value, or E and the desc. */
struct rec {
	struct buf out;
	int nval;
	int nerr;
	struct proto *p;
	int reset_at; /* proto_reset() from the callback at this call */
	int free_at;  /* proto_free() from the callback at this call */
	int hold;     /* proto_hold() from every callback */
};

static void
rec_cb(void *arg, struct jval *v, const char *desc)
{
	struct rec *r = arg;

	if (v != NULL) {
		json_put_val(&r->out, v);
		jval_free(v);
		r->nval++;
	} else {
		(void)buf_adds(&r->out, "E ");
		json_put_cstr(&r->out, desc != NULL ? desc : "(null)");
		r->nerr++;
	}
	(void)buf_addc(&r->out, '\n');
	if (r->hold)
		proto_hold(r->p);
	if (r->reset_at == r->nval + r->nerr)
		proto_reset(r->p);
	if (r->free_at == r->nval + r->nerr) {
		proto_free(r->p);
		r->p = NULL;
	}
}

static void
rec_init(struct rec *r, const struct proto_limits *lim)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->out, 0);
	r->p = proto_new(lim, rec_cb, r);
	r->reset_at = r->free_at = -1;
}

/* Times yajl saw what the scanner let through differently (never). */
static unsigned long nbug_total;

static char *
rec_done(struct rec *r)
{
	char *s;

	if (r->p != NULL)
		nbug_total += r->p->nbug;
	proto_free(r->p);
	s = xstrndup(
	    buf_used(&r->out) ? buf_head(&r->out) : "", buf_used(&r->out));
	buf_free(&r->out);
	return s;
}

/* The transcript of in fed in pieces of at most step bytes (0: whole). */
static char *
run_step(const char *in, size_t len, size_t step)
{
	struct rec r;
	size_t off, n;

	rec_init(&r, NULL);
	for (off = 0; off < len; off += n) {
		n = step == 0 || len - off < step ? len - off : step;
		proto_feed(r.p, in + off, n);
	}
	return rec_done(&r);
}

/* The transcript of in fed as [0, k) and [k, len). */
static char *
run_split(const char *in, size_t len, size_t k)
{
	struct rec r;

	rec_init(&r, NULL);
	proto_feed(r.p, in, k);
	proto_feed(r.p, in + k, len - k);
	return rec_done(&r);
}

/*
 * The transcript of in fed as the channel feeds it when the callback holds
 * after every message: each feed ends right after the message it held
 * for, and the next starts there (with pieces of at most step bytes, 0:
 * the rest). A feed may take nothing: an error found at the first byte is
 * said before the byte is skipped. *feeds and *calls count feeds and
 * callbacks; *stuck says a feed stopped short without a message, or took
 * more than it was given.
 */
static char *
run_held(
    const char *in, size_t len, size_t step, int *feeds, int *calls, int *stuck)
{
	struct rec r;
	size_t off = 0, n, used;
	int before;

	rec_init(&r, NULL);
	r.hold = 1;
	*feeds = *stuck = 0;
	while (off < len) {
		n = step == 0 || len - off < step ? len - off : step;
		before = r.nval + r.nerr;
		used = proto_feed(r.p, in + off, n);
		(*feeds)++;
		if (used > n || (used < n && r.nval + r.nerr == before)) {
			*stuck = 1;
			break;
		}
		off += used;
	}
	*calls = r.nval + r.nerr;
	return rec_done(&r);
}

/*
 * Whole, then split at every offset, then byte by byte, then held after
 * every message: the same.
 */
static void
check_len(const char *in, size_t len, const char *want, const char *name)
{
	char *whole, *got;
	size_t k, bad = 0, firstbad = 0;
	int feeds, calls, stuck;

	whole = run_step(in, len, 0);
	if (!is_str(want, whole, "%s", name)) {
		free(whole);
		return;
	}
	for (k = 1; k < len; k++) {
		got = run_split(in, len, k);
		if (strcmp(got, whole) != 0 && bad++ == 0) {
			firstbad = k;
			diag("split at %zu: %s", k, got);
		}
		free(got);
	}
	got = run_step(in, len, 1);
	if (strcmp(got, whole) != 0 && bad++ == 0)
		diag("byte by byte: %s", got);
	free(got);
	got = run_held(in, len, 0, &feeds, &calls, &stuck);
	if ((strcmp(got, whole) != 0 || stuck || feeds < calls) && bad++ == 0)
		diag("held (%d feeds, %d calls%s): %s", feeds, calls,
		    stuck ? ", stuck" : "", got);
	free(got);
	if (!ok(bad == 0, "%s: the same at every split offset", name))
		diag("%zu differ, first at %zu", bad, firstbad);
	free(whole);
}

struct tcase {
	const char *name;
	const char *in;
	size_t len; /* 0: strlen */
	const char *want;
};

#define C(name, in, want) \
	{ \
		name, in, 0, want \
	}
#define CL(name, in, want) \
	{ \
		name, in, sizeof(in) - 1, want \
	}

static const struct tcase valid[] = {
	C("one request", "{\"execute\":\"guest-ping\"}", PING_OUT),
	C("two packed",
	    "{\"execute\":\"guest-ping\",\"id\":1}"
	    "{\"execute\":\"guest-ping\",\"id\":2}",
	    "{\"execute\": \"guest-ping\", \"id\": 1}\n"
	    "{\"execute\": \"guest-ping\", \"id\": 2}\n"),
	C("multi-line request",
	    "\n\n  {\r\n \"execute\" :\t\"guest-ping\"\n}\n\n", PING_OUT),
	C("proxmox pair",
	    "{\"arguments\":{\"id\":4242011},\"execute\":"
	    "\"guest-sync-delimited\"}\n"
	    "{\"arguments\":{},\"execute\":\"guest-fsfreeze-status\"}\n",
	    "{\"execute\": \"guest-sync-delimited\", \"arguments\": "
	    "{\"id\": 4242011}}\n"
	    "{\"execute\": \"guest-fsfreeze-status\", \"arguments\": {}}\n"),
	C("libvirt sync",
	    "{\"execute\":\"guest-sync\", "
	    "\"arguments\":{\"id\":1795390000123}}\n",
	    "{\"execute\": \"guest-sync\", \"arguments\": {\"id\": "
	    "1795390000123}}\n"),
	C("bare number then space", "42 ", "42\n"),
	C("bare number then LF", "42\n", "42\n"),
	C("bare number then request",
	    "42{\"execute\":\"guest-ping\",\"id\":\"probe\"}",
	    "42\n{\"execute\": \"guest-ping\", \"id\": \"probe\"}\n"),
	C("bare number waits for its end", "42", ""),
	C("scalars and arrays", "\"hello\" true null [1,2] [] {} false ",
	    "\"hello\"\ntrue\nnull\n[1, 2]\n[]\n{}\nfalse\n"),
	C("keyword then request", "true{}", "true\n{}\n"),
	C("id of every type",
	    "{\"id\":[null,true,false,{\"a\":{},\"b\":[]},[[]],\"\",0]}",
	    "{\"id\": [null, true, false, {\"a\": {}, \"b\": []}, [[]], \"\", "
	    "0]}\n"),
	/* QEMU's dictionary order: by hash bucket, newest first in one */
	C("members in QEMU's order", "{\"z\":1,\"a\":2,\"m\":3}",
	    "{\"a\": 2, \"z\": 1, \"m\": 3}\n"),
	C("members in one bucket: newest first",
	    "{\"aax\":1,\"aay\":2,\"aaz\":3,\"a\":4}",
	    "{\"aaz\": 3, \"aay\": 2, \"aax\": 1, \"a\": 4}\n"),
	C("reply member names",
	    "[{\"id\":1,\"return\":{}},{\"error\":{\"desc\":\"d\","
	    "\"class\":\"c\"},\"id\":1},{\"success-response\":true,"
	    "\"name\":\"n\",\"enabled\":true}]",
	    "[{\"return\": {}, \"id\": 1}, {\"id\": 1, \"error\": "
	    "{\"class\": \"c\", \"desc\": \"d\"}}, {\"enabled\": true, "
	    "\"name\": \"n\", \"success-response\": true}]\n"),
	C("string escapes", "\"a\\\"b\\\\c\\/d\\n\\t\\b\\f\\r\"",
	    "\"a\\\"b\\\\c/d\\n\\t\\b\\f\\r\"\n"),
	C("e acute", "\"caf\xc3\xa9\"", "\"caf\\u00E9\"\n"),
	C("emoji", "\"\xf0\x9f\x98\x80\"", "\"\\uD83D\\uDE00\"\n"),
	C("escaped NUL", "\"a\\u0000b\"", "\"a\\u0000b\"\n"),
	C("escapes normalised",
	    "{\"execute\":\"guest-\\u0070ing\",\"id\":\"\\u00e9\"}",
	    "{\"execute\": \"guest-ping\", \"id\": \"\\u00E9\"}\n"),
	C("surrogate pair", "\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"\n"),
	C("control and DEL", "\"\\u0001\x7f\\u007f\\u001F\"",
	    "\"\\u0001\\u007F\\u007F\\u001F\"\n"),
	C("U+FFFD and U+10FFFD", "\"\xef\xbf\xbd\xf4\x8f\xbf\xbd\"",
	    "\"\\uFFFD\\uDBFF\\uDFFD\"\n"),
	C("modified UTF-8 NUL", "\"a\xc0\x80z\"", "\"a\\u0000z\"\n"),
	C("numbers as qemu-ga prints them",
	    "[1.5,1.0,18446744073709551615,18446744073709551616,-0,1e3,0.1,"
	    "-9223372036854775808,9223372036854775807,9223372036854775808,"
	    "-9223372036854775809,1E2,2e-3,0,-1,1e+2,123456789012345678901234]",
	    "[1.5, 1, 18446744073709551615, 1.8446744073709552e+19, 0, 1000, "
	    "0.10000000000000001, -9223372036854775808, 9223372036854775807, "
	    "9223372036854775808, -9.2233720368547758e+18, 100, 0.002, 0, -1, "
	    "100, 1.2345678901234569e+23]\n"),
	C("double -0 as %.17g", "[-0.0]", "[-0]\n"),
	C("beyond a double: the token", "[1e400,-1e400,1E+999]",
	    "[1e400, -1e400, 1E+999]\n"),
	C("tiny double", "[1e-400,5e-324]", "[0, 4.9406564584124654e-324]\n"),
	C("keys with escapes", "{\"a\\nb\":1,\"\\u00e9\":2,\"\\u0000\":3}",
	    "{\"\\u00E9\": 2, \"\\u0000\": 3, \"a\\nb\": 1}\n"),
};

static const struct tcase errors[] = {
	/* protocol.md 2.4, each followed by a request that must parse */
	C("bad byte in a value",
	    "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":TRUE}}\n" PING,
	    ERR("stray 'T'") PING_OUT),
	C("plus", "{\"id\":+1}\n" PING, ERR("stray '+'") PING_OUT),
	C("leading zero", "{\"id\":01}\n" PING, ERR("stray '01'") PING_OUT),
	C("minus alone", "{\"id\":-x}\n" PING, ERR("stray '-x'") PING_OUT),
	C("no fraction digits", "[1.]\n" PING, ERR("stray '1.]'") PING_OUT),
	C("no exponent digits", "[1e+]\n" PING, ERR("stray '1e+]'") PING_OUT),
	C("uppercase garbage", "HELLO\n" PING, ERR("stray 'H'") PING_OUT),
	C("control char in string", "{\"execute\":\"guest-p\x01ing\"}\n" PING,
	    ERR("stray '\\\"guest-p\\u0001'") PING_OUT),
	CL("raw NUL", "\0\n" PING, ERR("stray ''") PING_OUT),
	CL("NUL in string", "{\"id\":\"a\0b\"}\n" PING,
	    ERR("stray '\\\"a'") PING_OUT),
	C("single quote", "{'execute':'guest-ping'}\n" PING,
	    ERR("stray '''") PING_OUT),
	C("slash", "/\n" PING, ERR("stray '/'") PING_OUT),
	C("byte 0x80 outside a string", "\x80\n" PING,
	    ERR("stray '\\uFFFD'") PING_OUT),
	C("unknown word", "foo \n" PING, ERR("invalid keyword 'foo'") PING_OUT),
	C("unknown word at LF", "foo\n" PING,
	    ERR("invalid keyword 'foo'") PING_OUT),
	C("short keyword", "{\"execute\":\"guest-ping\",\"id\":nul}\n" PING,
	    ERR("invalid keyword 'nul'") PING_OUT),
	C("long keyword", "[truex]\n" PING,
	    ERR("invalid keyword 'truex'") PING_OUT),
	C("two words: one error", "hello world\n" PING,
	    ERR("invalid keyword 'hello'") PING_OUT),
	C("close brace", "}\n" PING, ERR("expecting value") PING_OUT),
	C("close bracket", "]\n" PING, ERR("expecting value") PING_OUT),
	C("colon", ":\n" PING, ERR("expecting value") PING_OUT),
	C("comma", ",\n" PING, ERR("expecting value") PING_OUT),
	C("no value", "{\"execute\":}\n" PING, ERR("expecting value") PING_OUT),
	C("trailing comma in object", "{\"execute\":\"guest-ping\",}\n" PING,
	    ERR("expecting value") PING_OUT),
	C("trailing comma in array", "[1,]\n" PING,
	    ERR("expecting value") PING_OUT),
	C("no colon", "{\"execute\" \"guest-ping\"}\n" PING,
	    ERR("missing : in object pair") PING_OUT),
	C("bad separator in dict", "{\"execute\":\"guest-ping\"]\n" PING,
	    ERR("expected separator in dict") PING_OUT),
	C("hex number", "{\"id\":0x10}\n" PING,
	    ERR("expected separator in dict") PING_OUT),
	C("bad separator in list", "[1 2]\n" PING,
	    ERR("expected separator in list") PING_OUT),
	C("non-string key", "{1:2}\n" PING,
	    ERR("key is not a string in object") PING_OUT),
	C("bad escape", "{\"execute\":\"guest-\\qping\"}\n" PING,
	    ERR("invalid escape sequence in string") PING_OUT),
	C("quote escape", "[\"\\'\"]\n" PING,
	    ERR("invalid escape sequence in string") PING_OUT),
	C("lone continuation byte", "[\"\x80\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("truncated sequence", "[\"\xc3(\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("overlong", "[\"\xc0\xaf\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("UTF-8 surrogate", "[\"\xed\xa0\x80\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("beyond U+10FFFF", "[\"\xf4\x90\x80\x80\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("five-byte lead", "[\"\xf8\x88\x80\x80\x80\"]\n" PING,
	    ERR("invalid UTF-8 sequence in string") PING_OUT),
	C("lone high surrogate", "\"\\ud83d\"\n" PING,
	    ERR("\\\\ud83d is not a valid Unicode character") PING_OUT),
	C("high surrogate then a letter", "\"\\uD83Dx\"\n" PING,
	    ERR("\\\\uD83D is not a valid Unicode character") PING_OUT),
	C("high surrogate then no low one", "\"\\ud83d\\u0041\"\n" PING,
	    ERR("\\\\ud83d is not a valid Unicode character") PING_OUT),
	C("lone low surrogate", "\"\\udc00\"\n" PING,
	    ERR("\\\\udc00 is not a valid Unicode character") PING_OUT),
	C("noncharacter", "\"\\uffff\"\n" PING,
	    ERR("\\\\uffff is not a valid Unicode character") PING_OUT),
	/* qemu quotes the 4 bytes after \u, or up to the string's end */
	C("bad hex digit", "\"\\u12G4\"\n" PING,
	    ERR("\\\\u12G4 is not a valid Unicode character") PING_OUT),
	C("short \\u", "\"\\u12\"\n" PING,
	    ERR("\\\\u12\\\" is not a valid Unicode character") PING_OUT),
	C("short \\u, escaped quote", "\"\\u1\\\"x\"\n" PING,
	    ERR("\\\\u1\\\\\\\"x is not a valid Unicode character") PING_OUT),
	C("\\u, then an escape", "\"\\u12\\n34\"\n" PING,
	    ERR("\\\\u12\\\\n is not a valid Unicode character") PING_OUT),
	/* duplicate keys, at any depth and through escapes */
	C("duplicate key",
	    "{\"execute\":\"guest-ping\",\"execute\":\"guest-info\"}\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("duplicate id",
	    "{\"execute\":\"guest-ping\",\"id\":1,\"id\":2}\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("duplicate key at depth",
	    "{\"execute\":\"guest-ping\",\"arguments\":{\"a\":[{\"b\":1,"
	    "\"b\":2}]}}\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("duplicate key through an escape", "{\"a\":1,\"\\u0061\":2}\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("duplicate in a big object",
	    "{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,"
	    "\"k7\":7,\"k8\":8,\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,"
	    "\"k13\":13,\"k14\":14,\"k15\":15,\"k16\":16,\"k17\":17,\"k9\":0}"
	    "\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("same key in sibling objects", "[{\"a\":1},{\"a\":2}]\n",
	    "[{\"a\": 1}, {\"a\": 2}]\n"),
	C("duplicate key then another error", "{\"a\":1,\"a\":2,X}\n" PING,
	    ERR("duplicate key") PING_OUT),
	C("duplicate key, then 0xFF: dropped silently",
	    "{\"a\":1,\"a\":2\xff" PING, PING_OUT),
	C("error before a duplicate key", "{\"a\":1,X,\"a\":2}\n" PING,
	    ERR("stray 'X'") PING_OUT),
	/* resynchronisation */
	C("unclosed object, new request on the next line",
	    "{\"execute\":\"guest-ping\"\n"
	    "{\"execute\":\"guest-ping\",\"id\":\"probe\"}\n",
	    ERR("expected separator in dict") "{\"execute\": \"guest-ping\", "
					      "\"id\": \"probe\"}\n"),
	C("unclosed after a colon: the next line is its value",
	    "{\"execute\":\"guest-ping\",\"arguments\":\n{\"a\":1}\n" PING,
	    ERR("expected separator in dict") PING_OUT),
	C("unclosed string ends at LF", "{\"execute\":\"guest-ping\n" PING,
	    ERR("stray '\\\"guest-ping\\n'") PING_OUT),
	C("the rest of a bad line is skipped",
	    "{\"a\":1}} {\"execute\":\"guest-ping\",\"id\":1}\n" PING,
	    "{\"a\": 1}\n" ERR("expecting value") PING_OUT),
	C("a '{' not at line start does not restart",
	    "{\"a\":1 {\"execute\":\"guest-ping\"}\n" PING,
	    ERR("expected separator in dict") PING_OUT),
	C("blanks before the '{' that restarts",
	    "[1,2\r\n \t{\"execute\":\"guest-ping\"}\n",
	    ERR("expected separator in list") PING_OUT),
	C("bare number then a bad byte", "42}\n" PING,
	    "42\n" ERR("expecting value") PING_OUT),
	C("CR LF requests",
	    "{\"execute\":\"guest-ping\"}\r\n"
	    "{\"execute\":\"guest-ping\"}\r\n",
	    PING_OUT PING_OUT),
	/* 0xFF and 0xFE: a silent reset */
	C("0xFF before a request",
	    "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":"
	    "{\"id\":77}}\n",
	    "{\"execute\": \"guest-sync-delimited\", \"arguments\": "
	    "{\"id\": 77}}\n"),
	C("0xFF mid-string", "{\"execute\":\"guest-pi\xff" PING, PING_OUT),
	C("0xFF mid-object", "{\"execute\":\"guest-ping\"\xff" PING, PING_OUT),
	C("0xFF mid-escape", "[\"\\u00\xff" PING, PING_OUT),
	C("0xFF mid-UTF-8", "[\"\xe2\x82\xff" PING, PING_OUT),
	C("0xFF after a bare number", "12\xff" PING, PING_OUT),
	C("0xFF in a bad keyword", "foo\xff" PING, PING_OUT),
	C("0xFF ends a skipped line", "HELLO\xff" PING,
	    ERR("stray 'H'") PING_OUT),
	C("0xFF between requests", PING "\xff\xff\xff" PING, PING_OUT PING_OUT),
	C("0xFE", "\xfe" PING "[1,\xfe" PING, PING_OUT PING_OUT),
	C("0xFF alone", "\xff\xff\xff", ""),
};

static void
test_cases(void)
{
	size_t i;

	for (i = 0; i < nitems(valid); i++)
		check_len(valid[i].in,
		    valid[i].len ? valid[i].len : strlen(valid[i].in),
		    valid[i].want, valid[i].name);
	for (i = 0; i < nitems(errors); i++)
		check_len(errors[i].in,
		    errors[i].len ? errors[i].len : strlen(errors[i].in),
		    errors[i].want, errors[i].name);
	is_int(0, (long long)nbug_total,
	    "yajl saw nothing but what the scanner accepted");
}

/* All the error cases in one stream: each still gives its own lines. */
static void
test_packed(void)
{
	struct buf in, want;
	char *got;
	size_t i;
	int feeds, calls, stuck;

	buf_init(&in, 0);
	buf_init(&want, 0);
	for (i = 0; i < nitems(errors); i++) {
		(void)buf_add(&in, errors[i].in,
		    errors[i].len ? errors[i].len : strlen(errors[i].in));
		(void)buf_adds(&want, errors[i].want);
		/* cases ending mid-message get a line end */
		(void)buf_add(&in, "\xff\n", 2);
	}
	(void)buf_addc(&want, '\0');
	got = run_step(buf_head(&in), buf_used(&in), 0);
	is_str(buf_head(&want), got, "every error case in one stream");
	free(got);
	got = run_step(buf_head(&in), buf_used(&in), 7);
	is_str(buf_head(&want), got, "... fed 7 bytes at a time");
	free(got);
	got = run_step(buf_head(&in), buf_used(&in), 4096);
	is_str(buf_head(&want), got, "... fed 4096 bytes at a time");
	free(got);
	got = run_held(buf_head(&in), buf_used(&in), 0, &feeds, &calls, &stuck);
	is_str(buf_head(&want), got, "... held after every message");
	ok(!stuck && feeds >= calls && calls > 50,
	    "... each feed ends at its message (%d feeds, %d messages)", feeds,
	    calls);
	free(got);
	got = run_held(buf_head(&in), buf_used(&in), 7, &feeds, &calls, &stuck);
	is_str(buf_head(&want), got,
	    "... held after every message, 7 bytes at a time");
	ok(!stuck, "... every feed that stopped short gave a message");
	free(got);
	buf_free(&in);
	buf_free(&want);
}

static void
test_reset(void)
{
	struct rec r;
	char *got;
	const char two[] = PING PING PING;

	rec_init(&r, NULL);
	proto_feed(r.p, "{\"execute\":\"gue", 15);
	proto_reset(r.p);
	proto_feed(r.p, PING, strlen(PING));
	got = rec_done(&r);
	is_str(PING_OUT, got, "proto_reset drops the half-read request");
	free(got);

	rec_init(&r, NULL);
	proto_feed(r.p, "HELLO", 5);
	proto_reset(r.p);
	proto_feed(r.p, PING, strlen(PING));
	got = rec_done(&r);
	is_str(ERR("stray 'H'") PING_OUT, got,
	    "proto_reset ends the skip of a bad line");
	free(got);

	rec_init(&r, NULL);
	r.reset_at = 1;
	proto_feed(r.p, two, strlen(two));
	proto_feed(r.p, PING, strlen(PING));
	got = rec_done(&r);
	is_str(PING_OUT PING_OUT, got,
	    "proto_reset from the callback drops the rest of that feed");
	free(got);

	rec_init(&r, NULL);
	r.free_at = 1;
	proto_feed(r.p, two, strlen(two));
	ok(r.p == NULL && r.nval == 1, "proto_free from the callback");
	got = rec_done(&r);
	free(got);

	proto_free(NULL);
	proto_reset(NULL);
	ok(1, "proto_free(NULL), proto_reset(NULL)");
}

static void
take_cb(void *arg, struct jval *v, const char *desc)
{
	struct jval **out = arg;

	(void)desc;
	if (*out == NULL)
		*out = v;
	else
		jval_free(v);
}

static struct jval *
parse1(const char *s)
{
	struct jval *v = NULL;
	struct proto *p;

	p = proto_new(NULL, take_cb, &v);
	proto_feed(p, s, strlen(s));
	proto_feed(p, " ", 1);
	proto_free(p);
	return v;
}

static char *
put(const struct jval *v)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	json_put_val(&b, v);
	s = xstrndup(buf_head(&b), buf_used(&b));
	buf_free(&b);
	return s;
}

static void
test_jval(void)
{
	struct jval *v, *d, *x;
	char *a, *b;
	const char *req = "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":"
			  "-9223372036854775808},\"id\":[1,\"\\u00e9\",null,{"
			  "\"k\":true}],\"n\":18446744073709551615,\"f\":1.5}";

	v = parse1(req);
	if (!ok(v != NULL && v->type == JV_OBJECT, "parsed an object")) {
		jval_free(v);
		return;
	}
	x = jval_get(v, "execute");
	ok(x != NULL && x->type == JV_STRING && x->slen == 10 &&
		strcmp(x->s, "guest-sync") == 0,
	    "jval_get execute");
	ok(jval_get(v, "nope") == NULL, "jval_get of a missing key");
	ok(jval_get(x, "execute") == NULL, "jval_get on a string");
	ok(jval_get(NULL, "execute") == NULL, "jval_get on NULL");
	x = jval_get(jval_get(v, "arguments"), "id");
	ok(x != NULL && x->type == JV_NUMBER && (x->numflags & JV_NUM_INT64) &&
		x->i == INT64_MIN && !(x->numflags & JV_NUM_UINT64),
	    "int64 minimum: an int64, not a uint64");
	x = jval_get(v, "n");
	ok(x != NULL && x->numflags == JV_NUM_UINT64 && x->u == UINT64_MAX,
	    "uint64 maximum: a uint64 only");
	x = jval_get(v, "f");
	ok(x != NULL && x->numflags == 0 && x->d == 1.5 &&
		strcmp(x->s, "1.5") == 0,
	    "1.5: a double with its token");
	d = jval_dup(v);
	a = put(v);
	b = put(d);
	is_str(a, b, "jval_dup writes the same");
	ok(d != v && d->v[0] != v->v[0] && d->keys[0] != v->keys[0],
	    "jval_dup copies deeply");
	free(a);
	free(b);
	jval_free(d);
	jval_free(v);
	jval_free(NULL);
	ok(jval_dup(NULL) == NULL, "jval_dup(NULL)");

	v = parse1("\"a\\u0000b\"");
	ok(v != NULL && v->type == JV_STRING && v->slen == 4 &&
		memcmp(v->s,
		    "a\xc0\x80"
		    "b",
		    5) == 0,
	    "\\u0000 is held as C0 80, as QEMU holds it");
	jval_free(v);
	v = parse1("\"a\xc0\x80z\"");
	ok(v != NULL && v->slen == 4 && memcmp(v->s, "a\xc0\x80z", 5) == 0,
	    "so is a raw C0 80");
	jval_free(v);
	v = parse1("{\"execute\":\"guest-ping\\u0000\"}");
	x = jval_get(v, "execute");
	ok(x != NULL && strcmp(x->s, "guest-ping") != 0 &&
		strlen(x->s) == x->slen,
	    "a name with a NUL is a C string that is not the name");
	jval_free(v);
}

static void
put_str_is(const char *in, size_t len, const char *want, const char *name)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	json_put_str(&b, in, len);
	s = xstrndup(buf_head(&b), buf_used(&b));
	is_str(want, s, "json_put_str: %s", name);
	free(s);
	buf_free(&b);
}

static void
test_put_str(void)
{
	put_str_is("", 0, "\"\"", "empty");
	put_str_is("a/b", 3, "\"a/b\"", "slash as is");
	put_str_is("\xff", 1, "\"\\uFFFD\"", "0xFF");
	put_str_is("a\xc3(", 3, "\"a\\uFFFD(\"", "broken sequence");
	put_str_is("\xe2\x82", 2, "\"\\uFFFD\"", "truncated at the end");
	put_str_is("\xed\xa0\x80", 3, "\"\\uFFFD\"", "UTF-8 surrogate");
	put_str_is("\xef\xbf\xbf", 3, "\"\\uFFFD\"", "noncharacter");
	put_str_is("\xc0\xaf", 2, "\"\\uFFFD\"", "overlong");
	put_str_is("\x80\x80", 2, "\"\\uFFFD\\uFFFD\"", "two continuations");
	put_str_is("\x01\x1f\x7f", 3, "\"\\u0001\\u001F\\u007F\"", "controls");
	put_str_is("\xf0\x9f\x98\x80", 4, "\"\\uD83D\\uDE00\"", "astral");
	put_str_is("\xc2\xa0\xe2\x82\xac", 5, "\"\\u00A0\\u20AC\"", "BMP");
}

static void
test_put_val(void)
{
	struct jval v;
	struct buf b;
	char *s;

	memset(&v, 0, sizeof v);
	v.type = JV_NUMBER;
	v.d = 1.0 / 0.0;
	buf_init(&b, 0);
	json_put_val(&b, &v);
	s = xstrndup(buf_head(&b), buf_used(&b));
	is_str("null", s, "an infinity without a token is never written");
	free(s);
	buf_free(&b);
}

int
main(void)
{
	plan_lazy();
	test_cases();
	test_packed();
	test_reset();
	test_jval();
	test_put_str();
	test_put_val();
	return tap_done();
}
