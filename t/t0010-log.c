/* SPDX-License-Identifier: ISC */
/*
 * log.c: lines on our own syslog socket with the right <PRI>, ident and
 * text; level filter; hold and release with the original timestamps; no
 * blocking on a socket nobody reads; drop counts; reconnection; stderr.
 */

#include "../src/log.c"

#include <sys/resource.h>
#include <sys/wait.h>

#include "tap.h"
#include "evtest.h"

static char tmpdir[] = "/tmp/t0010-XXXXXX";
static char sockpath[256];
static int rfd = -1;   /* our stand-in for syslogd */
static pid_t want_pid; /* whose lines: 0 is ours */

static int
recv_bind(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path) >=
	    (int)sizeof sun.sun_path)
		bail("path too long: %s", path);
	(void)unlink(path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		bail("bind %s: %s", path, strerror(errno));
	return fd;
}

/* One datagram, or NULL when none is waiting. */
static const char *
recv_line(void)
{
	static char b[2048];
	ssize_t n;

	n = recv(rfd, b, sizeof b - 1, MSG_DONTWAIT);
	if (n < 0)
		return NULL;
	b[n] = '\0';
	return b;
}

static int
recv_none(void)
{
	return recv_line() == NULL;
}

/* The text after "fsfreeze-agent[pid]: ", or NULL if the frame is wrong. */
static const char *
line_text(const char *l, int *pri, int *secs)
{
	char ident[64], mon[4];
	int day, hh, mm, ss, consumed = 0;
	long pid;

	if (l == NULL)
		return NULL;
	if (sscanf(l, "<%d>%3s %2d %2d:%2d:%2d %63[^[][%ld]: %n", pri, mon,
		&day, &hh, &mm, &ss, ident, &pid, &consumed) != 8 ||
	    consumed == 0)
		return NULL;
	if (strcmp(ident, AGENT_NAME) != 0 ||
	    pid != (long)(want_pid ? want_pid : getpid()))
		return NULL;
	if (secs != NULL)
		*secs = hh * 3600 + mm * 60 + ss;
	return l + consumed;
}

static void
ms_sleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* The reader side: collect what arrives while the loop runs. */
struct coll {
	char **v;
	size_t n;
};
static struct coll got;
static ev_io rd_w;

static void
coll_clear(void)
{
	size_t i;

	for (i = 0; i < got.n; i++)
		free(got.v[i]);
	free(got.v);
	got.v = NULL;
	got.n = 0;
}

static void
rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	const char *l;

	(void)loop;
	(void)w;
	(void)revents;
	while ((l = recv_line()) != NULL) {
		got.v = xreallocarray(got.v, got.n + 1, sizeof *got.v);
		got.v[got.n++] = xstrdup(l);
	}
}

/* Run the loop, reading, until want lines are in or timeout passes. */
static void
collect(size_t want, double timeout)
{
	double end = mono_now() + timeout;

	ev_io_set(&rd_w, rfd, EV_READ);
	ev_io_start(EV_DEFAULT, &rd_w);
	while (got.n < want && mono_now() < end)
		run_for(0.02);
	ev_io_stop(EV_DEFAULT, &rd_w);
}

static const char *
got_text(size_t i)
{
	int pri;

	return i < got.n ? line_text(got.v[i], &pri, NULL) : NULL;
}

static int hook_ran;
static int hook_fd = -1;

static void
fatal_hook(void)
{
	hook_ran = 1;
	if (hook_fd >= 0) {
		(void)write(hook_fd, "H", 1);
		(void)close(hook_fd);
	}
}

