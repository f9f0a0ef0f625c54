/* SPDX-License-Identifier: ISC */
/* The request parser: a byte stream in, one value or one error per message. */

/*
 * Two layers. The scanner below is a small JSON lexer and grammar checker
 * with qemu-ga's lexical rules (qobject/json-lexer.c): it frames messages
 * (there is no line framing), enforces the limits, decides every error
 * desc and resynchronises. yajl_parse (with yajl_allow_multiple_values)
 * decodes strings and numbers and builds the jval tree through callbacks,
 * and is fed only bytes the scanner has already accepted: so yajl never
 * sees a malformed message, and what it is fed and when does not decide
 * anything except duplicate keys, which only it can see (after unescaping).
 *
 * Determinism: every decision depends on the bytes only, never on how they
 * were split into feeds. The first error in byte order gives the desc: the
 * scanner flushes yajl up to the offending byte before it reports, so a
 * duplicate key before it wins. yajl is also fed at the end of each feed
 * (so nothing is kept but yajl's own state), but a duplicate key it finds
 * then is only said at the scanner's next decision point, where one whole
 * feed would have found it as well.
 *
 * Values are delivered when the scanner sees the message end: at its
 * closing '}' ']' or '"', or, for a bare number or keyword, at the next byte
 * that cannot continue it (so "42 ", "42\n" and "42{...}" all deliver 42).
 * yajl needs that byte too for a number: it gets a synthetic space, so
 * yajl_complete_parse is never needed.
 *
 * Exactly one error per malformed message, then resynchronisation
 * (protocol.md 6.1): if the offending token is a '{' that is the first
 * non-blank byte of its line, a new message starts there; otherwise the
 * rest of the line is discarded, through the next LF (an offending LF ends
 * the discard at once). A 0xFE or 0xFF byte anywhere drops the half-read
 * message silently (6.4): no error, no reply.
 *
 * Unclosed messages: a message may span lines (pretty-printed requests are
 * fully supported), so LF never ends one. But yajl-like streaming checks
 * catch the common case early: "{"execute":"guest-ping"<LF>{...}" has a
 * '{' where ',' or '}' must come, at the start of a line, so the first
 * message gets one error and the second parses. Only where a '{' can
 * legitimately continue the open message (after ':' or in an array) is it
 * taken as part of it; the next line starting with '{' then ends it.
 *
 * Limits (6.1): max_size bytes per message, counted from its first byte to
 * its last (a bare scalar counts the byte that ends it), and max_depth open
 * brackets. Over either: one error, then the rest of that message is
 * skipped without buffering (the scanner keeps following its structure,
 * or just counts brackets past the depth limit), so memory stays bounded
 * whatever arrives.
 *
 * Error descs. Exact qemu-ga 7.2 texts: "stray '...'" (the bad token so
 * far, capped at PROTO_TOKMAX bytes, NULs dropped as qemu's C strings do),
 * "invalid keyword '...'", "expecting value", "missing : in object pair",
 * "expected separator in dict", "expected separator in list", "key is not
 * a string in object", "invalid escape sequence in string", "invalid UTF-8
 * sequence in string", "\uXXXX is not a valid Unicode character",
 * "duplicate key", "JSON nesting depth limit exceeded". Approximate: qemu
 * finds grammar errors only when the brackets balance, after its lexer
 * errors; we report the first problem in byte order, so a message with
 * both gets the grammar desc. The \' escape and single-quoted strings
 * (QEMU extensions) are errors here. Our own: "JSON message size limit
 * exceeded" (qemu-ga has no size limit).
 */

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "agent.h"

#define PROTO_TOKMAX 128 /* bytes of a bad token quoted in its error */
#define PROTO_PERR "JSON parse error, "

enum proto_mode {
	PM_NORMAL,
	PM_DOOMED,    /* error said: follow the message to its end, silent */
	PM_BADTOK,    /* bad keyword or \u: collect the rest for the desc */
	PM_SKIP_LINE, /* discard through the next LF */
	PM_SKIP_DEEP, /* past the depth limit: count brackets to 0 */
};

enum proto_lex {
	LX_NONE, /* between tokens */
	LX_STR,
	LX_STR_ESC,    /* after a backslash */
	LX_STR_HEX,    /* in \uXXXX */
	LX_STR_LOW1,   /* after a high surrogate: '\' must follow */
	LX_STR_LOW2,   /* then 'u' */
	LX_STR_LOWHEX, /* then the low surrogate's hex digits */
	LX_STR_BADHEX, /* \u with a bad digit: its 4 bytes, for the desc */
	LX_STR_UTF8,   /* continuation bytes to come */
	LX_NUM_MINUS,
	LX_NUM_ZERO,
	LX_NUM_INT,
	LX_NUM_DOT,
	LX_NUM_FRAC,
	LX_NUM_E,
	LX_NUM_ESIGN,
	LX_NUM_EXP,
	LX_KW,
};

enum proto_gram {
	G_VALUE,	  /* top level, after ':', after ',' in an array */
	G_VALUE_OR_CLOSE, /* after '[' */
	G_KEY_OR_CLOSE,	  /* after '{' */
	G_KEY,		  /* after ',' in an object */
	G_COLON,	  /* after a key */
	G_SEP,		  /* after a value inside a container */
};

enum proto_tok {
	T_VALUE, /* number, keyword, '{', '[' */
	T_STRING,
	T_CLOSE_OBJ,
	T_CLOSE_ARR,
	T_COLON,
	T_COMMA,
};

enum proto_err {
	PE_NONE,
	PE_STRAY,
	PE_KEYWORD,
	PE_EXPECT_VALUE,
	PE_MISSING_COLON,
	PE_SEP_DICT,
	PE_SEP_LIST,
	PE_KEY_NOT_STRING,
	PE_ESCAPE,
	PE_UTF8,
	PE_UNICODE,
	PE_DEPTH,
	PE_SIZE,
};

