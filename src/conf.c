/* SPDX-License-Identifier: ISC */
/*
 * The configuration file. One const key table drives the inih handler, the
 * built-in defaults (parsed from their text by the same code) and
 * conf_print(); every error is printed as "FILE:LINE: reason".
 */

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <ini.h>

#include "agent.h"

enum conf_type {
	CONF_PATH,     /* an absolute path */
	CONF_METHOD,   /* a channel method name */
	CONF_CHANPATH, /* empty: the method's; checked after the file */
	CONF_DURATION, /* seconds within [min, max] */
	CONF_FACILITY, /* a syslog facility name */
	CONF_LEVEL,    /* a syslog level name */
	/* repeatable from here on: each line appends, empty clears */
	CONF_DIRS,    /* absolute paths */
	CONF_GLOBS,   /* fnmatch patterns of mount points */
	CONF_FSTYPES, /* filesystem type names */
};
#define CONF_IS_LIST(t) ((t) >= CONF_DIRS)

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	double min;
	double max;
	const char *def; /* the default as written in the file */
	size_t offset;
};

#define CONF_OFF(m) offsetof(struct conf, m)

/*
 * The order is the file's: conf_print() writes sections as they come, and
 * conf/fsfreeze-agent.conf documents every key in it (t0020 checks).
 */
/* clang-format off */
static const struct conf_key conf_keys[] = {
	{ "agent", "state_dir", CONF_PATH, 0, 0,
	    RUNSTATEDIR "/" AGENT_NAME, CONF_OFF(state_dir) },
	{ "channel", "method", CONF_METHOD, 0, 0,
	    "virtio-serial", CONF_OFF(method) },
	{ "channel", "path", CONF_CHANPATH, 0, 0,
	    NULL, CONF_OFF(path) },
	{ "hooks", "dir", CONF_DIRS, 0, 0,
	    SYSCONFDIR "/" AGENT_NAME "/hooks.d", CONF_OFF(hook_dirs) },
	{ "hooks", "timeout", CONF_DURATION, 1, 3600,
	    "60s", CONF_OFF(hook_timeout) },
	{ "hooks", "kill_grace", CONF_DURATION, 0, 60,
	    "5s", CONF_OFF(hook_kill_grace) },
	{ "freeze", "include", CONF_GLOBS, 0, 0,
	    NULL, CONF_OFF(include) },
	{ "freeze", "exclude", CONF_GLOBS, 0, 0,
	    NULL, CONF_OFF(exclude) },
	{ "freeze", "exclude_type", CONF_FSTYPES, 0, 0,
	    NULL, CONF_OFF(exclude_type) },
	{ "freeze", "max_frozen", CONF_DURATION, 0, 3600,
	    "90s", CONF_OFF(max_frozen) },
	{ "log", "facility", CONF_FACILITY, 0, 0,
	    "daemon", CONF_OFF(facility) },
	{ "log", "level", CONF_LEVEL, 0, 0,
	    "info", CONF_OFF(level) },
};
/* clang-format on */
#define CONF_NKEYS nitems(conf_keys)

struct conf_name {
	const char *name;
	int value;
};