static void
test_stderr_sync(void)
{
	int p[2], saved, fl;
	char b[512];
	ssize_t n;

	/* Before log_start, a config error reaches stderr at once. */
	if (pipe2(p, O_CLOEXEC) == -1)
		bail("pipe2: %s", strerror(errno));
	saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
	if (saved < 0 || dup2(p[1], STDERR_FILENO) == -1)
		bail("dup2: %s", strerror(errno));
	log_init(LOG_TO_STDERR, LOG_DAEMON, LOG_INFO);
	log_errx("%s:%d: %s", "/etc/x.conf", 3, "bad key");
	log_warnx("careful");
	log_info("plain");
	fl = fcntl(p[0], F_GETFL);
	(void)fcntl(p[0], F_SETFL, fl | O_NONBLOCK);
	n = read(p[0], b, sizeof b - 1);
	b[n > 0 ? n : 0] = '\0';
	is_str(AGENT_NAME ": error: /etc/x.conf:3: bad key\n" AGENT_NAME
			  ": warning: careful\n" AGENT_NAME ": plain\n",
	    b, "stderr: lines written at the call, before log_start");
	ok((fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK) == 0,
	    "stderr: fd 2's file description is left blocking");

	/* A pipe nobody reads: no call blocks, the drop is counted. */
	(void)fcntl(p[1], F_SETPIPE_SZ, 4096);
	{
		double t0 = mono_now();
		int i;

		for (i = 0; i < 2000; i++)
			log_info("stderr burst %d", i);
		ok(mono_now() - t0 < 2.0,
		    "stderr: 2000 lines into a full pipe return (%.3f s)",
		    mono_now() - t0);
	}
	{
		/* The reader drains: what was kept follows a drop count. */
		struct buf all;
		unsigned long dropped = 0, nd;
		int lines = 0, marks = 0, k, last = -1;
		char *s, *e;

		buf_init(&all, 0);
		for (;;) {
			while ((n = read(p[0], b, sizeof b)) > 0)
				(void)buf_add(&all, b, (size_t)n);
			log_flush();
			if ((n = read(p[0], b, sizeof b)) <= 0)
				break;
			(void)buf_add(&all, b, (size_t)n);
		}
		(void)buf_addc(&all, '\0');
		for (s = all.data; s != NULL && *s != '\0'; s = e + 1) {
			if ((e = strchr(s, '\n')) == NULL)
				break;
			*e = '\0';
			if (sscanf(s, AGENT_NAME ": stderr burst %d", &k) ==
			    1) {
				lines++;
				last = k;
			} else if (sscanf(s,
				       AGENT_NAME
				       ": warning: %lu messages dropped",
				       &nd) == 1) {
				marks++;
				dropped += nd;
			}
		}
		is_int(1, marks, "stderr: one drop count line after draining");
		is_int(2000, lines + (long)dropped,
		    "stderr: delivered + dropped = 2000 (%d + %lu)", lines,
		    dropped);
		is_int(1999, last, "stderr: the newest line arrived");
		buf_free(&all);
	}
	log_init(0, LOG_DAEMON, LOG_INFO);
	if (dup2(saved, STDERR_FILENO) == -1)
		bail("dup2 back: %s", strerror(errno));
	(void)close(saved);
	(void)close(p[0]);
	(void)close(p[1]);
}

static void
test_basic(void)
{
	const char *l, *t;
	int pri, secs;
	char big[3000];

	log_init(LOG_TO_SYSLOG, LOG_DAEMON, LOG_INFO);
	log_info("hello %d", 42);
	l = recv_line();
	t = line_text(l, &pri, &secs);
	ok(t != NULL, "syslog: RFC 3164 frame with ident and pid: %s",
	    l ? l : "(nothing)");
	is_int(LOG_DAEMON | LOG_INFO, pri, "syslog: <PRI> daemon.info");
	is_str("hello 42", t, "syslog: text");
	{
		time_t now = time(NULL);
		struct tm tm;
		int want;

		localtime_r(&now, &tm);
		want = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
		ok(t != NULL && (want - secs + 86400) % 86400 <= 2,
		    "syslog: timestamp is local time now");
	}

	errno = ENOENT;
	log_warn("open '%s'", "/x");
	t = line_text(recv_line(), &pri, NULL);
	is_str("open '/x': No such file or directory", t,
	    "log_warn appends strerror(errno)");
	is_int(LOG_DAEMON | LOG_WARNING, pri, "log_warn is a warning");
	log_warnr(-EACCES, "thing");
	is_str("thing: Permission denied", line_text(recv_line(), &pri, NULL),
	    "log_warnr appends strerror(-r)");
	log_errx("bad");
	is_str("bad", line_text(recv_line(), &pri, NULL), "log_errx text");
	is_int(LOG_DAEMON | LOG_ERR, pri, "log_errx is LOG_ERR");
	log_notice("n");
	(void)line_text(recv_line(), &pri, NULL);
	is_int(LOG_DAEMON | LOG_NOTICE, pri, "log_notice is LOG_NOTICE");

	log_debug("not at info");
	ok(recv_none(), "level info: debug is filtered");
	log_set_level(LOG_DEBUG);
	is_int(LOG_DEBUG, log_get_level(), "log_get_level");
	log_debug("dbg");
	is_str("dbg", line_text(recv_line(), &pri, NULL),
	    "level debug: debug passes");
	is_int(LOG_DAEMON | LOG_DEBUG, pri, "debug <PRI>");
	log_set_level(LOG_WARNING);
	log_info("i");
	log_notice("n");
	log_warnx("w");
	is_str("w", line_text(recv_line(), &pri, NULL),
	    "level warning: info and notice filtered, warning passes");
	ok(recv_none(), "level warning: nothing else");
	log_set_level(LOG_INFO);

	log_set_facility(LOG_LOCAL3);
	log_info("local");
	(void)line_text(recv_line(), &pri, NULL);
	is_int(LOG_LOCAL3 | LOG_INFO, pri, "facility local3");
	log_set_facility(LOG_DAEMON);

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_info("%s", big);
	l = recv_line();
	t = line_text(l, &pri, NULL);
	ok(t != NULL && strlen(l) < LOG_REC_SIZE && strlen(t) > 900 &&
		strcmp(t + strlen(t) - 3, "...") == 0,
	    "a long line is truncated with a marker (%zu bytes)",
	    l ? strlen(l) : 0);
}