static const char *const proto_err_desc[] = {
	[PE_EXPECT_VALUE] = PROTO_PERR "expecting value",
	[PE_MISSING_COLON] = PROTO_PERR "missing : in object pair",
	[PE_SEP_DICT] = PROTO_PERR "expected separator in dict",
	[PE_SEP_LIST] = PROTO_PERR "expected separator in list",
	[PE_KEY_NOT_STRING] = PROTO_PERR "key is not a string in object",
	[PE_ESCAPE] = PROTO_PERR "invalid escape sequence in string",
	[PE_UTF8] = PROTO_PERR "invalid UTF-8 sequence in string",
	[PE_DEPTH] = "JSON nesting depth limit exceeded",
	[PE_SIZE] = "JSON message size limit exceeded",
};

/* A container being built, with a key index once it has many members. */
struct proto_frame {
	struct jval *v;
	size_t cap;
	uint32_t *ht; /* member index + 1; open addressing */
	size_t htcap;
};

struct proto {
	struct proto_limits lim;
	proto_msg_fn *fn;
	void *arg;

	/* yajl and the tree it builds */
	yajl_handle yh;
	int ydirty;  /* yh holds part of an unfinished message */
	int yfailed; /* yh stopped: ydesc says why */
	int ydup;    /* ... because of a duplicate key */
	char ydesc[128];
	struct proto_frame *fr;
	size_t nfr;
	char *key; /* member name waiting for its value */
	size_t keylen;
	struct jval **ready; /* values yajl completed, not yet delivered */
	size_t nready;
	size_t readycap;
	unsigned long nbug; /* scanner and yajl disagreed (never) */

	/* the scanner */
	enum proto_mode mode;
	enum proto_lex lx;
	enum proto_gram gs;
	int inkey;	     /* the string being lexed is a member name */
	int sawnul;	     /* the message has a \u0000 */
	unsigned char *cont; /* per open bracket: 1 object, 0 array */
	size_t depth;
	int inmsg;
	int line_blank;	   /* only blanks since the last LF */
	uint64_t pos;	   /* stream offset of this feed's first byte */
	uint64_t msgstart; /* stream offset of the message's first byte */
	size_t span;	   /* this feed's first byte yajl has not seen */
	size_t deep;	   /* PM_SKIP_DEEP: open brackets */
	int deepstr;
	int deepesc;

	/* the token being lexed */
	size_t tokstart;	/* where it starts in this feed (0: earlier) */
	char tok[PROTO_TOKMAX]; /* its bytes from earlier feeds */
	size_t toklen;
	const char *kw; /* keyword it can still become, or NULL */
	size_t kwpos;
	unsigned int u8need; /* UTF-8 continuation bytes to come */
	unsigned int u8len;
	uint32_t u8cp;
	unsigned int hexn;
	uint32_t hexcp;
	uint32_t hi;  /* the high surrogate waiting for its pair */
	int badesc;   /* LX_STR_BADHEX: after a backslash */
	char esc[13]; /* the \u escape(s) as written */
	size_t esclen;

	char desc[sizeof(PROTO_PERR) + PROTO_TOKMAX + 64];
	int infeed;
	int stop; /* reset, freed or held from the callback */
	int held; /* proto_hold(): the feed ends after this message */
	int dead;
};

/* Bytes that stand for themselves inside a string. */
static unsigned char proto_plain[256];

static void proto_drop(struct proto *);
static void proto_drop_build(struct proto *);

static void *
proto_ymalloc(void *ctx, size_t n)
{
	(void)ctx;
	return xmalloc(n);
}

static void *
proto_yrealloc(void *ctx, void *ptr, size_t n)
{
	(void)ctx;
	return xrealloc(ptr, n);
}

static void
proto_yfree(void *ctx, void *ptr)
{
	(void)ctx;
	free(ptr);
}

static yajl_alloc_funcs proto_yalloc = {
	proto_ymalloc,
	proto_yrealloc,
	proto_yfree,
	NULL,
};

/* --- the tree, built from yajl's callbacks */

static struct jval *
proto_jnew(enum jtype type)
{
	struct jval *v;

	v = xmalloc(sizeof *v);
	memset(v, 0, sizeof *v);
	v->type = type;
	return v;
}

/*
 * Strings are held as QEMU holds them: modified UTF-8, U+0000 as C0 80
 * (what qemu's parser makes of \u0000, and what a raw C0 80 already is).
 * So s is a C string, a name with a NUL in it matches no command and is
 * quoted back as \u0000 in an error, as qemu-ga does. yajl gives \u0000 as
 * a NUL byte: this is the length once each is two bytes.
 */
static size_t
proto_textlen(const struct proto *p, const unsigned char *s, size_t len)
{
	const unsigned char *z = s;
	size_t n = len;

	if (!p->sawnul || len == 0)
		return len;
	while ((z = memchr(z, '\0', len - (size_t)(z - s))) != NULL) {
		n++;
		if (++z == s + len)
			break;
	}
	return n;
}

/* Copy s (len bytes, outlen once NULs are C0 80) into d, NUL-terminated. */
static void
proto_textcpy(char *d, const unsigned char *s, size_t len, size_t outlen)
{
	size_t i, j;

	if (outlen == len) {
		if (len > 0)
			memcpy(d, s, len);
	} else {
		for (i = j = 0; i < len; i++) {
			if (s[i] == '\0') {
				d[j++] = (char)0xc0;
				d[j++] = (char)0x80;
			} else
				d[j++] = (char)s[i];
		}
	}
	d[outlen] = '\0';
}

static char *
proto_strdup(
    const struct proto *p, const unsigned char *s, size_t len, size_t *outlen)
{
	char *d;

	*outlen = proto_textlen(p, s, len);
	d = xmalloc(*outlen + 1);
	proto_textcpy(d, s, len, *outlen);
	return d;
}

/* A string or number: one allocation, its text right after it (jval_free
 * knows). */
static struct jval *
proto_jnew_text(
    const struct proto *p, enum jtype type, const unsigned char *s, size_t len)
{
	struct jval *v;
	size_t outlen;

	outlen = proto_textlen(p, s, len);
	v = xmalloc(sizeof *v + outlen + 1);
	memset(v, 0, sizeof *v);
	v->type = type;
	v->s = (char *)(v + 1);
	v->slen = outlen;
	proto_textcpy(v->s, s, len, outlen);
	return v;
}

