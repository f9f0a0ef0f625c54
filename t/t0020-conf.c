/* SPDX-License-Identifier: ISC */
/*
 * conf.c: every key lands in struct conf, the built-in defaults, the
 * repeatable lists, each error family with its exact "FILE:LINE: reason",
 * durations, and the shipped conf/fsfreeze-agent.conf.
 */

#include "../src/conf.c"

#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include "tap.h"

static char tmpdir[4096];
static char *errfile;

static char *
tpath(const char *name)
{
	char *p;

	(void)xasprintf(&p, "%s/%s", tmpdir, name);
	return p;
}

static void
write_mem(const char *path, const char *data, size_t len)
{
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		bail("open %s: %s", path, strerror(errno));
	if (write(fd, data, len) != (ssize_t)len)
		bail("write %s: %s", path, strerror(errno));
	(void)close(fd);
}

static char *
slurp(const char *path)
{
	struct buf b;
	char tmp[4096];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		bail("open %s: %s", path, strerror(errno));
	buf_init(&b, 0);
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		(void)buf_add(&b, tmp, (size_t)n);
	(void)close(fd);
	(void)buf_addc(&b, '\0');
	return b.data;
}

/* fd 2 goes to errfile for the duration of one conf call. */
static int cap_saved = -1;

static void
cap_begin(void)
{
	int fd;

	(void)fflush(stderr);
	if ((fd = open(
		 errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		bail("open %s: %s", errfile, strerror(errno));
	if ((cap_saved = fcntl(2, F_DUPFD_CLOEXEC, 3)) < 0 || dup2(fd, 2) < 0)
		bail("redirecting stderr: %s", strerror(errno));
	(void)close(fd);
}

static char *
cap_end(void)
{
	log_flush();
	(void)fflush(stderr);
	if (dup2(cap_saved, 2) < 0)
		bail("restoring stderr: %s", strerror(errno));
	(void)close(cap_saved);
	return slurp(errfile);
}

static int
load_file(const char *path, int required, struct conf **cp, char **out)
{
	int r;

	*cp = NULL;
	cap_begin();
	r = conf_load(path, required, cp);
	*out = cap_end();
	return r;
}

/* Write text (len bytes) to x.conf and load it; path returned in *pathp. */
static int
load_mem(
    const char *text, size_t len, struct conf **cp, char **out, char **pathp)
{
	char *path = tpath("x.conf");
	int r;

	write_mem(path, text, len);
	r = load_file(path, 1, cp, out);
	if (pathp != NULL)
		*pathp = path;
	else
		free(path);
	return r;
}

static int
load_text(const char *text, struct conf **cp, char **out)
{
	return load_mem(text, strlen(text), cp, out, NULL);
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* Line i (from 0) of s, without its '\n', in a new string, or NULL. */
static char *
nth_line(const char *s, size_t i)
{
	const char *e;

	while (i-- > 0) {
		if ((s = strchr(s, '\n')) == NULL)
			return NULL;
		s++;
	}
	if (*s == '\0')
		return NULL;
	e = strchrnul(s, '\n');
	return xstrndup(s, (size_t)(e - s));
}

/* The log line ends with want: the log module may put a prefix first. */
static int
ends_with(const char *line, const char *want)
{
	size_t n = strlen(line), m = strlen(want);

	return n >= m && strcmp(line + n - m, want) == 0;
}

static int
strlist_is(const struct strlist *l, const char *const *want)
{
	size_t i;

	for (i = 0; want[i] != NULL; i++) {
		if (i >= l->n || strcmp(l->v[i], want[i]) != 0)
			return 0;
	}
	return i == l->n && (l->n == 0 || l->v[l->n] == NULL);
}

static const char *
strlist_diff(const struct strlist *a, const struct strlist *b)
{
	size_t i;

	if (a->n != b->n)
		return "count";
	for (i = 0; i < a->n; i++) {
		if (strcmp(a->v[i], b->v[i]) != 0)
			return "entry";
	}
	return NULL;
}

static int
str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The first field in which a and b differ (not file), or NULL. */
static const char *
conf_diff(const struct conf *a, const struct conf *b)
{
	if (!str_eq(a->state_dir, b->state_dir))
		return "state_dir";
	if (a->method != b->method)
		return "method";
	if (!str_eq(a->path, b->path))
		return "path";
	if (strlist_diff(&a->hook_dirs, &b->hook_dirs) != NULL)
		return "dir";
	if (a->hook_timeout != b->hook_timeout)
		return "timeout";
	if (a->hook_kill_grace != b->hook_kill_grace)
		return "kill_grace";
	if (strlist_diff(&a->include, &b->include) != NULL)
		return "include";
	if (strlist_diff(&a->exclude, &b->exclude) != NULL)
		return "exclude";
	if (strlist_diff(&a->exclude_type, &b->exclude_type) != NULL)
		return "exclude_type";
	if (a->max_frozen != b->max_frozen)
		return "max_frozen";
	if (a->facility != b->facility)
		return "facility";
	if (a->level != b->level)
		return "level";
	return NULL;
}

/*
 * Load text and expect -EINVAL with exactly the given messages, each
 * "LINE: reason" (the file name is put in front) or ": reason".
 */
static void expect_errs(const char *what, const char *text, size_t len, ...)
    __attribute__((sentinel));

static void
expect_errs(const char *what, const char *text, size_t len, ...)
{
	struct conf *c;
	char *out, *path, *want, *line;
	const char *m;
	size_t n = 0, i;
	va_list ap;
	int r;

	r = load_mem(text, len != 0 ? len : strlen(text), &c, &out, &path);
	is_int(-EINVAL, r, "%s: -EINVAL", what);
	ok(c == NULL, "%s: no conf", what);
	va_start(ap, len);
	while ((m = va_arg(ap, const char *)) != NULL) {
		(void)xasprintf(&want, "%s%s%s", path, *m == ':' ? "" : ":", m);
		line = nth_line(out, n);
		if (!ok(line != NULL && ends_with(line, want), "%s: says '%s'",
			what, m)) {
			diag("wanted: ...%s", want);
			diag("   got: %s", line != NULL ? line : "(nothing)");
		}
		free(line);
		free(want);
		n++;
	}
	va_end(ap);
	if (!is_int((long long)n, (long long)count_lines(out),
		"%s: %zu error lines", what, n)) {
		for (i = 0; (line = nth_line(out, i)) != NULL; i++) {
			diag("output: %s", line);
			free(line);
		}
	}
	conf_free(c);
	free(out);
	free(path);
}

/* Load text, expect success, no output; the conf is returned. */
static struct conf *
expect_ok(const char *what, const char *text)
{
	struct conf *c;
	char *out;
	int r;

	r = load_text(text, &c, &out);
	is_int(0, r, "%s: loads", what);
	if (!is_str("", out, "%s: says nothing", what)) {
		conf_free(c);
		c = NULL;
	}
	free(out);
	if (c == NULL)
		bail("%s: cannot go on", what);
	return c;
}

static void
test_durations(void)
{
	static const struct {
		const char *s;
		double v;
	} good[] = {
		{ "30s", 30 },
		{ "2m", 120 },
		{ "1h", 3600 },
		{ "500ms", 0.5 },
		{ "10", 10 },
		{ "1.5s", 1.5 },
		{ "0", 0 },
		{ "0s", 0 },
		{ "0.25m", 15 },
		{ "1.5ms", 0.0015 },
		{ "007s", 7 },
		{ "0.5h", 1800 },
		{ "9999999999", 9999999999.0 },
		{ "1.123456789", 1.123456789 },
	};
	static const char *const bad[] = { "", "-1", "+1", "10 s", " 10", "10 ",
		"1.", ".5", "1.5.5", "1e3", "0x10", "s", "ms", "10x", "10S",
		"10sec", "10min", "inf", "nan", "1h30m", "1m30", "12345678901",
		"0.1234567891", "10ss", "5 ", "1,5s", "--1" };
	size_t i;
	double d;
	int r;

	for (i = 0; i < nitems(good); i++) {
		d = -1;
		r = conf_parse_duration(good[i].s, &d);
		ok(r == 0 && d == good[i].v, "duration '%s' is %.10g s",
		    good[i].s, good[i].v);
		if (r != 0 || d != good[i].v)
			diag("r %d, got %.17g", r, d);
	}
	for (i = 0; i < nitems(bad); i++) {
		d = -7;
		r = conf_parse_duration(bad[i], &d);
		ok(r == -EINVAL && d == -7, "duration '%s' is rejected",
		    bad[i]);
	}
}

static void
test_fmt_duration(void)
{
	static const struct {
		double v;
		const char *s;
	} t[] = {
		{ 0, "0" },
		{ 0.5, "500ms" },
		{ 1, "1s" },
		{ 5, "5s" },
		{ 60, "1m" },
		{ 90, "90s" },
		{ 120, "2m" },
		{ 3600, "1h" },
		{ 5400, "90m" },
		{ 1.0005, "1.0005s" },
	};
	char b[32];
	size_t i;

	for (i = 0; i < nitems(t); i++)
		is_str(t[i].s, conf_fmt_duration(t[i].v, b, sizeof(b)),
		    "%g s prints as %s", t[i].v, t[i].s);
}

static void
test_methods(void)
{
	static const char *const names[] = { "virtio-serial", "isa-serial",
		"unix-listen", "vsock-listen" };
	enum channel_method m;
	uint32_t cid, port;
	unsigned int i;

	for (i = 0; i < CHANNEL_METHOD_MAX; i++) {
		m = CHANNEL_METHOD_MAX;
		is_str(names[i], conf_method_name((enum channel_method)i),
		    "method %u is named %s", i, names[i]);
		ok(conf_method_parse(names[i], &m) == 0 && (unsigned int)m == i,
		    "'%s' parses", names[i]);
	}
	is_str("unknown", conf_method_name(CHANNEL_METHOD_MAX),
	    "an out-of-range method is 'unknown'");
	is_int(
	    -EINVAL, conf_method_parse("virtio", &m), "'virtio' is no method");
	is_int(-EINVAL, conf_method_parse("Unix-listen", &m),
	    "method names are case-sensitive");
	is_str("/dev/virtio-ports/org.qemu.guest_agent.0",
	    conf_default_path(CHANNEL_VIRTIO_SERIAL), "virtio-serial path");
	is_str("/dev/ttyS0", conf_default_path(CHANNEL_ISA_SERIAL),
	    "isa-serial path");
	is_str(RUNSTATEDIR "/fsfreeze-agent.sock",
	    conf_default_path(CHANNEL_UNIX_LISTEN), "unix-listen path");
	is_str("4294967295:1234", conf_default_path(CHANNEL_VSOCK_LISTEN),
	    "vsock-listen path");
	ok(conf_default_path(CHANNEL_METHOD_MAX) == NULL,
	    "no path for an out-of-range method");
	ok(conf_parse_vsock(
	       conf_default_path(CHANNEL_VSOCK_LISTEN), &cid, &port) == 0 &&
		cid == 4294967295U && port == 1234,
	    "the vsock default parses as VMADDR_CID_ANY:1234");

	ok(conf_parse_vsock("3:1234", &cid, &port) == 0 && cid == 3 &&
		port == 1234,
	    "vsock 3:1234");
	ok(conf_parse_vsock("-1:5", &cid, &port) == 0 && cid == UINT32_MAX &&
		port == 5,
	    "vsock -1:5 is VMADDR_CID_ANY");
	ok(conf_parse_vsock("0:4294967295", &cid, &port) == 0 && cid == 0 &&
		port == UINT32_MAX,
	    "vsock ports up to 2^32-1");
	cid = port = 77;
	ok(conf_parse_vsock("3", &cid, &port) == -EINVAL &&
		conf_parse_vsock("3:", &cid, &port) == -EINVAL &&
		conf_parse_vsock(":3", &cid, &port) == -EINVAL &&
		conf_parse_vsock("3:4:5", &cid, &port) == -EINVAL &&
		conf_parse_vsock("x:1", &cid, &port) == -EINVAL &&
		conf_parse_vsock("-2:1", &cid, &port) == -EINVAL &&
		conf_parse_vsock("3:-1", &cid, &port) == -EINVAL &&
		conf_parse_vsock("4294967296:1", &cid, &port) == -EINVAL &&
		conf_parse_vsock(" 3:1", &cid, &port) == -EINVAL &&
		conf_parse_vsock("3:1 ", &cid, &port) == -EINVAL &&
		conf_parse_vsock("", &cid, &port) == -EINVAL && cid == 77 &&
		port == 77,
	    "bad vsock addresses are rejected and set nothing");
}

static void
check_defaults(const char *what, const struct conf *c)
{
	static const char *const dirs[] = {
		SYSCONFDIR "/fsfreeze-agent/hooks.d", NULL
	};
	static const char *const none[] = { NULL };

	is_str(
	    RUNSTATEDIR "/fsfreeze-agent", c->state_dir, "%s: state_dir", what);
	is_int(CHANNEL_VIRTIO_SERIAL, c->method, "%s: method", what);
	ok(c->path == NULL, "%s: path is the method's", what);
	ok(strlist_is(&c->hook_dirs, dirs), "%s: dir", what);
	ok(c->hook_timeout == 60, "%s: timeout 60 s", what);
	ok(c->hook_kill_grace == 5, "%s: kill_grace 5 s", what);
	ok(strlist_is(&c->include, none), "%s: no include", what);
	ok(strlist_is(&c->exclude, none), "%s: no exclude", what);
	ok(strlist_is(&c->exclude_type, none), "%s: no exclude_type", what);
	ok(c->max_frozen == 90, "%s: max_frozen 90 s", what);
	is_int(LOG_DAEMON, c->facility, "%s: facility daemon", what);
	is_int(LOG_INFO, c->level, "%s: level info", what);
}

static void
test_defaults(void)
{
	struct conf *c;

	c = conf_new();
	check_defaults("conf_new", c);
	ok(c->file == NULL, "conf_new: no file");
	conf_free(c);
	conf_free(NULL);

	c = expect_ok("empty file", "");
	check_defaults("empty file", c);
	conf_free(c);

	c = expect_ok(
	    "sections only", "[agent]\n[channel]\n[hooks]\n[freeze]\n[log]\n");
	check_defaults("sections only", c);
	conf_free(c);
}

static void
test_missing(void)
{
	struct conf *c;
	char *path, *out, *want;
	int r;

	path = tpath("missing.conf");
	r = load_file(path, 0, &c, &out);
	is_int(0, r, "missing, not required: 0");
	is_str("", out, "missing, not required: says nothing");
	ok(c != NULL && c->file == NULL, "missing, not required: no file");
	if (c != NULL)
		check_defaults("missing", c);
	conf_free(c);
	free(out);

	r = load_file(path, 1, &c, &out);
	is_int(-ENOENT, r, "missing, required: -ENOENT");
	ok(c == NULL, "missing, required: no conf");
	(void)xasprintf(&want, "%s: No such file or directory\n", path);
	ok(ends_with(out, want) && count_lines(out) == 1,
	    "missing, required: says '%s: No such file or directory'", path);
	free(want);
	free(out);
	free(path);

	/* fopen() opens a directory; the read fails. */
	r = load_file(tmpdir, 0, &c, &out);
	is_int(-EISDIR, r, "a directory: -EISDIR");
	ok(c == NULL, "a directory: no conf");
	(void)xasprintf(&want, "%s: Is a directory\n", tmpdir);
	ok(ends_with(out, want) && count_lines(out) == 1,
	    "a directory: says 'Is a directory'");
	free(want);
	free(out);

	if (geteuid() == 0) {
		skip(3, "unreadable file: root reads a mode 000 file");
		return;
	}
	path = tpath("unreadable.conf");
	write_mem(path, "[agent]\n", 8);
	(void)chmod(path, 0);
	r = load_file(path, 1, &c, &out);
	is_int(-EACCES, r, "unreadable: -EACCES");
	ok(c == NULL, "unreadable: no conf");
	(void)xasprintf(&want, "%s: Permission denied\n", path);
	ok(ends_with(out, want), "unreadable: says 'Permission denied'");
	free(want);
	free(out);
	(void)unlink(path);
	free(path);
}

static const char every_key[] = "[agent]\n"
				"state_dir = /var/lib/fa\n"
				"[channel]\n"
				"method = unix-listen\n"
				"path = /srv/fa.sock\n"
				"[hooks]\n"
				"dir = /a\n"
				"dir = /b/c d\n"
				"timeout = 2m\n"
				"kill_grace = 0\n"
				"[freeze]\n"
				"include = /srv/*\n"
				"include = /data\n"
				"exclude = /srv/tmp\n"
				"exclude_type = nfs4\n"
				"exclude_type = fuse.sshfs\n"
				"max_frozen = 0\n"
				"[log]\n"
				"facility = local3\n"
				"level = debug\n";

static void
check_every_key(const char *what, const struct conf *c)
{
	static const char *const dirs[] = { "/a", "/b/c d", NULL };
	static const char *const inc[] = { "/srv/*", "/data", NULL };
	static const char *const exc[] = { "/srv/tmp", NULL };
	static const char *const typ[] = { "nfs4", "fuse.sshfs", NULL };

	is_str("/var/lib/fa", c->state_dir, "%s: state_dir", what);
	is_int(CHANNEL_UNIX_LISTEN, c->method, "%s: method", what);
	is_str("/srv/fa.sock", c->path, "%s: path", what);
	ok(strlist_is(&c->hook_dirs, dirs), "%s: dir, twice, in order", what);
	ok(c->hook_timeout == 120, "%s: timeout 2m", what);
	ok(c->hook_kill_grace == 0, "%s: kill_grace 0", what);
	ok(strlist_is(&c->include, inc), "%s: include, twice", what);
	ok(strlist_is(&c->exclude, exc), "%s: exclude", what);
	ok(strlist_is(&c->exclude_type, typ), "%s: exclude_type, twice", what);
	ok(c->max_frozen == 0, "%s: max_frozen 0 (off)", what);
	is_int(LOG_LOCAL3, c->facility, "%s: facility local3", what);
	is_int(LOG_DEBUG, c->level, "%s: level debug", what);
}

static void
test_every_key(void)
{
	struct conf *c;
	char *path;

	c = expect_ok("every key", every_key);
	path = tpath("x.conf");
	is_str(path, c->file, "every key: file");
	free(path);
	check_every_key("every key", c);
	conf_free(c);
}

struct name_val {
	const char *name;
	int v;
};

static void
test_values(void)
{
	static const struct name_val fac[] = { { "daemon", LOG_DAEMON },
		{ "user", LOG_USER }, { "local0", LOG_LOCAL0 },
		{ "local7", LOG_LOCAL7 }, { "auth", LOG_AUTH },
		{ "authpriv", LOG_AUTHPRIV }, { "syslog", LOG_SYSLOG } };
	static const struct name_val lvl[] = { { "err", LOG_ERR },
		{ "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
		{ "info", LOG_INFO }, { "debug", LOG_DEBUG } };
	static const char *const methods[] = { "virtio-serial", "isa-serial",
		"unix-listen", "vsock-listen" };
	struct conf *c;
	char *text;
	size_t i;

	for (i = 0; i < nitems(fac); i++) {
		(void)xasprintf(&text, "[log]\nfacility = %s\n", fac[i].name);
		c = expect_ok(fac[i].name, text);
		is_int(fac[i].v, c->facility, "facility %s", fac[i].name);
		conf_free(c);
		free(text);
	}
	for (i = 0; i < nitems(lvl); i++) {
		(void)xasprintf(&text, "[log]\nlevel = %s\n", lvl[i].name);
		c = expect_ok(lvl[i].name, text);
		is_int(lvl[i].v, c->level, "level %s", lvl[i].name);
		conf_free(c);
		free(text);
	}
	for (i = 0; i < nitems(methods); i++) {
		(void)xasprintf(&text, "[channel]\nmethod = %s\n", methods[i]);
		c = expect_ok(methods[i], text);
		is_int((long long)i, c->method, "method %s", methods[i]);
		ok(c->path == NULL, "method %s: path is its default",
		    methods[i]);
		conf_free(c);
		free(text);
	}

	/* Range limits are inclusive. */
	c = expect_ok("limits",
	    "[hooks]\ntimeout = 1s\nkill_grace = 1m\n"
	    "[freeze]\nmax_frozen = 1h\n");
	ok(c->hook_timeout == 1 && c->hook_kill_grace == 60 &&
		c->max_frozen == 3600,
	    "limits: timeout 1s, kill_grace 60s, max_frozen 1h");
	conf_free(c);
	c = expect_ok("fractions",
	    "[hooks]\ntimeout = 3600\n"
	    "kill_grace = 1.5s\n[freeze]\nmax_frozen = 0.5m\n");
	ok(c->hook_timeout == 3600 && c->hook_kill_grace == 1.5 &&
		c->max_frozen == 30,
	    "fractions: timeout 3600, kill_grace 1.5s, max_frozen 0.5m");
	conf_free(c);

	/* The path is checked against the method, wherever that comes. */
	c = expect_ok("vsock path first",
	    "[channel]\npath = -1:99\nmethod = vsock-listen\n");
	is_str("-1:99", c->path, "vsock path kept as written");
	is_int(CHANNEL_VSOCK_LISTEN, c->method, "vsock method after path");
	conf_free(c);
	c = expect_ok("isa path",
	    "[channel]\nmethod = isa-serial\n"
	    "path = /dev/ttyS1\n");
	is_str("/dev/ttyS1", c->path, "isa-serial path");
	conf_free(c);
	c = expect_ok("empty path", "[channel]\npath =\n");
	ok(c->path == NULL, "'path =' is the method's default");
	conf_free(c);
}

static void
test_syntax(void)
{
	static const char *const dirs[] = { "/h#1", "/with space", NULL };
	struct conf *c;

	c = expect_ok("syntax",
	    "\xef\xbb\xbf; a comment after a BOM\n"
	    "# another\n"
	    "\n"
	    "  [ agent ]   ; inline comment\n"
	    "   state_dir = /s p/x ; why\r\n"
	    "[channel]\r\n"
	    "method=vsock-listen\n"
	    "path = 3:1234\n"
	    "[hooks]\n"
	    "\ttimeout = 1.5s\n"
	    "kill_grace =     500ms\t\n"
	    "dir = /h#1\n"
	    "\t dir = /with space \n"
	    "[log];comment\n"
	    "; level = err\n"
	    "# level = err\n"
	    "[log]\n"
	    "facility = user");
	is_str("/s p/x", c->state_dir,
	    "indented, CRLF, inline comment: state_dir '/s p/x'");
	is_int(CHANNEL_VSOCK_LISTEN, c->method, "no blanks around '='");
	is_str("3:1234", c->path, "':' in a value");
	ok(c->hook_timeout == 1.5, "tab-indented timeout 1.5s");
	ok(c->hook_kill_grace == 0.5, "kill_grace 500ms, blanks stripped");
	ok(strlist_is(&c->hook_dirs, dirs),
	    "'#' inside a value; indented keys are not continuations");
	is_int(LOG_INFO, c->level, "commented-out keys do nothing");
	is_int(LOG_USER, c->facility, "last line without a newline");
	conf_free(c);

	c = expect_ok("BOM", "\xef\xbb\xbf[agent]\nstate_dir = /x\n");
	is_str("/x", c->state_dir, "a UTF-8 BOM before a section");
	conf_free(c);

	c = expect_ok("CRLF", "[hooks]\r\ndir =\r\ntimeout = 7s\r\n");
	ok(c->hook_dirs.n == 0 && c->hook_timeout == 7, "CRLF lines");
	conf_free(c);
}

static void
test_lists(void)
{
	static const char *const def[] = { SYSCONFDIR "/fsfreeze-agent/hooks.d",
		NULL };
	static const char *const ab[] = { "/a", "/b", NULL };
	static const char *const b[] = { "/b", NULL };
	static const char *const none[] = { NULL };
	struct conf *c;

	c = expect_ok("no dir", "[hooks]\ntimeout = 5s\n");
	ok(strlist_is(&c->hook_dirs, def), "no dir: the default");
	conf_free(c);
	c = expect_ok("dir twice", "[hooks]\ndir = /a\ndir = /b\n");
	ok(strlist_is(&c->hook_dirs, ab),
	    "dir twice: both, in order, "
	    "no default");
	conf_free(c);
	c = expect_ok("dir =", "[hooks]\ndir =\n");
	ok(strlist_is(&c->hook_dirs, none), "'dir =' alone: no hooks");
	conf_free(c);
	c = expect_ok("dir cleared", "[hooks]\ndir = /a\ndir =\ndir = /b\n");
	ok(strlist_is(&c->hook_dirs, b), "'dir =' clears what came before");
	conf_free(c);
	c = expect_ok(
	    "dir reopened", "[hooks]\ndir = /a\n[freeze]\n[hooks]\ndir = /b\n");
	ok(strlist_is(&c->hook_dirs, ab), "dir in a reopened section adds");
	conf_free(c);
	c = expect_ok("include",
	    "[freeze]\ninclude = /a\ninclude = /b\nexclude = /a\n"
	    "exclude =\nexclude_type = xfs\nexclude_type =\n");
	ok(strlist_is(&c->include, ab), "include twice");
	ok(strlist_is(&c->exclude, none), "exclude cleared");
	ok(strlist_is(&c->exclude_type, none), "exclude_type cleared");
	conf_free(c);
}

static void
test_errors(void)
{
	static const char nul_text[] = "[hooks]\ndir = /a\0b\ntimeout = 5s\n";

	expect_errs("unknown key", "[hooks]\ntimout = 5s\n", 0,
	    "2: unknown key 'timout' in section [hooks]", NULL);
	expect_errs("key elsewhere", "[freeze]\ntimeout = 5s\n", 0,
	    "2: unknown key 'timeout' in section [freeze] (it belongs in "
	    "[hooks])",
	    NULL);
	expect_errs("empty key", "[hooks]\n = /x\n", 0,
	    "2: unknown key '' in section [hooks]", NULL);
	expect_errs("key case", "[hooks]\nTimeout = 5s\n", 0,
	    "2: unknown key 'Timeout' in section [hooks]", NULL);
	expect_errs("unknown section", "[hook]\ndir = /x\ntimeout = 1s\n", 0,
	    "1: unknown section [hook]", NULL);
	expect_errs("empty unknown section", "[agent]\n[nope]\n[]\n", 0,
	    "2: unknown section [nope]", "3: unknown section []", NULL);
	expect_errs(
	    "section case", "[Hooks]\n", 0, "1: unknown section [Hooks]", NULL);
	expect_errs("before any section", "; c\ndir = /x\n[hooks]\n", 0,
	    "2: key 'dir' before any section", NULL);

	expect_errs("method", "[channel]\nmethod = serial\n", 0,
	    "2: 'method' in section [channel]: unknown method 'serial' "
	    "(virtio-serial, isa-serial, unix-listen or vsock-listen)",
	    NULL);
	expect_errs("empty method", "[channel]\nmethod =\n", 0,
	    "2: 'method' in section [channel]: unknown method '' "
	    "(virtio-serial, isa-serial, unix-listen or vsock-listen)",
	    NULL);
	expect_errs("facility", "[log]\nfacility = kern\n", 0,
	    "2: 'facility' in section [log]: unknown facility 'kern' "
	    "(daemon, user, local0 to local7, auth, authpriv, cron, ftp, "
	    "lpr, mail, news, syslog or uucp)",
	    NULL);
	expect_errs("level", "[log]\nlevel = warn\n", 0,
	    "2: 'level' in section [log]: unknown level 'warn' (err, "
	    "warning, notice, info or debug)",
	    NULL);
	expect_errs("relative state_dir", "[agent]\nstate_dir = run/x\n", 0,
	    "2: 'state_dir' in section [agent]: 'run/x' is not an absolute "
	    "path",
	    NULL);
	expect_errs("empty state_dir", "[agent]\nstate_dir =\n", 0,
	    "2: 'state_dir' in section [agent]: needs a value", NULL);
	expect_errs("relative dir", "[hooks]\ndir = hooks.d\n", 0,
	    "2: 'dir' in section [hooks]: 'hooks.d' is not an absolute path",
	    NULL);
	expect_errs("relative glob", "[freeze]\ninclude = srv/*\n", 0,
	    "2: 'include' in section [freeze]: 'srv/*' does not start with "
	    "'/' (patterns match whole mount points)",
	    NULL);
	expect_errs("exclude glob", "[freeze]\nexclude = *\n", 0,
	    "2: 'exclude' in section [freeze]: '*' does not start with '/' "
	    "(patterns match whole mount points)",
	    NULL);
	expect_errs("fstype list", "[freeze]\nexclude_type = nfs, cifs\n", 0,
	    "2: 'exclude_type' in section [freeze]: 'nfs, cifs' is not one "
	    "filesystem type (give one per line)",
	    NULL);
	expect_errs("fstype", "[freeze]\nexclude_type = a/b\n", 0,
	    "2: 'exclude_type' in section [freeze]: 'a/b' is not a "
	    "filesystem type",
	    NULL);
	expect_errs("listed twice", "[hooks]\ndir = /a\ndir = /a\n", 0,
	    "3: 'dir' in section [hooks]: '/a' is already listed", NULL);

	expect_errs("duration", "[hooks]\ntimeout = 10 s\n", 0,
	    "2: 'timeout' in section [hooks]: bad duration '10 s' (like "
	    "500ms, 30s, 2m or 1h, no space before the unit)",
	    NULL);
	expect_errs("negative", "[hooks]\nkill_grace = -1s\n", 0,
	    "2: 'kill_grace' in section [hooks]: bad duration '-1s' (like "
	    "500ms, 30s, 2m or 1h, no space before the unit)",
	    NULL);
	expect_errs("empty duration", "[freeze]\nmax_frozen =\n", 0,
	    "2: 'max_frozen' in section [freeze]: bad duration '' (like "
	    "500ms, 30s, 2m or 1h, no space before the unit)",
	    NULL);
	expect_errs("timeout 0", "[hooks]\ntimeout = 0\n", 0,
	    "2: 'timeout' in section [hooks]: 0 is out of range (1s..1h)",
	    NULL);
	expect_errs("timeout 500ms", "[hooks]\ntimeout = 500ms\n", 0,
	    "2: 'timeout' in section [hooks]: 500ms is out of range "
	    "(1s..1h)",
	    NULL);
	expect_errs("timeout 61m", "[hooks]\ntimeout = 61m\n", 0,
	    "2: 'timeout' in section [hooks]: 61m is out of range (1s..1h)",
	    NULL);
	expect_errs("kill_grace 61s", "[hooks]\nkill_grace = 61s\n", 0,
	    "2: 'kill_grace' in section [hooks]: 61s is out of range (0..1m)",
	    NULL);
	expect_errs("max_frozen 2h", "[freeze]\nmax_frozen = 2h\n", 0,
	    "2: 'max_frozen' in section [freeze]: 2h is out of range (0..1h)",
	    NULL);

	expect_errs("twice", "[hooks]\ntimeout = 5s\n\ntimeout = 6s\n", 0,
	    "4: 'timeout' in section [hooks] given twice (first at line 2)",
	    NULL);
	expect_errs("twice, reopened",
	    "[log]\nlevel = info\n[agent]\n[log]\nlevel = info\n", 0,
	    "5: 'level' in section [log] given twice (first at line 2)", NULL);
	expect_errs("twice after a bad value",
	    "[channel]\nmethod = x\nmethod = unix-listen\n", 0,
	    "2: 'method' in section [channel]: unknown method 'x' "
	    "(virtio-serial, isa-serial, unix-listen or vsock-listen)",
	    "3: 'method' in section [channel] given twice (first at line 2)",
	    NULL);
	expect_errs("path twice", "[channel]\npath =\npath = /dev/x\n", 0,
	    "3: 'path' in section [channel] given twice (first at line 2)",
	    NULL);

	expect_errs("no '='", "[hooks]\njunk\n", 0,
	    "2: syntax error: expected 'key = value' or '[section]'", NULL);
	expect_errs("no ']'", "[hooks\ntimeout = 1s\n[log]\nlevel = x\n", 0,
	    "1: syntax error: missing ']'",
	    "4: 'level' in section [log]: unknown level 'x' (err, warning, "
	    "notice, info or debug)",
	    NULL);
	expect_errs("comment in section", "[hooks ;x]\n", 0,
	    "1: syntax error: missing ']'", NULL);
	expect_errs("text after ']'", "[hooks] x\ndir = /a\n", 0,
	    "1: syntax error: text after ']'", NULL);
	expect_errs("'#' after ']'", "[hooks] # x\n", 0,
	    "1: syntax error: text after ']'", NULL);
	expect_errs("continuation", "[hooks]\ndir = /a\n  /b\n", 0,
	    "3: syntax error: expected 'key = value' (an indented line does "
	    "not continue a value)",
	    NULL);
	expect_errs("colon", "[hooks]\ntimeout: 5s\n", 0,
	    "2: syntax error: expected 'key = value', not 'key: value'", NULL);
	expect_errs("inline comment only", "[hooks]\ndir ;= /x\n", 0,
	    "2: syntax error: expected 'key = value' or '[section]'", NULL);

	expect_errs("channel: vsock",
	    "[channel]\npath = 3\n"
	    "method = vsock-listen\n",
	    0,
	    "2: 'path' in section [channel]: '3' is not CID:PORT (for "
	    "vsock-listen)",
	    NULL);
	expect_errs("channel: unix",
	    "[channel]\nmethod = unix-listen\n"
	    "path = x.sock\n",
	    0,
	    "3: 'path' in section [channel]: 'x.sock' is not an absolute "
	    "path",
	    NULL);
	expect_errs("channel: virtio", "[channel]\npath = 3:1234\n", 0,
	    "2: 'path' in section [channel]: '3:1234' is not an absolute "
	    "path",
	    NULL);

	expect_errs(
	    "NUL", nul_text, sizeof(nul_text) - 1, "2: NUL byte in line", NULL);

	expect_errs("several, in order",
	    "[agent]\nstate_dir = x\n[hooks]\ntimeout = 5s\nbogus = 1\n"
	    "[nope]\nwhatever = 1\n[log]\nlevel = loud\n",
	    0, "2: 'state_dir' in section [agent]: 'x' is not an absolute path",
	    "5: unknown key 'bogus' in section [hooks]",
	    "6: unknown section [nope]",
	    "9: 'level' in section [log]: unknown level 'loud' (err, "
	    "warning, notice, info or debug)",
	    NULL);
}

/*
 * inih's line buffer is INI_MAX_LINE bytes for the line, its '\n' and a
 * NUL. With fgets() a longer line is cut and its tail parsed as a line of
 * its own.
 */
static void
test_long_lines(void)
{
	const int max = INI_MAX_LINE - 2;
	struct conf *c;
	char *line, *text, *want;

	(void)xasprintf(&want, "2: line too long (max %d bytes)", max);
	line = xmalloc(1000);
	/* "dir = /" and a's: max bytes exactly */
	memcpy(line, "dir = /", 7);
	memset(line + 7, 'a', 1000 - 7);
	line[max] = '\0';
	(void)xasprintf(&text, "[hooks]\n%s\n", line);
	c = expect_ok("a line of the longest length", text);
	ok(c->hook_dirs.n == 1 && strlen(c->hook_dirs.v[0]) == (size_t)max - 6,
	    "a %d-byte line is taken whole", max);
	conf_free(c);
	free(text);

	line[max] = 'a';
	line[max + 1] = '\0';
	(void)xasprintf(&text, "[hooks]\n%s\n", line);
	expect_errs("a line one byte too long", text, 0, want, NULL);
	free(text);

	/*
	 * fgets(str, INI_MAX_LINE) would stop INI_MAX_LINE - 1 bytes in, and
	 * inih would parse "timeout = 9s" from the rest.
	 */
	line[INI_MAX_LINE - 2] = ' ';
	line[INI_MAX_LINE - 1] = '\0';
	(void)xasprintf(&text, "[hooks]\n%stimeout = 9s\n", line);
	expect_errs("a cut would make a key", text, 0, want, NULL);
	free(text);

	/* Long enough to span several buffers, then a line with an error. */
	memset(line, 'x', 999);
	line[999] = '\0';
	(void)xasprintf(
	    &text, "[hooks]\ndir = /%s\n[log]\nlevel = nope\n", line);
	expect_errs("a 1 kB line", text, 0, want,
	    "4: 'level' in section [log]: unknown level 'nope' (err, "
	    "warning, notice, info or debug)",
	    NULL);
	free(text);
	free(line);
	free(want);
}

static void
test_many_errors(void)
{
	struct conf *c;
	struct buf b;
	char *out, *path, *want, *l;
	int i, r;

	buf_init(&b, 0);
	(void)buf_adds(&b, "[hooks]\n");
	for (i = 0; i < 30; i++)
		(void)buf_addf(&b, "junk%d\n", i);
	(void)buf_addc(&b, '\0');
	r = load_mem(b.data, strlen(b.data), &c, &out, &path);
	is_int(-EINVAL, r, "30 errors: -EINVAL");
	is_int(CONF_MAX_ERRORS + 1, (long long)count_lines(out),
	    "30 errors: %d lines", CONF_MAX_ERRORS + 1);
	(void)xasprintf(&want,
	    "%s:%d: syntax error: expected 'key = value' or '[section]'", path,
	    CONF_MAX_ERRORS + 1);
	l = nth_line(out, CONF_MAX_ERRORS - 1);
	ok(l != NULL && ends_with(l, want), "30 errors: the 20th is line 21");
	free(l);
	free(want);
	(void)xasprintf(
	    &want, "%s: 30 errors, the first %d shown", path, CONF_MAX_ERRORS);
	l = nth_line(out, CONF_MAX_ERRORS);
	ok(l != NULL && ends_with(l, want), "30 errors: then the count");
	free(l);
	free(want);
	free(out);
	free(path);
	buf_free(&b);
}

static struct conf *
reload_print(const char *what, const struct conf *c)
{
	struct conf *c2;
	struct buf b;

	buf_init(&b, 0);
	conf_print(c, &b);
	(void)buf_addc(&b, '\0');
	c2 = expect_ok(what, b.data);
	buf_free(&b);
	return c2;
}

static void
test_print(void)
{
	struct conf *c, *c2;
	struct buf b;
	const char *d;

	c = conf_new();
	buf_init(&b, 0);
	conf_print(c, &b);
	(void)buf_addc(&b, '\0');
	is_str("[agent]\n"
	       "state_dir = " RUNSTATEDIR "/fsfreeze-agent\n"
	       "\n[channel]\n"
	       "method = virtio-serial\n"
	       "path =\n"
	       "\n[hooks]\n"
	       "dir = " SYSCONFDIR "/fsfreeze-agent/hooks.d\n"
	       "timeout = 1m\n"
	       "kill_grace = 5s\n"
	       "\n[freeze]\n"
	       "include =\n"
	       "exclude =\n"
	       "exclude_type =\n"
	       "max_frozen = 90s\n"
	       "\n[log]\n"
	       "facility = daemon\n"
	       "level = info\n",
	    b.data, "conf_print of the defaults");
	buf_free(&b);
	c2 = reload_print("defaults printed", c);
	d = conf_diff(c, c2);
	ok(d == NULL, "defaults printed read back the same (%s)",
	    d != NULL ? d : "all equal");
	conf_free(c2);
	conf_free(c);

	c = expect_ok("every key", every_key);
	c2 = reload_print("every key printed", c);
	check_every_key("every key printed", c2);
	conf_free(c2);
	/* An empty hook list prints as "dir =" and stays empty. */
	strlist_clear(&c->hook_dirs);
	c->hook_timeout = 0.25 + 1;
	c2 = reload_print("no hooks printed", c);
	ok(c2->hook_dirs.n == 0 && c2->hook_timeout == 1.25,
	    "no hooks and 1.25s print and read back");
	conf_free(c2);
	conf_free(c);
}

/* The shipped file's defaults are for /etc and /run; the build's may differ. */
static char *
subst_dirs(const char *v)
{
	char *s;

	if (strncmp(v, "/etc/", 5) == 0)
		(void)xasprintf(&s, "%s%s", SYSCONFDIR, v + 4);
	else if (strncmp(v, "/run/", 5) == 0)
		(void)xasprintf(&s, "%s%s", RUNSTATEDIR, v + 4);
	else
		s = xstrdup(v);
	return s;
}

/* "#key = value" or "#key =": a commented-out default, not prose. */
static int
default_line(const char *l, char **key, char **val)
{
	size_t n = 0;

	if (*l++ != '#')
		return 0;
	while ((l[n] >= 'a' && l[n] <= 'z') || l[n] == '_')
		n++;
	if (n == 0 || strncmp(l + n, " =", 2) != 0 ||
	    (l[n + 2] != '\0' && l[n + 2] != ' '))
		return 0;
	*key = xstrndup(l, n);
	*val = xstrdup(l[n + 2] == ' ' ? l + n + 3 : "");
	return 1;
}

static void
test_shipped(void)
{
	const char *top = getenv("top_srcdir");
	struct conf *c, *def;
	struct buf un;
	char *path, *text, *out, *l, *key, *val, *sv, *section = NULL;
	const char *d;
	int count[CONF_NKEYS];
	int good[CONF_NKEYS];
	size_t i, k;
	int r;

	if (top == NULL) {
		skip(1, "top_srcdir is not set: not run by make check");
		return;
	}
	(void)xasprintf(&path, "%s/conf/fsfreeze-agent.conf", top);
	def = conf_new();

	r = load_file(path, 1, &c, &out);
	is_int(0, r, "the shipped file loads");
	is_str("", out, "the shipped file gives no error");
	free(out);
	if (c == NULL)
		bail("the shipped file does not load");
	is_str(path, c->file, "the shipped file: file");
	d = conf_diff(def, c);
	ok(d == NULL, "the shipped file is the defaults (%s)",
	    d != NULL ? d : "all equal");
	conf_free(c);

	/* Uncomment every "#key = default" line. */
	memset(count, 0, sizeof(count));
	memset(good, 0, sizeof(good));
	text = slurp(path);
	buf_init(&un, 0);
	for (i = 0; (l = nth_line(text, i)) != NULL; i++) {
		if (l[0] == '[') {
			free(section);
			section = xstrndup(l + 1, strcspn(l + 1, "]"));
		}
		if (!default_line(l, &key, &val)) {
			(void)buf_addf(&un, "%s\n", l);
			free(l);
			continue;
		}
		sv = subst_dirs(val);
		(void)buf_addf(&un, "%s = %s\n", key, sv);
		for (k = 0; k < CONF_NKEYS; k++) {
			if (section == NULL ||
			    strcmp(conf_keys[k].section, section) != 0 ||
			    strcmp(conf_keys[k].name, key) != 0)
				continue;
			count[k]++;
			good[k] = conf_keys[k].def == NULL
			    ? *sv == '\0'
			    : strcmp(conf_keys[k].def, sv) == 0;
		}
		free(sv);
		free(key);
		free(val);
		free(l);
	}
	free(section);
	(void)buf_addc(&un, '\0');
	for (k = 0; k < CONF_NKEYS; k++) {
		is_int(1, count[k], "the shipped file shows [%s] %s once",
		    conf_keys[k].section, conf_keys[k].name);
		ok(good[k], "... with its default '%s'",
		    conf_keys[k].def != NULL ? conf_keys[k].def : "");
	}
	c = expect_ok("the shipped file uncommented", un.data);
	d = conf_diff(def, c);
	ok(d == NULL, "uncommented, it is still the defaults (%s)",
	    d != NULL ? d : "all equal");
	conf_free(c);
	buf_free(&un);
	free(text);
	conf_free(def);
	free(path);
}

/* Also after bail(): the files a test may have left, then the directory. */
static void
cleanup(void)
{
	static const char *const names[] = { "x.conf", "stderr",
		"unreadable.conf" };
	char *p;
	size_t i;

	for (i = 0; i < nitems(names); i++) {
		p = tpath(names[i]);
		(void)unlink(p);
		free(p);
	}
	if (rmdir(tmpdir) < 0)
		printf("# rmdir %s: %s\n", tmpdir, strerror(errno));
}

int
main(void)
{
	const char *t = getenv("TMPDIR");

	plan_lazy();
	log_init(LOG_TO_STDERR, LOG_DAEMON, LOG_INFO);
	(void)snprintf(tmpdir, sizeof(tmpdir), "%s/t0020-conf.XXXXXX",
	    t != NULL && *t != '\0' ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	errfile = tpath("stderr");
	if (atexit(cleanup) != 0)
		bail("atexit failed");

	test_durations();
	test_fmt_duration();
	test_methods();
	test_defaults();
	test_missing();
	test_every_key();
	test_values();
	test_syntax();
	test_lists();
	test_errors();
	test_long_lines();
	test_many_errors();
	test_print();
	test_shipped();
	free(errfile);
	errfile = NULL;
	return tap_done();
}