/* Not kern (userspace cannot log as it) nor mark (syslogd's own). */
static const struct conf_name conf_facilities[] = {
	{ "auth", LOG_AUTH },
	{ "authpriv", LOG_AUTHPRIV },
	{ "cron", LOG_CRON },
	{ "daemon", LOG_DAEMON },
	{ "ftp", LOG_FTP },
	{ "local0", LOG_LOCAL0 },
	{ "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 },
	{ "local7", LOG_LOCAL7 },
	{ "lpr", LOG_LPR },
	{ "mail", LOG_MAIL },
	{ "news", LOG_NEWS },
	{ "syslog", LOG_SYSLOG },
	{ "user", LOG_USER },
	{ "uucp", LOG_UUCP },
};

/* A threshold: below err there is nothing we would still want to hide. */
static const struct conf_name conf_levels[] = {
	{ "err", LOG_ERR },
	{ "warning", LOG_WARNING },
	{ "notice", LOG_NOTICE },
	{ "info", LOG_INFO },
	{ "debug", LOG_DEBUG },
};

static const char *const conf_method_names[CHANNEL_METHOD_MAX] = {
	[CHANNEL_VIRTIO_SERIAL] = "virtio-serial",
	[CHANNEL_ISA_SERIAL] = "isa-serial",
	[CHANNEL_UNIX_LISTEN] = "unix-listen",
	[CHANNEL_VSOCK_LISTEN] = "vsock-listen",
};

/*
 * qemu-ga's defaults for the two serial methods; it has none for the
 * sockets ("must specify a path for this channel"). For vsock-listen its
 * man page says only "<cid>:<port>": 4294967295 is VMADDR_CID_ANY (qemu-ga
 * rejects "-1"), 1234 an arbitrary port, as no standard one exists.
 */
static const char *const conf_method_paths[CHANNEL_METHOD_MAX] = {
	[CHANNEL_VIRTIO_SERIAL] = "/dev/virtio-ports/org.qemu.guest_agent.0",
	[CHANNEL_ISA_SERIAL] = "/dev/ttyS0",
	[CHANNEL_UNIX_LISTEN] = RUNSTATEDIR "/" AGENT_NAME ".sock",
	[CHANNEL_VSOCK_LISTEN] = "4294967295:1234",
};

/* Past this many errors in one file, only the count is printed. */
#define CONF_MAX_ERRORS 20

struct conf_parse {
	const char *file;
	FILE *f;
	char *buf; /* getline()'s */
	size_t bufsz;
	int lineno;	     /* of the line inih is working on */
	int read_err;	     /* errno of a failed read */
	int line_max;	     /* the longest line inih takes, in bytes */
	const char *section; /* conf_keys[]'s spelling, or NULL */
	int bad_section;     /* reported: its keys are skipped silently */
	unsigned int nerr;
	int first[CONF_NKEYS]; /* line a key was first seen on, or 0 */
	int bad[CONF_NKEYS];   /* its value was rejected */
	struct conf *c;
};

static void conf_err(struct conf_parse *, int, const char *, ...)
    PRINTFLIKE(3, 4);
static int conf_why(char **, const char *, ...) PRINTFLIKE(2, 3);

const char *
conf_method_name(enum channel_method m)
{
	if ((unsigned int)m >= CHANNEL_METHOD_MAX)
		return "unknown";
	return conf_method_names[m];
}

int
conf_method_parse(const char *s, enum channel_method *m)
{
	unsigned int i;

	for (i = 0; i < CHANNEL_METHOD_MAX; i++) {
		if (strcmp(s, conf_method_names[i]) == 0) {
			*m = (enum channel_method)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
conf_default_path(enum channel_method m)
{
	if ((unsigned int)m >= CHANNEL_METHOD_MAX)
		return NULL;
	return conf_method_paths[m];
}

void
strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 2, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
	l->v[l->n] = NULL;
}

void
strlist_clear(struct strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int
strlist_has(const struct strlist *l, const char *s)
{
	size_t i;

	for (i = 0; l != NULL && i < l->n; i++) {
		if (strcmp(l->v[i], s) == 0)
			return 1;
	}
	return 0;
}

/* Decimal digits up to a stop character, at most UINT32_MAX. */
static const char *
conf_parse_u32(const char *s, uint32_t *v)
{
	uint64_t n = 0;
	const char *p;

	for (p = s; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return NULL;
	}
	if (p == s)
		return NULL;
	*v = (uint32_t)n;
	return p;
}

int
conf_parse_vsock(const char *s, uint32_t *cid, uint32_t *port)
{
	const char *p;
	uint32_t c, n;

	if (strncmp(s, "-1:", 3) == 0) {
		c = UINT32_MAX;
		p = s + 2;
	} else if ((p = conf_parse_u32(s, &c)) == NULL)
		return -EINVAL;
	if (*p != ':' || (p = conf_parse_u32(p + 1, &n)) == NULL || *p != '\0')
		return -EINVAL;
	*cid = c;
	*port = n;
	return 0;
}

/*
 * Digits, an optional fraction and a unit right after them. Not strtod():
 * it takes locales, hex, exponents, "inf" and leading blanks.
 */
int
conf_parse_duration(const char *s, double *out)
{
	uint64_t ip = 0, fp = 0, scale = 1;
	const char *p = s;
	double d;
	int n;

	for (n = 0; *p >= '0' && *p <= '9'; p++) {
		if (++n > 10)
			return -EINVAL;
		ip = ip * 10 + (uint64_t)(*p - '0');
	}
	if (n == 0)
		return -EINVAL;
	if (*p == '.') {
		for (n = 0, p++; *p >= '0' && *p <= '9'; p++) {
			if (++n > 9)
				return -EINVAL;
			fp = fp * 10 + (uint64_t)(*p - '0');
			scale *= 10;
		}
		if (n == 0)
			return -EINVAL;
	}
	d = (double)ip + (double)fp / (double)scale;
	if (*p == '\0' || strcmp(p, "s") == 0)
		;
	else if (strcmp(p, "ms") == 0)
		d /= 1000;
	else if (strcmp(p, "m") == 0)
		d *= 60;
	else if (strcmp(p, "h") == 0)
		d *= 3600;
	else
		return -EINVAL;
	*out = d;
	return 0;
}

/* The shortest of "1h", "2m", "30s", "500ms" that says d, or "%.9fs". */
static const char *
conf_fmt_duration(double d, char *buf, size_t len)
{
	long long ms = (long long)(d * 1000 + 0.5);
	size_t n;

	if (d < 0 || d > 1e9 || (double)ms / 1000 != d) {
		(void)snprintf(buf, len, "%.9f", d);
		n = strlen(buf);
		while (n > 1 && buf[n - 1] == '0' && buf[n - 2] != '.')
			buf[--n] = '\0';
		(void)snprintf(buf + n, len - n, "s");
	} else if (ms == 0)
		(void)snprintf(buf, len, "0");
	else if (ms % 3600000 == 0)
		(void)snprintf(buf, len, "%lldh", ms / 3600000);
	else if (ms % 60000 == 0)
		(void)snprintf(buf, len, "%lldm", ms / 60000);
	else if (ms % 1000 == 0)
		(void)snprintf(buf, len, "%llds", ms / 1000);
	else
		(void)snprintf(buf, len, "%lldms", ms);
	return buf;
}

static int
conf_name_find(const struct conf_name *t, size_t n, const char *s, int *v)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(t[i].name, s) == 0) {
			*v = t[i].value;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *
conf_name_of(const struct conf_name *t, size_t n, int v)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (t[i].value == v)
			return t[i].name;
	}
	return "unknown";
}

static int
conf_why(char **why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)xvasprintf(why, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A filesystem type as the kernel names them: "ext4", "fuse.sshfs". */
static int
conf_fstype_ok(const char *s)
{
	const char *p;

	for (p = s; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("._+-", *p) == NULL)
			return 0;
	}
	return 1;
}

/* Apply one value to c; on error *why says what is wrong with it. */
static int
conf_set(struct conf *c, const struct conf_key *k, const char *v, char **why)
{
	void *p = (char *)c + k->offset;
	char **sp = p;
	struct strlist *l = p;
	char b1[32], b2[32];
	double d;

	switch (k->type) {
	case CONF_PATH:
		if (*v == '\0')
			return conf_why(why, "needs a value");
		if (*v != '/')
			return conf_why(why, "'%s' is not an absolute path", v);
		free(*sp);
		*sp = xstrdup(v);
		return 0;
	case CONF_CHANPATH:
		free(*sp);
		*sp = *v == '\0' ? NULL : xstrdup(v);
		return 0;
	case CONF_METHOD:
		if (conf_method_parse(v, p) < 0)
			return conf_why(why,
			    "unknown method '%s' (virtio-serial, isa-serial, "
			    "unix-listen or vsock-listen)",
			    v);
		return 0;
	case CONF_DURATION:
		if (conf_parse_duration(v, &d) < 0)
			return conf_why(why,
			    "bad duration '%s' (like 500ms, 30s, 2m or 1h, "
			    "no space before the unit)",
			    v);
		if (d < k->min || d > k->max)
			return conf_why(why, "%s is out of range (%s..%s)", v,
			    conf_fmt_duration(k->min, b1, sizeof(b1)),
			    conf_fmt_duration(k->max, b2, sizeof(b2)));
		*(double *)p = d;
		return 0;
	case CONF_FACILITY:
		if (conf_name_find(
			conf_facilities, nitems(conf_facilities), v, p) < 0)
			return conf_why(why,
			    "unknown facility '%s' (daemon, user, local0 to "
			    "local7, auth, authpriv, cron, ftp, lpr, mail, "
			    "news, "
			    "syslog or uucp)",
			    v);
		return 0;
	case CONF_LEVEL:
		if (conf_name_find(conf_levels, nitems(conf_levels), v, p) < 0)
			return conf_why(why,
			    "unknown level '%s' (err, warning, notice, info or "
			    "debug)",
			    v);
		return 0;
	case CONF_DIRS:
	case CONF_GLOBS:
	case CONF_FSTYPES:
		break;
	}

	if (*v == '\0') {
		strlist_clear(l);
		return 0;
	}
	if (k->type == CONF_DIRS && *v != '/')
		return conf_why(why, "'%s' is not an absolute path", v);
	if (k->type == CONF_GLOBS && *v != '/')
		return conf_why(why,
		    "'%s' does not start with '/' (patterns match whole mount "
		    "points)",
		    v);
	if (k->type == CONF_FSTYPES && !conf_fstype_ok(v)) {
		if (strpbrk(v, ", \t") != NULL)
			return conf_why(why,
			    "'%s' is not one filesystem type (give one per "
			    "line)",
			    v);
		return conf_why(why, "'%s' is not a filesystem type", v);
	}
	if (strlist_has(l, v))
		return conf_why(why, "'%s' is already listed", v);
	strlist_add(l, v);
	return 0;
}

static const struct conf_key *
conf_key_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < CONF_NKEYS; i++) {
		if ((section == NULL ||
			strcmp(conf_keys[i].section, section) == 0) &&
		    strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	}
	return NULL;
}

static const char *
conf_section_find(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < CONF_NKEYS; i++) {
		if (strlen(conf_keys[i].section) == len &&
		    memcmp(conf_keys[i].section, s, len) == 0)
			return conf_keys[i].section;
	}
	return NULL;
}