static void
proto_ready(struct proto *p, struct jval *v)
{
	if (p->nready == p->readycap) {
		p->readycap = p->readycap ? p->readycap * 2 : 2;
		p->ready =
		    xreallocarray(p->ready, p->readycap, sizeof *p->ready);
	}
	p->ready[p->nready++] = v;
}

static uint32_t
proto_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static void
proto_ht_insert(struct proto_frame *f, size_t idx)
{
	const struct jval *o = f->v;
	size_t h;

	h = proto_hash(o->keys[idx], o->keylens[idx]) & (f->htcap - 1);
	while (f->ht[h] != 0)
		h = (h + 1) & (f->htcap - 1);
	f->ht[h] = (uint32_t)idx + 1;
}

static void
proto_ht_build(struct proto_frame *f, size_t want)
{
	size_t i;

	free(f->ht);
	for (f->htcap = 16; f->htcap < want * 2; f->htcap *= 2)
		;
	f->ht = xcalloc(f->htcap, sizeof *f->ht);
	for (i = 0; i < f->v->n; i++)
		proto_ht_insert(f, i);
}

/* Objects with more members than this get a hash index for the check. */
#define PROTO_HT_MIN 8

static int
proto_has_key(struct proto_frame *f, const unsigned char *k, size_t len)
{
	const struct jval *o = f->v;
	size_t i, h;
	uint32_t e;

	if (o->n < PROTO_HT_MIN) {
		for (i = 0; i < o->n; i++) {
			if (o->keylens[i] == len &&
			    memcmp(o->keys[i], k, len) == 0)
				return 1;
		}
		return 0;
	}
	if (f->ht == NULL || (o->n + 1) * 2 > f->htcap)
		proto_ht_build(f, o->n + 1);
	h = proto_hash((const char *)k, len) & (f->htcap - 1);
	while ((e = f->ht[h]) != 0) {
		i = e - 1;
		if (o->keylens[i] == len && memcmp(o->keys[i], k, len) == 0)
			return 1;
		h = (h + 1) & (f->htcap - 1);
	}
	return 0;
}

/* Attach v to the open container, or make it a finished top-level value. */
static int
proto_add(struct proto *p, struct jval *v)
{
	struct proto_frame *f;
	struct jval *c;

	if (p->nfr == 0) {
		proto_ready(p, v);
		return 1;
	}
	f = &p->fr[p->nfr - 1];
	c = f->v;
	if (c->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 4;
		c->v = xreallocarray(c->v, f->cap, sizeof *c->v);
		if (c->type == JV_OBJECT) {
			c->keys =
			    xreallocarray(c->keys, f->cap, sizeof *c->keys);
			c->keylens = xreallocarray(
			    c->keylens, f->cap, sizeof *c->keylens);
		}
	}
	if (c->type == JV_OBJECT) {
		if (p->key == NULL) {
			/* yajl gives a key before each member value */
			p->nbug++;
			jval_free(v);
			return 0;
		}
		c->keys[c->n] = p->key;
		c->keylens[c->n] = p->keylen;
		p->key = NULL;
	}
	c->v[c->n++] = v;
	if (f->ht != NULL)
		proto_ht_insert(f, c->n - 1);
	return 1;
}

static int
proto_y_null(void *ctx)
{
	return proto_add(ctx, proto_jnew(JV_NULL));
}

static int
proto_y_bool(void *ctx, int b)
{
	struct jval *v;

	v = proto_jnew(JV_BOOL);
	v->b = b != 0;
	return proto_add(ctx, v);
}

/*
 * Numbers keep their token. Like qemu's parser: an integer token (no '.',
 * no exponent) that fits int64 or uint64 is that integer; d holds the
 * double value of every number (for an integer, (double) rounds exactly as
 * strtod would). The scanner has checked the token's syntax.
 */
static int
proto_y_number(void *ctx, const char *s, size_t len)
{
	struct jval *v;
	const char *t;
	uint64_t acc = 0;
	size_t k;
	int neg, over = 0;

	v = proto_jnew_text(ctx, JV_NUMBER, (const unsigned char *)s, len);
	t = v->s;
	neg = t[0] == '-';
	for (k = neg; k < v->slen; k++) {
		if (t[k] < '0' || t[k] > '9')
			break;
		if (acc > (UINT64_MAX - (uint64_t)(t[k] - '0')) / 10)
			over = 1;
		acc = acc * 10 + (uint64_t)(t[k] - '0');
	}
	if (k < v->slen || over) {
		v->d = strtod(t, NULL);
		return proto_add(ctx, v);
	}
	if (!neg) {
		v->numflags = JV_NUM_UINT64;
		v->u = acc;
		if (acc <= INT64_MAX) {
			v->numflags |= JV_NUM_INT64;
			v->i = (int64_t)acc;
		}
		v->d = (double)acc;
	} else if (acc <= (uint64_t)INT64_MAX + 1) {
		v->numflags = JV_NUM_INT64;
		v->i =
		    acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
		v->d = -(double)acc;
	} else
		v->d = strtod(t, NULL);
	return proto_add(ctx, v);
}

static int
proto_y_string(void *ctx, const unsigned char *s, size_t len)
{
	struct jval *v;

	v = proto_jnew_text(ctx, JV_STRING, s, len);
	return proto_add(ctx, v);
}

static int
proto_y_start(struct proto *p, enum jtype type)
{
	struct jval *v;
	struct proto_frame *f;

	if (p->nfr > p->lim.max_depth) {
		/* the scanner stops deeper messages before yajl sees them */
		p->nbug++;
		return 0;
	}
	v = proto_jnew(type);
	if (p->nfr > 0 && !proto_add(p, v))
		return 0;
	f = &p->fr[p->nfr++];
	memset(f, 0, sizeof *f);
	f->v = v;
	return 1;
}

static int
proto_y_start_map(void *ctx)
{
	return proto_y_start(ctx, JV_OBJECT);
}

static int
proto_y_start_array(void *ctx)
{
	return proto_y_start(ctx, JV_ARRAY);
}