static void
test_hold(void)
{
	int s1 = -1, s2 = -1, pri;
	const char *t;

	/* Before log_start: held lines wait, log_hold(0) flushes them. */
	log_hold(1);
	log_info("held one");
	ms_sleep(1100);
	log_warnx("held two");
	ok(recv_none(), "hold: nothing arrives while held");
	log_flush();
	ok(recv_none(), "hold: log_flush sends nothing while held");
	log_hold(0);
	t = line_text(recv_line(), &pri, &s1);
	is_str("held one", t, "release: first held line first");
	t = line_text(recv_line(), &pri, &s2);
	is_str("held two", t, "release: second held line next");
	ok(s1 >= 0 && s2 >= 0 && (s2 - s1 + 86400) % 86400 >= 1,
	    "release: original timestamps kept (%d s apart)",
	    (s2 - s1 + 86400) % 86400);
	ok(recv_none(), "release: nothing more");
}

static void
test_overflow_held(void)
{
	unsigned long n = 0;
	int i, good = 1;

	/* 300 lines held: the ring keeps the newest LOG_RING_N. */
	log_hold(1);
	for (i = 0; i < 300; i++)
		log_info("ov %d", i);
	ok(recv_none(), "overflow: nothing while held");
	log_hold(0);
	collect(1 + LOG_RING_N, 5.0);
	is_int(1 + LOG_RING_N, (long long)got.n,
	    "overflow: count line and %d lines", LOG_RING_N);
	ok(got_text(0) != NULL &&
		sscanf(got_text(0), "%lu messages dropped", &n) == 1,
	    "overflow: the drop count comes first: %s",
	    got_text(0) ? got_text(0) : "(none)");
	is_int(300 - LOG_RING_N, (long long)n, "overflow: N is right");
	for (i = 0; i < LOG_RING_N && (size_t)i + 1 < got.n; i++) {
		char want[32];

		snprintf(want, sizeof want, "ov %d", 300 - LOG_RING_N + i);
		if (got_text((size_t)i + 1) == NULL ||
		    strcmp(got_text((size_t)i + 1), want) != 0)
			good = 0;
	}
	ok(good, "overflow: the newest lines, in order");
	coll_clear();
}