struct conf *
conf_new(void)
{
	struct conf *c;
	char *why = NULL;
	size_t i;

	c = xcalloc(1, sizeof(*c));
	for (i = 0; i < CONF_NKEYS; i++) {
		if (conf_keys[i].def == NULL)
			continue;
		if (conf_set(c, &conf_keys[i], conf_keys[i].def, &why) < 0)
			fatalx("%s: default of '%s': %s", __func__,
			    conf_keys[i].name, why);
	}
	return c;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->file);
	free(c->state_dir);
	free(c->path);
	strlist_clear(&c->hook_dirs);
	strlist_clear(&c->include);
	strlist_clear(&c->exclude);
	strlist_clear(&c->exclude_type);
	free(c);
}

void
conf_print(const struct conf *c, struct buf *b)
{
	const struct conf_key *k;
	const char *section = NULL, *s;
	const struct strlist *l;
	const void *p;
	char tmp[32];
	size_t i, j;

	for (i = 0; i < CONF_NKEYS; i++) {
		k = &conf_keys[i];
		p = (const char *)c + k->offset;
		if (section == NULL || strcmp(section, k->section) != 0) {
			(void)buf_addf(b, "%s[%s]\n",
			    section == NULL ? "" : "\n", k->section);
			section = k->section;
		}
		s = NULL;
		switch (k->type) {
		case CONF_PATH:
		case CONF_CHANPATH:
			s = *(char *const *)p;
			break;
		case CONF_METHOD:
			s = conf_method_name(*(const enum channel_method *)p);
			break;
		case CONF_DURATION:
			s = conf_fmt_duration(
			    *(const double *)p, tmp, sizeof(tmp));
			break;
		case CONF_FACILITY:
			s = conf_name_of(conf_facilities,
			    nitems(conf_facilities), *(const int *)p);
			break;
		case CONF_LEVEL:
			s = conf_name_of(
			    conf_levels, nitems(conf_levels), *(const int *)p);
			break;
		case CONF_DIRS:
		case CONF_GLOBS:
		case CONF_FSTYPES:
			l = p;
			for (j = 0; j < l->n; j++)
				(void)buf_addf(
				    b, "%s = %s\n", k->name, l->v[j]);
			if (l->n > 0)
				continue;
			break;
		}
		if (s == NULL || *s == '\0')
			(void)buf_addf(b, "%s =\n", k->name);
		else
			(void)buf_addf(b, "%s = %s\n", k->name, s);
	}
}