static int
proto_y_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct proto *p = ctx;

	if (p->nfr == 0 || p->key != NULL) {
		p->nbug++;
		return 0;
	}
	if (proto_has_key(&p->fr[p->nfr - 1], s, len)) {
		p->ydup = 1;
		return 0;
	}
	p->key = proto_strdup(p, s, len, &p->keylen);
	return 1;
}

static int
proto_y_end(void *ctx)
{
	struct proto *p = ctx;
	struct proto_frame *f;

	if (p->nfr == 0) {
		p->nbug++;
		return 0;
	}
	f = &p->fr[--p->nfr];
	free(f->ht);
	f->ht = NULL;
	if (p->nfr == 0)
		proto_ready(p, f->v);
	f->v = NULL;
	return 1;
}

static const yajl_callbacks proto_ycb = {
	.yajl_null = proto_y_null,
	.yajl_boolean = proto_y_bool,
	.yajl_number = proto_y_number,
	.yajl_string = proto_y_string,
	.yajl_start_map = proto_y_start_map,
	.yajl_map_key = proto_y_map_key,
	.yajl_end_map = proto_y_end,
	.yajl_start_array = proto_y_start_array,
	.yajl_end_array = proto_y_end,
};

/*
 * yajl's own errors, mapped to qemu's wording. Only a duplicate key is
 * expected: the scanner lets nothing else through (the fuzzer checks
 * nbug), so the rest is a safety net.
 */
static void
proto_ymap(struct proto *p)
{
	static const struct {
		const char *has;
		const char *desc;
	} map[] = {
		{ "separated by a colon", "missing : in object pair" },
		{ "inside map, I expect", "expected separator in dict" },
		{ "after array element", "expected separator in list" },
		{ "invalid object key", "key is not a string in object" },
		{ "occurs before a character",
		    "invalid escape sequence in string" },
		{ "non-hex", "invalid escape sequence in string" },
		{ "UTF8", "invalid UTF-8 sequence in string" },
	};
	unsigned char *t;
	const char *d = "expecting value";
	size_t i;

	if (p->ydup) {
		d = "duplicate key";
	} else {
		p->nbug++;
		t = yajl_get_error(p->yh, 0, NULL, 0);
		for (i = 0; t != NULL && i < nitems(map); i++) {
			if (strstr((char *)t, map[i].has) != NULL) {
				d = map[i].desc;
				break;
			}
		}
		if (t != NULL)
			yajl_free_error(p->yh, t);
	}
	(void)snprintf(p->ydesc, sizeof p->ydesc, "%s%s", PROTO_PERR, d);
}

/* Feed yajl bytes the scanner accepted; -1 when it stopped (ydesc set). */
static int
proto_yfeed(struct proto *p, const unsigned char *s, size_t len)
{
	if (p->yh == NULL) {
		p->yh = yajl_alloc(&proto_ycb, &proto_yalloc, p);
		if (p->yh == NULL)
			fatalx("yajl_alloc");
		(void)yajl_config(p->yh, yajl_allow_multiple_values, 1);
	}
	p->ydirty = 1;
	if (yajl_parse(p->yh, s, len) == yajl_status_ok)
		return 0;
	proto_ymap(p);
	p->yfailed = 1;
	return -1;
}

/* Feed yajl this feed's bytes up to end that it has not seen. */
static int
proto_flush(struct proto *p, const unsigned char *s, size_t end)
{
	size_t from = p->span;

	if (p->yfailed)
		return -1;
	if (end <= from)
		return 0;
	p->span = end;
	return proto_yfeed(p, s + from, end - from);
}

/* Forget the tree and yajl's part of the message. */
static void
proto_drop_build(struct proto *p)
{
	size_t i;

	if (p->nfr > 0)
		jval_free(p->fr[0].v);
	for (i = 0; i < p->nfr; i++) {
		free(p->fr[i].ht);
		memset(&p->fr[i], 0, sizeof p->fr[i]);
	}
	p->nfr = 0;
	free(p->key);
	p->key = NULL;
	for (i = 0; i < p->nready; i++)
		jval_free(p->ready[i]);
	p->nready = 0;
	if (p->ydirty && p->yh != NULL) {
		yajl_free(p->yh);
		p->yh = NULL;
	}
	p->ydirty = p->yfailed = p->ydup = 0;
}

/* Forget the scanner's part of the message. */
static void
proto_drop_scan(struct proto *p)
{
	p->mode = PM_NORMAL;
	p->lx = LX_NONE;
	p->gs = G_VALUE;
	p->depth = 0;
	p->inmsg = 0;
	p->toklen = 0;
	p->hi = 0;
}

/* A silent reset: 0xFE, 0xFF, proto_reset(). */
static void
proto_drop(struct proto *p)
{
	proto_drop_build(p);
	proto_drop_scan(p);
	p->line_blank = 1;
}

static void
proto_emit(struct proto *p, struct jval *v, const char *desc)
{
	p->fn(p->arg, v, desc);
}

/* --- the scanner */

/* The token so far, from earlier feeds and this one up to end. */
static size_t
proto_toktext(
    const struct proto *p, const unsigned char *s, size_t end, char *out)
{
	size_t j, k = 0;

	for (j = 0; j < p->toklen && k < PROTO_TOKMAX; j++) {
		if (p->tok[j] != '\0')
			out[k++] = p->tok[j];
	}
	for (j = p->tokstart; j < end && k < PROTO_TOKMAX; j++) {
		if (s[j] != '\0')
			out[k++] = (char)s[j];
	}
	out[k] = '\0';
	return k;
}

static const char *
proto_desc(struct proto *p, const unsigned char *s, size_t i, enum proto_err e,
    size_t esclen)
{
	char text[PROTO_TOKMAX + 1];

	switch (e) {
	case PE_STRAY:
		(void)proto_toktext(p, s, i + 1, text);
		(void)snprintf(
		    p->desc, sizeof p->desc, "%sstray '%s'", PROTO_PERR, text);
		break;
	case PE_KEYWORD:
		(void)proto_toktext(p, s, i, text);
		(void)snprintf(p->desc, sizeof p->desc,
		    "%sinvalid keyword '%s'", PROTO_PERR, text);
		break;
	case PE_UNICODE:
		(void)snprintf(p->desc, sizeof p->desc,
		    "%s%.*s is not a valid Unicode character", PROTO_PERR,
		    (int)esclen, p->esc);
		break;
	default:
		return proto_err_desc[e];
	}
	return p->desc;
}