static void
test_unread(void)
{
	int i, sz = 1, bursts = 0, marks = 0, last = -1, order = 1;
	unsigned long n = 0, dropped = 0;
	double t0, t1, c0, c1;

	/* A log daemon that does not read: a tiny queue, soon full. */
	(void)setsockopt(rfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	t0 = mono_now();
	for (i = 0; i < 10000; i++)
		log_info("burst %d", i);
	t1 = mono_now();
	ok(t1 - t0 < 2.0, "unread: 10000 calls return (%.3f s)", t1 - t0);
	c0 = cpu_secs();
	run_for(0.5);
	c1 = cpu_secs();
	ok(c1 - c0 < 0.1,
	    "unread: no spin while the socket is full (%.3f s cpu)", c1 - c0);
	collect(100000, 1.5);
	for (i = 0; (size_t)i < got.n; i++) {
		const char *t = got_text((size_t)i);
		int k;

		if (t == NULL)
			continue;
		if (sscanf(t, "burst %d", &k) == 1) {
			bursts++;
			if (k <= last)
				order = 0;
			last = k;
		} else if (sscanf(t, "%lu messages dropped", &n) == 1) {
			marks++;
			dropped += n;
		}
	}
	is_int(1, marks, "unread: one drop count line after the reader drains");
	is_int(10000, (long long)(bursts + (long)dropped),
	    "unread: delivered + dropped = 10000 (%d + %lu)", bursts, dropped);
	is_int(9999, last, "unread: the newest line arrived");
	ok(order, "unread: in order");
	coll_clear();
}

static void
test_reconnect(void)
{
	int pri;
	double t0;

	/* syslogd goes away: the socket file is gone, lines wait. */
	(void)close(rfd);
	(void)unlink(sockpath);
	log_info("while away 1");
	log_info("while away 2");
	ok(log_sys.fd < 0, "reconnect: socket closed after ECONNREFUSED");
	run_for(0.3);
	rfd = recv_bind(sockpath);
	ok(recv_none(), "reconnect: nothing before the retry");
	t0 = mono_now();
	collect(2, 4.0);
	is_int(2, (long long)got.n,
	    "reconnect: queued lines delivered after %.2f s", mono_now() - t0);
	is_str("while away 1", got_text(0), "reconnect: first line");
	is_str("while away 2", got_text(1), "reconnect: second line");
	coll_clear();
	log_info("after");
	is_str("after", line_text(recv_line(), &pri, NULL),
	    "reconnect: new lines go at once");
}

static void
test_fatal(void)
{
	int p[2], st, pri;
	char c = 0;
	pid_t pid;
	const char *t;

	if (pipe2(p, O_CLOEXEC) == -1)
		bail("pipe2: %s", strerror(errno));
	fflush(stdout);
	if ((pid = fork()) == -1)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		(void)close(p[0]);
		(void)close(rfd);
		hook_fd = p[1];
		log_set_fatal_hook(fatal_hook);
		log_hold(1);
		log_info("held before fatal");
		errno = EIO;
		fatal("giving up");
	}
	(void)close(p[1]);
	(void)waitpid(pid, &st, 0);
	want_pid = pid;
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1, "fatal: exit status 1");
	ok(read(p[0], &c, 1) == 1 && c == 'H', "fatal: the hook ran");
	(void)close(p[0]);
	t = line_text(recv_line(), &pri, NULL);
	is_str(
	    "held before fatal", t, "fatal: held lines flushed, hold or not");
	t = line_text(recv_line(), &pri, NULL);
	is_str("giving up: Input/output error", t,
	    "fatal: the reason, with errno");
	is_int(LOG_DAEMON | LOG_CRIT, pri, "fatal: LOG_CRIT");
	want_pid = 0;
	ok(!hook_ran, "fatal: hook ran in the child only");
}

int
main(void)
{
	plan_lazy();
	if (mkdtemp(tmpdir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	snprintf(sockpath, sizeof sockpath, "%s/log", tmpdir);
	setenv("FSFREEZE_AGENT_LOG_SOCKET", sockpath, 1);
	rfd = recv_bind(sockpath);
	ev_io_init(&rd_w, rd_cb, rfd, EV_READ);

	test_stderr_sync();
	test_basic();
	test_hold();
	test_fatal(); /* before the loop exists: the child holds less */
	log_start(EV_DEFAULT);
	test_overflow_held();
	test_unread();
	test_reconnect();
	log_stop();
	ok(log_sys.fd < 0, "log_stop closes the syslog socket");

	(void)close(rfd);
	(void)unlink(sockpath);
	(void)rmdir(tmpdir);
	ev_loop_destroy(EV_DEFAULT);
	return tap_done();
}