static void
conf_err(struct conf_parse *p, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (++p->nerr > CONF_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	(void)xvasprintf(&msg, fmt, ap);
	va_end(ap);
	log_errx("%s:%d: %s", p->file, line, msg);
	free(msg);
}

static const char *
conf_lskip(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/*
 * inih's find_chars_or_comment(): the first of chars, or a ';' after
 * whitespace (an inline comment), or the end.
 */
static const char *
conf_find(const char *s, const char *chars)
{
	int was_space = 0;

	for (; *s != '\0'; s++) {
		if (strchr(chars, *s) != NULL || (was_space && *s == ';'))
			break;
		was_space = isspace((unsigned char)*s);
	}
	return s;
}

/*
 * Judge a line, its leading blanks gone, before inih sees it: inih
 * reports only the first line it cannot parse, and only as a number. A
 * section line also sets the section: unknown ones are reported here, at
 * their own line, even with no key in them. -1: hide the line from inih.
 */
static int
conf_classify(struct conf_parse *p, const char *s, int indented)
{
	const char *e, *name;
	size_t len;

	if (*s == '\0' || *s == ';' || *s == '#')
		return 0;
	if (*s == '[') {
		e = conf_find(s + 1, "]");
		if (*e != ']') {
			conf_err(p, p->lineno, "syntax error: missing ']'");
			p->bad_section = 1;
			return -1;
		}
		name = conf_lskip(s + 1);
		for (len = (size_t)(e - name);
		     len > 0 && isspace((unsigned char)name[len - 1]); len--)
			;
		s = conf_lskip(e + 1);
		if (*s != '\0' && *s != ';') {
			conf_err(p, p->lineno, "syntax error: text after ']'");
			p->bad_section = 1;
			return -1;
		}
		if ((p->section = conf_section_find(name, len)) == NULL) {
			conf_err(p, p->lineno, "unknown section [%.*s]",
			    (int)len, name);
			p->bad_section = 1;
		} else
			p->bad_section = 0;
		return 0;
	}
	e = conf_find(s, "=:");
	if (*e == '=')
		return 0;
	if (*e == ':')
		conf_err(p, p->lineno,
		    "syntax error: expected 'key = value', not 'key: value'");
	else if (indented)
		conf_err(p, p->lineno,
		    "syntax error: expected 'key = value' (an indented line "
		    "does not continue a value)");
	else
		conf_err(p, p->lineno,
		    "syntax error: expected 'key = value' or '[section]'");
	return -1;
}

/*
 * inih's fgets()-style reader. Lines are read whole, so one longer than
 * inih's buffer (INI_MAX_LINE, 200 on Debian: a fixed stack buffer) is an
 * error here, where inih with fgets() would cut it and parse the rest as
 * a line of its own. Leading blanks are stripped: inih would take an
 * indented line as a continuation of the previous value (its
 * INI_ALLOW_MULTILINE, on in Debian's build), which we do not support.
 */
static char *
conf_read_line(char *str, int num, void *arg)
{
	struct conf_parse *p = arg;
	const char *s;
	ssize_t n;
	size_t len;
	int indented;

	errno = 0;
	if ((n = getline(&p->buf, &p->bufsz, p->f)) < 0) {
		if (ferror(p->f))
			p->read_err = errno != 0 ? errno : EIO;
		return NULL;
	}
	p->lineno++;
	if (n > 0 && p->buf[n - 1] == '\n')
		p->buf[--n] = '\0';
	s = p->buf;
	if (p->lineno == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3;
		n -= 3;
	}
	/* Room for the line, its '\n' and the NUL. */
	p->line_max = num - 2;
	if (memchr(s, '\0', (size_t)n) != NULL) {
		conf_err(p, p->lineno, "NUL byte in line");
		s = "";
	} else if (n > (ssize_t)p->line_max) {
		conf_err(
		    p, p->lineno, "line too long (max %d bytes)", p->line_max);
		s = "";
	} else {
		indented = isspace((unsigned char)*s);
		s = conf_lskip(s);
		if (conf_classify(p, s, indented) < 0)
			s = "";
	}
	len = strlen(s);
	if (len + 2 > (size_t)num)
		len = 0;
	memcpy(str, s, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
}

/*
 * inih's own section name is ignored: ours, from conf_classify(), also
 * allows "[ hooks ]" and knows whether the section was reported.
 */
static int
conf_handler(
    void *arg, const char *section, const char *name, const char *value)
{
	struct conf_parse *p = arg;
	const struct conf_key *k, *other;
	char *why = NULL;
	size_t i;

	(void)section;
	if (p->bad_section)
		return 1;
	if (p->section == NULL) {
		conf_err(p, p->lineno, "key '%s' before any section", name);
		return 1;
	}
	if ((k = conf_key_find(p->section, name)) == NULL) {
		if ((other = conf_key_find(NULL, name)) != NULL)
			conf_err(p, p->lineno,
			    "unknown key '%s' in section [%s] (it belongs in "
			    "[%s])",
			    name, p->section, other->section);
		else
			conf_err(p, p->lineno,
			    "unknown key '%s' in section [%s]", name,
			    p->section);
		return 1;
	}
	i = (size_t)(k - conf_keys);
	if (p->first[i] != 0 && !CONF_IS_LIST(k->type)) {
		conf_err(p, p->lineno,
		    "'%s' in section [%s] given twice (first at line %d)", name,
		    p->section, p->first[i]);
		return 1;
	}
	if (p->first[i] == 0) {
		p->first[i] = p->lineno;
		/* The file's list replaces the built-in one. */
		if (CONF_IS_LIST(k->type))
			strlist_clear((struct strlist *)(void *)((char *)p->c +
			    k->offset));
	}
	if (conf_set(p->c, k, value, &why) < 0) {
		conf_err(p, p->lineno, "'%s' in section [%s]: %s", name,
		    p->section, why);
		free(why);
		p->bad[i] = 1;
	}
	return 1;
}

/* The channel path makes sense only with the method, wherever that is. */
static void
conf_check_path(struct conf_parse *p)
{
	const struct conf_key *kp = conf_key_find("channel", "path");
	const struct conf_key *km = conf_key_find("channel", "method");
	size_t ip = (size_t)(kp - conf_keys), im = (size_t)(km - conf_keys);
	struct conf *c = p->c;
	uint32_t cid, port;

	if (c->path == NULL || p->bad[ip] || p->bad[im])
		return;
	if (c->method == CHANNEL_VSOCK_LISTEN) {
		if (conf_parse_vsock(c->path, &cid, &port) < 0)
			conf_err(p, p->first[ip],
			    "'path' in section [channel]: '%s' is not CID:PORT "
			    "(for vsock-listen)",
			    c->path);
	} else if (*c->path != '/')
		conf_err(p, p->first[ip],
		    "'path' in section [channel]: '%s' is not an absolute path",
		    c->path);
}

int
conf_load(const char *file, int required, struct conf **out)
{
	struct conf_parse p;
	int r;

	if (file == NULL)
		file = CONF_FILE;
	memset(&p, 0, sizeof(p));
	p.file = file;
	if ((p.f = fopen(file, "re")) == NULL) {
		r = -errno;
		if (r == -ENOENT && !required) {
			log_debug("%s: %s: built-in defaults", __func__, file);
			*out = conf_new();
			return 0;
		}
		log_errx("%s: %s", file, strerror(-r));
		return r;
	}
	p.c = conf_new();
	p.c->file = xstrdup(file);

	r = ini_parse_stream(conf_read_line, &p, conf_handler, &p);
	if (p.read_err != 0) {
		log_errx("%s: %s", file, strerror(p.read_err));
		r = -p.read_err;
		goto out;
	}
	if (r > 0) {
		/* A line inih rejects that conf_classify() let through. */
		conf_err(&p, r, "syntax error");
	} else if (r < 0) {
		log_errx("%s: %s", file, strerror(ENOMEM));
		r = -ENOMEM;
		goto out;
	}
	conf_check_path(&p);
	if (p.nerr > CONF_MAX_ERRORS)
		log_errx("%s: %u errors, the first %d shown", file, p.nerr,
		    CONF_MAX_ERRORS);
	r = p.nerr > 0 ? -EINVAL : 0;
out:
	(void)fclose(p.f);
	free(p.buf);
	if (r < 0) {
		conf_free(p.c);
		return r;
	}
	*out = p.c;
	return 0;
}