/*
 * A malformed message at byte i. Say so once (unless it was said already),
 * forget it and resynchronise; returns where to go on (byte i again, in
 * the new mode, except past the bracket that broke the depth limit).
 * restart: the offending token is a '{' that starts its line.
 */
static size_t
proto_fail(struct proto *p, const unsigned char *s, size_t i, enum proto_err e,
    int restart, size_t esclen)
{
	const char *desc = NULL;
	int say = p->mode == PM_NORMAL || p->mode == PM_BADTOK;

	/* A duplicate key before byte i comes first. */
	if (p->mode == PM_NORMAL)
		(void)proto_flush(p, s, i);
	if (say)
		desc = p->yfailed ? p->ydesc : proto_desc(p, s, i, e, esclen);
	if (desc == p->ydesc) {
		/* keep it past proto_drop_build() */
		(void)snprintf(p->desc, sizeof p->desc, "%s", p->ydesc);
		desc = p->desc;
	}
	proto_drop_build(p);
	switch (e) {
	case PE_SIZE:
		p->mode = PM_DOOMED;
		break;
	case PE_DEPTH:
		p->deep = p->depth + 1;
		p->deepstr = p->deepesc = 0;
		proto_drop_scan(p);
		p->mode = PM_SKIP_DEEP;
		i++;
		break;
	default:
		proto_drop_scan(p);
		p->mode = restart ? PM_NORMAL : PM_SKIP_LINE;
		break;
	}
	if (desc != NULL)
		proto_emit(p, NULL, desc);
	return i;
}

/* A whole top-level message ends at end: deliver what yajl made of it. */
static void
proto_msg_done(struct proto *p, const unsigned char *s, size_t end, int isnum)
{
	struct jval *v;
	int r;

	p->inmsg = 0;
	if (p->mode == PM_DOOMED) {
		p->mode = PM_NORMAL;
		return;
	}
	r = proto_flush(p, s, end);
	if (r == 0 && isnum)
		r = proto_yfeed(p, (const unsigned char *)" ", 1);
	if (r == 0 && p->nready != 1) {
		p->nbug++;
		(void)snprintf(p->ydesc, sizeof p->ydesc, "%s",
		    proto_err_desc[PE_EXPECT_VALUE]);
		r = -1;
	}
	if (r < 0) {
		(void)snprintf(p->desc, sizeof p->desc, "%s", p->ydesc);
		proto_drop_build(p);
		proto_emit(p, NULL, p->desc);
		return;
	}
	v = p->ready[0];
	p->nready = 0;
	/* yajl is between top-level values again: keep the handle */
	p->ydirty = 0;
	proto_emit(p, v, NULL);
}

/* A value ended before byte end. */
static void
proto_value_end(struct proto *p, const unsigned char *s, size_t end, int isnum)
{
	if (p->depth > 0)
		p->gs = G_SEP;
	else
		proto_msg_done(p, s, end, isnum);
}

static enum proto_err
proto_gram(const struct proto *p, enum proto_tok t)
{
	int obj;

	switch (p->gs) {
	case G_VALUE:
	case G_VALUE_OR_CLOSE:
		if (t == T_VALUE || t == T_STRING ||
		    (t == T_CLOSE_ARR && p->gs == G_VALUE_OR_CLOSE))
			return PE_NONE;
		return PE_EXPECT_VALUE;
	case G_KEY_OR_CLOSE:
	case G_KEY:
		if (t == T_STRING ||
		    (t == T_CLOSE_OBJ && p->gs == G_KEY_OR_CLOSE))
			return PE_NONE;
		return t == T_VALUE ? PE_KEY_NOT_STRING : PE_EXPECT_VALUE;
	case G_COLON:
		return t == T_COLON ? PE_NONE : PE_MISSING_COLON;
	case G_SEP:
		obj = p->cont[p->depth - 1];
		if (t == T_COMMA || t == (obj ? T_CLOSE_OBJ : T_CLOSE_ARR))
			return PE_NONE;
		return obj ? PE_SEP_DICT : PE_SEP_LIST;
	}
	return PE_EXPECT_VALUE;
}

/* Where in this feed the open message reaches max_size, if it does. */
static size_t
proto_limit_at(const struct proto *p)
{
	uint64_t end;

	if (p->mode != PM_NORMAL || !p->inmsg)
		return SIZE_MAX;
	end = p->msgstart + p->lim.max_size;
	if (end <= p->pos)
		return 0;
	if (end - p->pos >= SIZE_MAX)
		return SIZE_MAX;
	return (size_t)(end - p->pos);
}

static int
proto_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Code points qemu accepts in strings (util/unicode.c is_valid_codepoint). */
static int
proto_cp_valid(uint32_t cp)
{
	if (cp > 0x10ffff)
		return 0;
	if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return 0;
	return cp < 0xd800 || cp > 0xdfff;
}

static void
proto_esc_add(struct proto *p, unsigned char c)
{
	if (p->esclen < sizeof p->esc - 1)
		p->esc[p->esclen++] = (char)c;
}

/* A letter that cannot continue a keyword: it will be invalid. */
static size_t
proto_badkw(struct proto *p, const unsigned char *s, size_t i)
{
	if (p->mode == PM_NORMAL) {
		(void)proto_flush(p, s, i);
		if (!p->yfailed) {
			p->mode = PM_BADTOK;
			return i + 1;
		}
	}
	return proto_fail(p, s, i, PE_KEYWORD, 0, 0);
}

/* The first byte of a token (or blank) at i. */
static size_t
proto_token(struct proto *p, const unsigned char *s, size_t i)
{
	static const char *const kws[] = { "true", "false", "null" };
	unsigned char c = s[i];
	enum proto_err e = PE_NONE;
	int blank;
	size_t k;

	if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
		if (c == '\n')
			p->line_blank = 1;
		return i + 1;
	}
	blank = p->line_blank;
	p->line_blank = 0;
	if (!p->inmsg) {
		p->inmsg = 1;
		p->msgstart = p->pos + i;
		p->span = i;
		p->sawnul = 0;
		p->gs = G_VALUE;
		p->depth = 0;
	}
	p->tokstart = i;
	p->toklen = 0;
	switch (c) {
	case '{':
	case '[':
		if ((e = proto_gram(p, T_VALUE)) != PE_NONE)
			return proto_fail(p, s, i, e, c == '{' && blank, 0);
		if (p->depth >= p->lim.max_depth)
			return proto_fail(p, s, i, PE_DEPTH, 0, 0);
		p->cont[p->depth++] = c == '{';
		p->gs = c == '{' ? G_KEY_OR_CLOSE : G_VALUE_OR_CLOSE;
		return i + 1;
	case '}':
	case ']':
		e = proto_gram(p, c == '}' ? T_CLOSE_OBJ : T_CLOSE_ARR);
		if (e != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		p->depth--;
		proto_value_end(p, s, i + 1, 0);
		return i + 1;
	case ':':
		if ((e = proto_gram(p, T_COLON)) != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		p->gs = G_VALUE;
		return i + 1;
	case ',':
		if ((e = proto_gram(p, T_COMMA)) != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		p->gs = p->cont[p->depth - 1] ? G_KEY : G_VALUE;
		return i + 1;
	case '"':
		if ((e = proto_gram(p, T_STRING)) != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		p->inkey = p->gs == G_KEY || p->gs == G_KEY_OR_CLOSE;
		p->lx = LX_STR;
		return i + 1;
	case '-':
	case '0':
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
	case '6':
	case '7':
	case '8':
	case '9':
		if ((e = proto_gram(p, T_VALUE)) != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		if (c == '-')
			p->lx = LX_NUM_MINUS;
		else if (c == '0')
			p->lx = LX_NUM_ZERO;
		else
			p->lx = LX_NUM_INT;
		return i + 1;
	default:
		break;
	}
	if (c >= 'a' && c <= 'z') {
		if ((e = proto_gram(p, T_VALUE)) != PE_NONE)
			return proto_fail(p, s, i, e, 0, 0);
		p->lx = LX_KW;
		p->kw = NULL;
		p->kwpos = 1;
		for (k = 0; k < nitems(kws); k++) {
			if (kws[k][0] == (char)c)
				p->kw = kws[k];
		}
		if (p->kw == NULL)
			return proto_badkw(p, s, i);
		return i + 1;
	}
	/* a byte that cannot start a token: qemu's "stray" */
	return proto_fail(p, s, i, PE_STRAY, 0, 0);
}

/* A byte that is not plain inside a string (LX_STR). */
static size_t
proto_str_byte(struct proto *p, const unsigned char *s, size_t i)
{
	unsigned char c = s[i], mask;
	unsigned int seq;

	if (c == '"') {
		p->lx = LX_NONE;
		if (p->inkey)
			p->gs = G_COLON;
		else
			proto_value_end(p, s, i + 1, 0);
		return i + 1;
	}
	if (c == '\\') {
		p->lx = LX_STR_ESC;
		p->esclen = 0;
		proto_esc_add(p, c);
		return i + 1;
	}
	if (c < 0x20)
		return proto_fail(p, s, i, PE_STRAY, 0, 0);
	/* a continuation byte first, or a lead of 5 or 6 bytes (yajl, too,
	 * rejects these at once, so they must not reach it) */
	if ((c & 0x40) == 0 || c >= 0xf8)
		return proto_fail(p, s, i, PE_UTF8, 0, 0);
	seq = 0;
	for (mask = 0x80; c & mask; mask >>= 1)
		seq++;
	p->u8len = seq;
	p->u8need = seq - 1;
	p->u8cp = c & (mask - 1);
	p->lx = LX_STR_UTF8;
	return i + 1;
}

/* Byte i inside a string, past an escape or inside a UTF-8 sequence. */
static size_t
proto_str_special(struct proto *p, const unsigned char *s, size_t i)
{
	static const uint32_t min_cp[] = { 0x80, 0x800, 0x10000, 0x200000,
		0x4000000 };
	unsigned char c = s[i];
	uint32_t cp;
	int h;

	switch (p->lx) {
	case LX_STR_UTF8:
		if ((c & 0xc0) != 0x80)
			return proto_fail(
			    p, s, i, c < 0x20 ? PE_STRAY : PE_UTF8, 0, 0);
		p->u8cp = (p->u8cp << 6) | (c & 0x3f);
		if (--p->u8need > 0)
			return i + 1;
		cp = p->u8cp;
		if (!proto_cp_valid(cp) ||
		    (cp < min_cp[p->u8len - 2] && !(cp == 0 && p->u8len == 2)))
			return proto_fail(p, s, i, PE_UTF8, 0, 0);
		p->lx = LX_STR;
		return i + 1;
	case LX_STR_ESC:
		proto_esc_add(p, c);
		switch (c) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			p->lx = LX_STR;
			return i + 1;
		case 'u':
			p->lx = LX_STR_HEX;
			p->hexn = 0;
			p->hexcp = 0;
			return i + 1;
		default:
			return proto_fail(
			    p, s, i, c < 0x20 ? PE_STRAY : PE_ESCAPE, 0, 0);
		}
	case LX_STR_HEX:
	case LX_STR_LOWHEX:
		if ((h = proto_hexval(c)) < 0) {
			if (c < 0x20)
				return proto_fail(p, s, i, PE_STRAY, 0, 0);
			/* a pair's second half: qemu quotes the first */
			if (p->lx == LX_STR_LOWHEX)
				return proto_fail(p, s, i, PE_UNICODE, 0, 6);
			/* yajl must not see the bad digit; a duplicate
			 * key before it is the first error */
			if (p->mode == PM_NORMAL)
				(void)proto_flush(p, s, i);
			if (p->mode != PM_NORMAL || p->yfailed)
				return proto_fail(p, s, i, PE_UNICODE, 0, 0);
			p->mode = PM_BADTOK;
			p->lx = LX_STR_BADHEX;
			p->badesc = 0;
			return proto_str_special(p, s, i);
		}
		proto_esc_add(p, c);
		p->hexcp = (p->hexcp << 4) | (uint32_t)h;
		if (++p->hexn < 4)
			return i + 1;
		cp = p->hexcp;
		if (p->lx == LX_STR_HEX) {
			if (cp >= 0xd800 && cp <= 0xdbff) {
				p->hi = cp;
				p->lx = LX_STR_LOW1;
				return i + 1;
			}
			if (!proto_cp_valid(cp))
				return proto_fail(p, s, i, PE_UNICODE, 0, 6);
			if (cp == 0)
				p->sawnul = 1;
			p->lx = LX_STR;
			return i + 1;
		}
		if (cp < 0xdc00 || cp > 0xdfff)
			return proto_fail(p, s, i, PE_UNICODE, 0, 6);
		cp = 0x10000 + ((p->hi & 0x3ff) << 10) + (cp & 0x3ff);
		p->hi = 0;
		if (!proto_cp_valid(cp))
			return proto_fail(p, s, i, PE_UNICODE, 0, 12);
		p->lx = LX_STR;
		return i + 1;
	case LX_STR_BADHEX:
		/*
		 * qemu quotes the 4 bytes after \u as written, or fewer when
		 * the string ends first (an unescaped '"'); a control byte is
		 * its lexer's error, found before.
		 */
		if (c < 0x20)
			return proto_fail(p, s, i, PE_STRAY, 0, 0);
		proto_esc_add(p, c);
		if (++p->hexn == 4 || (c == '"' && !p->badesc))
			return proto_fail(p, s, i, PE_UNICODE, 0, p->esclen);
		p->badesc = !p->badesc && c == '\\';
		return i + 1;
	case LX_STR_LOW1:
	case LX_STR_LOW2:
		if (c < 0x20)
			return proto_fail(p, s, i, PE_STRAY, 0, 0);
		if (c != (p->lx == LX_STR_LOW1 ? '\\' : 'u'))
			return proto_fail(p, s, i, PE_UNICODE, 0, 6);
		proto_esc_add(p, c);
		if (p->lx == LX_STR_LOW1) {
			p->lx = LX_STR_LOW2;
		} else {
			p->lx = LX_STR_LOWHEX;
			p->hexn = 0;
			p->hexcp = 0;
		}
		return i + 1;
	default:
		p->nbug++;
		return proto_fail(p, s, i, PE_STRAY, 0, 0);
	}
}

static int
proto_isdigit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Byte i inside a number, qemu's number states: a byte that cannot
 * continue it ends it in the accepting states (the byte is then a token of
 * its own) and is a stray in the others.
 */
static size_t
proto_num_byte(struct proto *p, const unsigned char *s, size_t i)
{
	unsigned char c = s[i];
	int d = proto_isdigit(c), e = c == 'e' || c == 'E';

	switch (p->lx) {
	case LX_NUM_MINUS:
		if (!d)
			break;
		p->lx = c == '0' ? LX_NUM_ZERO : LX_NUM_INT;
		return i + 1;
	case LX_NUM_ZERO:
	case LX_NUM_INT:
		if (d && p->lx == LX_NUM_ZERO)
			break;
		if (d)
			return i + 1;
		if (c == '.') {
			p->lx = LX_NUM_DOT;
			return i + 1;
		}
		if (e) {
			p->lx = LX_NUM_E;
			return i + 1;
		}
		goto end;
	case LX_NUM_DOT:
		if (!d)
			break;
		p->lx = LX_NUM_FRAC;
		return i + 1;
	case LX_NUM_FRAC:
		if (d)
			return i + 1;
		if (e) {
			p->lx = LX_NUM_E;
			return i + 1;
		}
		goto end;
	case LX_NUM_E:
	case LX_NUM_ESIGN:
		if (p->lx == LX_NUM_E && (c == '+' || c == '-')) {
			p->lx = LX_NUM_ESIGN;
			return i + 1;
		}
		if (!d)
			break;
		p->lx = LX_NUM_EXP;
		return i + 1;
	case LX_NUM_EXP:
		if (d)
			return i + 1;
		goto end;
	default:
		p->nbug++;
		break;
	}
	return proto_fail(p, s, i, PE_STRAY, 0, 0);
end:
	p->lx = LX_NONE;
	proto_value_end(p, s, i, 1);
	return i;
}

static size_t
proto_kw_byte(struct proto *p, const unsigned char *s, size_t i)
{
	unsigned char c = s[i];

	if (c >= 'a' && c <= 'z') {
		if (p->mode == PM_BADTOK)
			return i + 1;
		if (p->kw[p->kwpos] != (char)c)
			return proto_badkw(p, s, i);
		p->kwpos++;
		return i + 1;
	}
	/* the keyword ends before byte i */
	if (p->mode == PM_BADTOK || p->kw[p->kwpos] != '\0') {
		/* the letters so far are the token, byte i is not */
		return proto_fail(p, s, i, PE_KEYWORD, 0, 0);
	}
	p->lx = LX_NONE;
	proto_value_end(p, s, i, 0);
	return i;
}

/* PM_NORMAL, PM_DOOMED, PM_BADTOK: lex and check from byte i on. */
static size_t
proto_scan(struct proto *p, const unsigned char *s, size_t n, size_t i)
{
	size_t lim = proto_limit_at(p), end;
	unsigned char c;

	while (i < n && !p->stop) {
		if (p->mode >= PM_SKIP_LINE)
			return i;
		if (i >= lim) {
			i = proto_fail(p, s, i, PE_SIZE, 0, 0);
			lim = SIZE_MAX;
			continue;
		}
		c = s[i];
		if (c >= 0xfe) {
			proto_drop(p);
			return i + 1;
		}
		switch (p->lx) {
		case LX_NONE:
			i = proto_token(p, s, i);
			lim = proto_limit_at(p);
			break;
		case LX_STR:
			end = lim < n ? lim : n;
			while (i < end && proto_plain[s[i]])
				i++;
			if (i < end && s[i] < 0xfe) {
				i = proto_str_byte(p, s, i);
				lim = proto_limit_at(p);
			}
			break;
		case LX_STR_ESC:
		case LX_STR_HEX:
		case LX_STR_LOW1:
		case LX_STR_LOW2:
		case LX_STR_LOWHEX:
		case LX_STR_BADHEX:
		case LX_STR_UTF8:
			i = proto_str_special(p, s, i);
			break;
		case LX_KW:
			i = proto_kw_byte(p, s, i);
			lim = proto_limit_at(p);
			break;
		default:
			i = proto_num_byte(p, s, i);
			lim = proto_limit_at(p);
			break;
		}
	}
	return i;
}

static size_t
proto_skip_line(struct proto *p, const unsigned char *s, size_t n, size_t i)
{
	unsigned char c;

	while (i < n) {
		c = s[i++];
		if (c == '\n') {
			p->mode = PM_NORMAL;
			p->line_blank = 1;
			break;
		}
		if (c >= 0xfe) {
			proto_drop(p);
			break;
		}
	}
	return i;
}

static size_t
proto_skip_deep(struct proto *p, const unsigned char *s, size_t n, size_t i)
{
	unsigned char c;

	for (; i < n; i++) {
		c = s[i];
		if (c >= 0xfe) {
			proto_drop(p);
			return i + 1;
		}
		if (p->deepstr) {
			if (p->deepesc)
				p->deepesc = 0;
			else if (c == '\\')
				p->deepesc = 1;
			else if (c == '"')
				p->deepstr = 0;
			else if (c < 0x20) {
				/* a broken string: give up on the structure */
				p->mode = PM_SKIP_LINE;
				return i;
			}
		} else if (c == '"')
			p->deepstr = 1;
		else if (c == '{' || c == '[')
			p->deep++;
		else if ((c == '}' || c == ']') && --p->deep == 0) {
			p->mode = PM_NORMAL;
			p->line_blank = 0;
			return i + 1;
		}
	}
	return i;
}

/* The feed ends: keep what the next one needs, give yajl what it can have. */
static void
proto_feed_end(struct proto *p, const unsigned char *s, size_t n)
{
	size_t j;

	if (p->lx != LX_NONE) {
		for (j = p->tokstart; j < n && p->toklen < PROTO_TOKMAX; j++)
			p->tok[p->toklen++] = (char)s[j];
		p->tokstart = 0;
	}
	/*
	 * A duplicate key yajl finds now is not said now: it waits (yfailed)
	 * for the scanner's next decision point (the message's end, an error,
	 * the size limit), where a single feed would have found it too. A
	 * 0xFF before that drops the message silently, as it always does.
	 */
	if (p->mode == PM_NORMAL && p->inmsg)
		(void)proto_flush(p, s, n);
}

struct proto *
proto_new(const struct proto_limits *lim, proto_msg_fn *fn, void *arg)
{
	struct proto *p;
	int c;

	if (proto_plain['a'] == 0) {
		for (c = 0x20; c < 0x80; c++)
			proto_plain[c] = c != '"' && c != '\\';
	}
	p = xcalloc(1, sizeof *p);
	p->lim.max_size = PROTO_MAX_SIZE;
	p->lim.max_depth = PROTO_MAX_DEPTH;
	if (lim != NULL && lim->max_size > 0)
		p->lim.max_size = lim->max_size;
	if (lim != NULL && lim->max_depth > 0)
		p->lim.max_depth = lim->max_depth;
	p->fn = fn;
	p->arg = arg;
	p->cont = xcalloc(p->lim.max_depth + 1, sizeof *p->cont);
	p->fr = xcalloc(p->lim.max_depth + 2, sizeof *p->fr);
	p->line_blank = 1;
	return p;
}

static void
proto_destroy(struct proto *p)
{
	proto_drop_build(p);
	if (p->yh != NULL)
		yajl_free(p->yh);
	free(p->ready);
	free(p->fr);
	free(p->cont);
	free(p);
}

void
proto_free(struct proto *p)
{
	if (p == NULL)
		return;
	if (p->infeed) {
		/* from the callback: proto_feed() frees it on its way out */
		p->dead = p->stop = 1;
		p->held = 0;
		return;
	}
	proto_destroy(p);
}

void
proto_reset(struct proto *p)
{
	if (p == NULL)
		return;
	proto_drop(p);
	p->mode = PM_NORMAL;
	/* from the callback: the rest of this feed belongs to the old peer */
	if (p->infeed) {
		p->stop = 1;
		p->held = 0;
	}
}

/*
 * Called from the callback: this feed ends right after the message (or
 * error) being delivered, and proto_feed() says how far it got. Cutting a
 * feed there leaves the parser exactly as a feed of just those bytes
 * would, so the rest can come back in a later feed.
 */
void
proto_hold(struct proto *p)
{
	if (p != NULL && p->infeed && !p->stop)
		p->held = p->stop = 1;
}

/*
 * Not reentrant: a feed from inside the callback takes nothing (the
 * callback may reset or free the parser, which ends the current feed).
 */
size_t
proto_feed(struct proto *p, const void *data, size_t n)
{
	const unsigned char *s = data;
	size_t i = 0;

	if (p == NULL || n == 0)
		return n;
	if (p->infeed)
		return 0;
	p->infeed = 1;
	p->stop = p->held = 0;
	p->span = 0;
	p->tokstart = 0;
	while (i < n && !p->stop) {
		switch (p->mode) {
		case PM_SKIP_LINE:
			i = proto_skip_line(p, s, n, i);
			break;
		case PM_SKIP_DEEP:
			i = proto_skip_deep(p, s, n, i);
			break;
		default:
			i = proto_scan(p, s, n, i);
			break;
		}
	}
	/* Reset or freed: the rest belonged to the old peer, taken as read. */
	if (!p->held)
		i = n;
	if (!p->stop || p->held)
		proto_feed_end(p, s, i);
	p->pos += i;
	p->infeed = 0;
	if (p->dead)
		proto_destroy(p);
	return i;
}
