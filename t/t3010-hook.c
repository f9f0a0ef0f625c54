/* SPDX-License-Identifier: ISC */
/*
 * The hook runner with a real loop (EV_DEFAULT) and real hooks: scripts
 * generated at run time in a mktemp directory (mode set explicitly; no
 * checked-in file modes), which record what they saw into files of their
 * own. Needs no root; as root it also checks foreign ownership.
 */

#include "config.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "../src/agent.h"
#include "tap.h"

#define MAXOUT 16

/*
 * As src/spawn.c decides: a hook by posix_spawn(), which reports a failed
 * execve() as its error, or forked, where the child exits 127.
 */
#if defined(POSIX_SPAWN_SETSID) && \
    defined(HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP) && \
    defined(HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP)
#define HOOK_BY_POSIX_SPAWN 1
#endif

static char dir[512];	       /* the test's own mktemp directory */
static char rec[PATH_MAX];     /* hooks append "name phase" here */
static char logpath[PATH_MAX]; /* our stderr, where the log goes */
static int saved_stderr = -1;
static pid_t bg_pids[8];
static size_t nbg;

struct result {
	int called;
	int inside; /* done() ran inside hook_phase_start */
	size_t ncompleted;
	size_t nfailed;
	size_t noutcomes;
	char *desc;
	struct hook_outcome o[MAXOUT];
	double secs;
};

static int in_start;
static void test_self_report(void);
static int guard_fired;

/* ------------------------------------------------------------ helpers */

static char *pathf(const char *fmt, ...) PRINTFLIKE(1, 2);

static char *
pathf(const char *fmt, ...)
{
	static char bufs[8][PATH_MAX];
	static int i;
	va_list ap;
	char *b = bufs[i++ % 8];

	va_start(ap, fmt);
	(void)vsnprintf(b, PATH_MAX, fmt, ap);
	va_end(ap);
	return b;
}

/* dir/name, kept until the end (pathf's buffers rotate). */
static char *
held(const char *name)
{
	static char *keep[64];
	static size_t n;

	if (name == NULL) {
		while (n > 0)
			free(keep[--n]);
		return NULL;
	}
	if (n == nitems(keep))
		bail("too many held paths");
	(void)xasprintf(&keep[n], "%s/%s", dir, name);
	return keep[n++];
}

static void
mkdir_mode(const char *p, mode_t mode)
{
	if (mkdir(p, mode) == -1 && errno != EEXIST)
		bail("mkdir %s: %s", p, strerror(errno));
	if (chmod(p, mode) == -1)
		bail("chmod %s: %s", p, strerror(errno));
}

static void
write_file(const char *p, mode_t mode, const char *text)
{
	FILE *f;

	if ((f = fopen(p, "w")) == NULL)
		bail("fopen %s: %s", p, strerror(errno));
	(void)fputs(text, f);
	if (fclose(f) != 0)
		bail("fclose %s: %s", p, strerror(errno));
	if (chmod(p, mode) == -1)
		bail("chmod %s: %s", p, strerror(errno));
}

/* A /bin/sh hook in d/name, mode 0755 unless said otherwise. */
static void
hook_file(const char *d, const char *name, mode_t mode, const char *body)
{
	char *text;

	(void)xasprintf(&text, "#!/bin/sh\n%s", body);
	write_file(pathf("%s/%s", d, name), mode, text);
	free(text);
}

/* The ordinary hook: records itself, fails with 3 when told to. */
static void
hook_ok(const char *d, const char *name)
{
	char *body;

	(void)xasprintf(&body,
	    "echo \"$FSFREEZE_HOOK $1${FSFREEZE_UNDO:+ undo=$FSFREEZE_UNDO}\""
	    " >>'%s'\n"
	    "echo \"hello from $FSFREEZE_HOOK\"\n"
	    "[ -e '%s/fail-'\"$FSFREEZE_HOOK\" ] && exit 3\n"
	    "exit 0\n",
	    rec, dir);
	hook_file(d, name, 0755, body);
	free(body);
}

static char *
slurp(const char *p)
{
	struct buf b;
	char chunk[4096];
	ssize_t n;
	int fd;

	buf_init(&b, 0);
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) != -1) {
		while ((n = read(fd, chunk, sizeof chunk)) > 0)
			(void)buf_add(&b, chunk, (size_t)n);
		(void)close(fd);
	}
	(void)buf_addc(&b, '\0');
	return b.data;
}

/* What the hooks recorded since the last call. */
static char *
take_rec(void)
{
	char *s = slurp(rec);

	(void)unlink(rec);
	return s;
}

static size_t
count_str(const char *hay, const char *needle)
{
	size_t n = 0;
	const char *p = hay;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	return n;
}

static char *
log_text(void)
{
	log_flush();
	return slurp(logpath);
}

/* Alive: exists and not a zombie (reaped or not, a zombie has ended). */
static int
proc_alive(pid_t pid)
{
	char *s, *p;
	int alive;

	s = slurp(pathf("/proc/%ld/stat", (long)pid));
	p = strrchr(s, ')');
	alive = p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' &&
	    p[2] != '\0';
	free(s);
	return alive;
}

static pid_t
read_pid(const char *p)
{
	char *s = slurp(p);
	long v = strtol(s, NULL, 10);

	free(s);
	return (pid_t)v;
}

static void
short_nap(void)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	(void)nanosleep(&ts, NULL);
}

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	(void)remove(p);
	return 0;
}

static void
cleanup(void)
{
	size_t i;

	(void)held(NULL);
	for (i = 0; i < nbg; i++)
		if (bg_pids[i] > 0)
			(void)kill(bg_pids[i], SIGKILL);
	if (dir[0] != '\0')
		(void)nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	if (saved_stderr != -1) {
		(void)dup2(saved_stderr, STDERR_FILENO);
		(void)close(saved_stderr);
		saved_stderr = -1;
	}
}

/* Killed by the harness: leave no directory or sleeper behind. */
static void
on_signal(int sig)
{
	cleanup();
	(void)signal(sig, SIG_DFL);
	(void)raise(sig);
}

static void
done_cb(void *arg, const struct hook_phase_result *r)
{
	struct result *res = arg;
	size_t i;

	if (in_start)
		res->inside = 1;
	res->called++;
	res->ncompleted = r->ncompleted;
	res->nfailed = r->nfailed;
	res->noutcomes = r->noutcomes;
	res->desc = r->desc != NULL ? xstrdup(r->desc) : NULL;
	for (i = 0; i < r->noutcomes && i < MAXOUT; i++) {
		res->o[i] = r->outcomes[i];
		res->o[i].name = xstrdup(r->outcomes[i].name);
		res->o[i].path = xstrdup(r->outcomes[i].path);
		res->o[i].tail = r->outcomes[i].tail != NULL
		    ? xstrdup(r->outcomes[i].tail)
		    : NULL;
	}
	ev_break(EV_DEFAULT, EVBREAK_ONE);
}

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	guard_fired = 1;
	ev_break(loop, EVBREAK_ONE);
}

static void
result_free(struct result *res)
{
	size_t i;

	for (i = 0; i < res->noutcomes && i < MAXOUT; i++) {
		free((char *)res->o[i].name);
		free((char *)res->o[i].path);
		free(res->o[i].tail);
	}
	free(res->desc);
	memset(res, 0, sizeof *res);
}

static void
run_phase(const struct hook_set *set, enum hook_phase ph, size_t count,
    const char *why, double timeout, double grace, struct result *res)
{
	struct ev_loop *loop = EV_DEFAULT;
	ev_timer guard;
	double t0;

	memset(res, 0, sizeof *res);
	t0 = mono_now();
	in_start = 1;
	if (hook_phase_start(loop, set, ph, count, why, timeout, grace, done_cb,
		res) == NULL)
		bail("hook_phase_start returned NULL");
	in_start = 0;
	ev_timer_init(&guard, guard_cb, 60., 0.);
	ev_timer_start(loop, &guard);
	while (!res->called && !guard_fired)
		(void)ev_run(loop, 0);
	ev_timer_stop(loop, &guard);
	if (guard_fired)
		bail("a %s phase did not finish within 60 s",
		    hook_phase_name(ph));
	res->secs = mono_now() - t0;
}

static int
has_skip(const struct hook_set *set, const char *path, const char *reason,
    int refused)
{
	size_t i;

	for (i = 0; i < set->nskip; i++)
		if (strcmp(set->skip[i].path, path) == 0)
			return strstr(set->skip[i].reason, reason) != NULL &&
			    set->skip[i].refused == refused;
	return 0;
}

static const char *
skip_reason(const struct hook_set *set, const char *path)
{
	size_t i;

	for (i = 0; i < set->nskip; i++)
		if (strcmp(set->skip[i].path, path) == 0)
			return set->skip[i].reason;
	return "(not skipped)";
}

static void
scan1(const char *d, struct hook_set *set)
{
	struct strlist dirs = { NULL, 0 };

	strlist_add(&dirs, d);
	if (hook_scan(&dirs, set) != 0)
		bail("hook_scan %s failed", d);
	strlist_clear(&dirs);
}

/* ------------------------------------------------------------ tests */

static void
test_strings(void)
{
	struct hook_outcome o;
	char b[128];

	is_str("freeze", hook_phase_name(HOOK_FREEZE), "phase name freeze");
	is_str("thaw", hook_phase_name(HOOK_THAW), "phase name thaw");
	memset(&o, 0, sizeof o);
	hook_outcome_str(&o, b, sizeof b);
	is_str("exited 0", b, "outcome: exited 0");
	o.status = 3 << 8;
	hook_outcome_str(&o, b, sizeof b);
	is_str("failed with status 3", b, "outcome: failed with status 3");
	o.status = SIGKILL;
	hook_outcome_str(&o, b, sizeof b);
	is_str("killed by signal 9", b, "outcome: killed by signal 9");
	o.timed_out = 1;
	o.secs = 2.04;
	hook_outcome_str(&o, b, sizeof b);
	is_str("timed out after 2.0 s", b, "outcome: timed out after 2.0 s");
	o.spawn_err = -ENOENT;
	hook_outcome_str(&o, b, sizeof b);
	is_str("could not be started: No such file or directory", b,
	    "outcome: could not be started");
}

static void
test_set_add(void)
{
	struct hook_set set;

	memset(&set, 0, sizeof set);
	hook_set_add(&set, "/a/b/20-x");
	hook_set_add(&set, "/c/10-y");
	ok(set.n == 2 && strcmp(set.v[0].name, "20-x") == 0 &&
		strcmp(set.v[0].path, "/a/b/20-x") == 0 &&
		strcmp(set.v[1].name, "10-y") == 0,
	    "hook_set_add keeps the given order and takes the base name");
	hook_set_clear(&set);
	ok(set.n == 0 && set.v == NULL && set.nskip == 0,
	    "hook_set_clear empties the set");
}

/* Two directories, order by name across both, skips, both phases. */
static void
test_order(void)
{
	struct strlist dirs = { NULL, 0 };
	struct hook_set set;
	struct result res;
	char *a = held("a.d"), *b = held("b.d");
	char *s, *lg;
	size_t i;
	int good;

	mkdir_mode(a, 0755);
	mkdir_mode(b, 0755);
	hook_ok(a, "10-a");
	hook_ok(b, "20-b");
	hook_ok(a, "30-c");
	hook_ok(b, "40-d");
	hook_ok(a, "50-shared");
	hook_ok(b, "50-shared");
	hook_ok(b, "B-upper"); /* byte order: before lower case */
	hook_ok(a, "a-lower");
	hook_ok(a, "60-x.sample");
	hook_ok(a, "61-x~");
	hook_ok(b, "62-x.dpkg-old");
	hook_ok(b, "63-x.rpmsave");
	hook_ok(a, ".hidden");
	hook_ok(a, "#64-x#");
	hook_ok(a, "65-x.ucf-dist");
	hook_file(a, "70-noexec", 0644, "exit 0\n");
	mkdir_mode(pathf("%s/71-dir", b), 0755);

	strlist_add(&dirs, a);
	strlist_add(&dirs, b);
	strlist_add(&dirs, pathf("%s/missing.d", dir));
	memset(&set, 0, sizeof set);
	is_int(0, hook_scan(&dirs, &set), "scan of two directories");
	is_int(7, (long long)set.n, "7 hooks found");
	s = xstrdup("");
	for (i = 0; i < set.n; i++) {
		char *t;

		(void)xasprintf(&t, "%s%s%s", s, i ? " " : "", set.v[i].name);
		free(s);
		s = t;
	}
	is_str("10-a 20-b 30-c 40-d 50-shared B-upper a-lower", s,
	    "ordered by name in byte order across directories");
	free(s);
	good =
	    set.n == 7 && strcmp(set.v[4].path, pathf("%s/50-shared", a)) == 0;
	ok(good, "same name in two directories: the first directory wins");
	ok(has_skip(&set, pathf("%s/50-shared", b), "shadowed by", 0),
	    "the later one is skipped as shadowed (%s)",
	    skip_reason(&set, pathf("%s/50-shared", b)));
	ok(has_skip(&set, pathf("%s/60-x.sample", a), "ignored name", 0),
	    "*.sample skipped");
	ok(has_skip(&set, pathf("%s/61-x~", a), "ignored name", 0),
	    "*~ skipped");
	ok(has_skip(&set, pathf("%s/62-x.dpkg-old", b), "ignored name", 0),
	    "*.dpkg-old skipped");
	ok(has_skip(&set, pathf("%s/63-x.rpmsave", b), "ignored name", 0),
	    "*.rpmsave skipped");
	ok(has_skip(&set, pathf("%s/65-x.ucf-dist", a), "ignored name", 0),
	    "*.ucf-* skipped");
	ok(has_skip(&set, pathf("%s/#64-x#", a), "ignored name", 0),
	    "#*# skipped");
	ok(has_skip(&set, pathf("%s/.hidden", a), "hidden", 0),
	    "dotfile skipped");
	ok(has_skip(&set, pathf("%s/70-noexec", a), "not executable", 0),
	    "non-executable file skipped: %s",
	    skip_reason(&set, pathf("%s/70-noexec", a)));
	ok(has_skip(&set, pathf("%s/71-dir", b), "not a regular file", 0),
	    "directory skipped: %s", skip_reason(&set, pathf("%s/71-dir", b)));
	ok(has_skip(&set, pathf("%s/missing.d", dir), "no such directory", 0),
	    "missing directory skipped, not refused");
	is_int(0, (long long)set.nrefused, "nothing refused");

	(void)unlink(rec);
	run_phase(&set, HOOK_FREEZE, set.n, NULL, 10, 1, &res);
	is_int(0, res.inside, "freeze: done() not called inside start");
	is_int(1, res.called, "freeze: done() called once");
	is_int(7, (long long)res.ncompleted, "freeze: 7 completed");
	is_int(0, (long long)res.nfailed, "freeze: none failed");
	is_str(NULL, res.desc, "freeze: no desc");
	s = take_rec();
	is_str("10-a freeze\n20-b freeze\n30-c freeze\n40-d freeze\n"
	       "50-shared freeze\nB-upper freeze\na-lower freeze\n",
	    s, "freeze ran ascending, once each (hooks' own record)");
	free(s);
	good = res.noutcomes == 7;
	for (i = 0; good && i < 7; i++)
		good = res.o[i].spawn_err == 0 && !res.o[i].timed_out &&
		    WIFEXITED(res.o[i].status) &&
		    WEXITSTATUS(res.o[i].status) == 0 &&
		    res.o[i].phase == HOOK_FREEZE &&
		    strcmp(res.o[i].name, set.v[i].name) == 0;
	ok(good, "freeze: 7 outcomes, exited 0, in run order");
	is_str("hello from 10-a", res.o[0].tail, "output kept as the tail");
	result_free(&res);

	run_phase(&set, HOOK_THAW, set.n, NULL, 10, 1, &res);
	is_int(7, (long long)res.ncompleted, "thaw: 7 completed");
	s = take_rec();
	is_str("a-lower thaw\nB-upper thaw\n50-shared thaw\n40-d thaw\n"
	       "30-c thaw\n20-b thaw\n10-a thaw\n",
	    s, "thaw ran descending");
	free(s);
	ok(res.noutcomes == 7 && strcmp(res.o[0].name, "a-lower") == 0,
	    "thaw outcomes in run order");
	result_free(&res);

	lg = log_text();
	if (strstr(lg, "hook '") == NULL) {
		skip(3, "the logger wrote nothing to stderr");
	} else {
		ok(strstr(lg, "hook '10-a' freeze: hello from 10-a") != NULL,
		    "hook output logged under its name and phase");
		ok(strstr(lg, "freeze: hook '10-a' exited 0 in ") != NULL,
		    "per-hook result logged");
		ok(strstr(lg, "thaw: hook 'a-lower' exited 0 in ") != NULL,
		    "per-hook thaw result logged");
	}
	free(lg);
	hook_set_clear(&set);
	strlist_clear(&dirs);
}

/* Failure at position 1, 2, 3; then the undo of exactly those. */
static void
test_failures(void)
{
	struct hook_set set;
	struct result res;
	char *f = held("fail.d");
	char want[PATH_MAX * 2], *s;
	const char *names[3] = { "10-a", "20-b", "30-c" };
	int k;

	mkdir_mode(f, 0755);
	hook_ok(f, "10-a");
	hook_ok(f, "20-b");
	hook_ok(f, "30-c");
	memset(&set, 0, sizeof set);
	scan1(f, &set);
	is_int(3, (long long)set.n, "fail set: 3 hooks");

	for (k = 1; k <= 3; k++) {
		write_file(pathf("%s/fail-%s", dir, names[k - 1]), 0644, "");
		(void)unlink(rec);
		run_phase(&set, HOOK_FREEZE, set.n, NULL, 10, 1, &res);
		is_int(k - 1, (long long)res.ncompleted,
		    "fail at %d: ncompleted %d", k, k - 1);
		is_int(1, (long long)res.nfailed, "fail at %d: nfailed 1", k);
		is_int(k, (long long)res.noutcomes,
		    "fail at %d: stopped after it", k);
		(void)snprintf(want, sizeof want,
		    "fsfreeze hook has failed with status 3: hook '%s/%s' "
		    "(freeze)",
		    f, names[k - 1]);
		is_str(want, res.desc, "fail at %d: desc", k);
		s = take_rec();
		want[0] = '\0';
		for (int i = 0; i < k; i++)
			(void)snprintf(want + strlen(want),
			    sizeof want - strlen(want), "%s freeze\n",
			    names[i]);
		is_str(want, s, "fail at %d: only the first %d ran", k, k);
		free(s);

		/* The caller's undo: thaw exactly what completed. */
		result_free(&res);
		(void)unlink(pathf("%s/fail-%s", dir, names[k - 1]));
		run_phase(
		    &set, HOOK_THAW, (size_t)k - 1, "hook failed", 10, 1, &res);
		s = take_rec();
		want[0] = '\0';
		for (int i = k - 2; i >= 0; i--)
			(void)snprintf(want + strlen(want),
			    sizeof want - strlen(want),
			    "%s thaw undo=hook failed\n", names[i]);
		is_str(want, s,
		    "undo after fail at %d: the completed ones, reversed, "
		    "with FSFREEZE_UNDO",
		    k);
		is_int(k - 1, (long long)res.ncompleted,
		    "undo after fail at %d: all completed", k);
		free(s);
		result_free(&res);
	}

	/* A thaw failure does not stop the others. */
	write_file(pathf("%s/fail-20-b", dir), 0644, "");
	run_phase(&set, HOOK_THAW, set.n, NULL, 10, 1, &res);
	s = take_rec();
	is_str("30-c thaw\n20-b thaw\n10-a thaw\n", s,
	    "thaw: a failure does not stop the rest");
	free(s);
	is_int(1, (long long)res.nfailed, "thaw: nfailed 1");
	is_int(2, (long long)res.ncompleted, "thaw: 2 exited 0");
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has failed with status 3: hook '%s/20-b' (thaw)", f);
	is_str(want, res.desc, "thaw: desc of the failure");
	result_free(&res);
	(void)unlink(pathf("%s/fail-20-b", dir));
	hook_set_clear(&set);
}

static void
test_signal_and_exec(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("sig.d");
	char want[PATH_MAX * 2];

	mkdir_mode(d, 0755);
	hook_file(d, "10-sig", 0755, "kill -9 $$\n");
	write_file(pathf("%s/20-nointerp", d), 0755,
	    "#!/nonexistent/interpreter\nexit 0\n");
	memset(&set, 0, sizeof set);
	scan1(d, &set);
	is_int(2, (long long)set.n, "signal set: 2 hooks");

	run_phase(&set, HOOK_FREEZE, 1, NULL, 10, 1, &res);
	ok(res.noutcomes == 1 && WIFSIGNALED(res.o[0].status) &&
		WTERMSIG(res.o[0].status) == SIGKILL && !res.o[0].timed_out,
	    "a hook killed by a signal");
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has terminated abnormally: hook '%s/10-sig' "
	    "(freeze) killed by signal 9",
	    d);
	is_str(want, res.desc, "signal: desc");
	result_free(&res);

	run_phase(&set, HOOK_THAW, 2, NULL, 10, 1, &res);
#ifdef HOOK_BY_POSIX_SPAWN
	ok(res.noutcomes == 2 && res.o[0].spawn_err == -ENOENT,
	    "missing interpreter: could not be started, ENOENT (%d)",
	    res.noutcomes ? res.o[0].spawn_err : 0);
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has failed: hook '%s/20-nointerp' (thaw) could not "
	    "be started: %s",
	    d, strerror(ENOENT));
#else
	ok(res.noutcomes == 2 && WIFEXITED(res.o[0].status) &&
		WEXITSTATUS(res.o[0].status) == 127,
	    "missing interpreter: exit 127");
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has failed with status 127: hook '%s/20-nointerp' "
	    "(thaw)",
	    d);
#endif
	is_str(want, res.desc, "missing interpreter: desc");
	is_int(2, (long long)res.nfailed, "thaw: both failures counted");
	result_free(&res);
	hook_set_clear(&set);
}

static void
test_timeouts(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("slow.d");
	char *pidf = held("slow.pid");
	char body[PATH_MAX + 256], want[PATH_MAX * 2], *lg;
	pid_t bg;
	int i, dead;

	mkdir_mode(d, 0755);
	/* Ignores SIGTERM, as does its background child. */
	(void)snprintf(body, sizeof body,
	    "trap '' TERM\n"
	    "sleep 30 &\n"
	    "echo $! >'%s'\n"
	    "echo waiting\n"
	    "wait\n"
	    "exit 0\n",
	    pidf);
	hook_file(d, "10-ignore-term", 0755, body);
	memset(&set, 0, sizeof set);
	scan1(d, &set);

	run_phase(&set, HOOK_FREEZE, 1, NULL, 0.3, 0.4, &res);
	ok(res.noutcomes == 1 && res.o[0].timed_out, "timed out");
	ok(WIFSIGNALED(res.o[0].status) && WTERMSIG(res.o[0].status) == SIGKILL,
	    "it ignored SIGTERM and died of SIGKILL");
	ok(res.o[0].secs >= 0.3 + 0.4 - 0.02,
	    "SIGKILL came only after timeout + grace (%.2f s)", res.o[0].secs);
	ok(res.o[0].secs < 10, "and the phase stayed bounded (%.2f s)",
	    res.secs);
	is_int(0, (long long)res.ncompleted, "timed out: 0 completed");
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has timed out: hook '%s/10-ignore-term' (freeze) "
	    "after 0.3 s",
	    d);
	is_str(want, res.desc, "timed out: desc");
	is_str("waiting", res.o[0].tail, "output before the timeout kept");
	bg = read_pid(pidf);
	dead = 0;
	for (i = 0; bg > 0 && i < 200 && !dead; i++) {
		if (!(dead = !proc_alive(bg)))
			short_nap();
	}
	ok(bg > 0 && dead, "the whole process group was killed (pid %ld)",
	    (long)bg);
	if (bg > 0 && !dead && nbg < nitems(bg_pids))
		bg_pids[nbg++] = bg;
	result_free(&res);
	lg = log_text();
	if (strstr(lg, "hook '") == NULL)
		skip(1, "the logger wrote nothing to stderr");
	else
		ok(strstr(lg,
		       "freeze: hook '10-ignore-term' timed out after "
		       "0.3 s, killed by signal 9 in") != NULL,
		    "timeout logged");
	free(lg);
	hook_set_clear(&set);

	/* Honours SIGTERM: ends well before the grace. */
	d = held("slow2.d");
	mkdir_mode(d, 0755);
	hook_file(d, "10-past-timeout", 0755, "sleep 30\n");
	hook_file(
	    d, "20-term-exit0", 0755, "trap 'exit 0' TERM\nsleep 30 &\nwait\n");
	scan1(d, &set);
	run_phase(&set, HOOK_THAW, 2, NULL, 0.3, 20, &res);
	ok(res.noutcomes == 2 && res.o[1].timed_out &&
		WIFSIGNALED(res.o[1].status) &&
		WTERMSIG(res.o[1].status) == SIGTERM,
	    "a hook past its timeout dies of SIGTERM");
	ok(res.o[1].secs < 10, "before the grace ran out (%.2f s)",
	    res.o[1].secs);
	ok(res.o[0].timed_out && WIFEXITED(res.o[0].status) &&
		WEXITSTATUS(res.o[0].status) == 0,
	    "a hook exiting 0 on SIGTERM still timed out");
	is_int(2, (long long)res.nfailed, "both count as failures");
	result_free(&res);
	hook_set_clear(&set);
}

/* The MySQL pattern: a background process keeps the hook's stdout. */
static void
test_background_holder(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("bg.d");
	char *pidf = held("bg.pid");
	char body[PATH_MAX + 256];
	pid_t bg;

	mkdir_mode(d, 0755);
	(void)snprintf(body, sizeof body,
	    "sleep 30 &\n"
	    "echo $! >'%s'\n"
	    "echo holder started\n"
	    "exit 0\n",
	    pidf);
	hook_file(d, "10-holder", 0755, body);
	memset(&set, 0, sizeof set);
	scan1(d, &set);
	run_phase(&set, HOOK_FREEZE, 1, NULL, 20, 1, &res);
	bg = read_pid(pidf);
	if (bg > 0 && nbg < nitems(bg_pids))
		bg_pids[nbg++] = bg;
	is_int(1, (long long)res.ncompleted, "holder: completed");
	ok(res.noutcomes == 1 && !res.o[0].timed_out &&
		WIFEXITED(res.o[0].status) && WEXITSTATUS(res.o[0].status) == 0,
	    "holder: exited 0, not timed out");
	ok(res.secs < 5, "holder: done at its exit, not at EOF (%.2f s)",
	    res.secs);
	is_str("holder started", res.o[0].tail, "holder: output read");
	ok(bg > 0 && proc_alive(bg),
	    "holder: its background process was not signalled (pid %ld)",
	    (long)bg);
	result_free(&res);
	if (bg > 0)
		(void)kill(bg, SIGKILL);
	hook_set_clear(&set);
}

static void
test_refused(void)
{
	struct strlist dirs = { NULL, 0 };
	struct hook_set set;
	char *r1 = held("refuse.d"), *r2 = held("ww.d");
	char *r3 = held("gw.d");
	int root = geteuid() == 0;

	mkdir_mode(r1, 0755);
	mkdir_mode(r2, 0777);
	mkdir_mode(r3, 0775);
	hook_ok(r1, "10-ok");
	hook_ok(r1, "20-group-writable");
	(void)chmod(pathf("%s/20-group-writable", r1), 0775);
	hook_ok(r1, "21-world-writable");
	(void)chmod(pathf("%s/21-world-writable", r1), 0757);
	hook_ok(r1, "30-foreign");
	if (root && chown(pathf("%s/30-foreign", r1), 65534, 65534) == -1)
		bail("chown: %s", strerror(errno));
	hook_ok(r2, "40-in-ww");
	hook_ok(r3, "50-in-gw");

	strlist_add(&dirs, r1);
	strlist_add(&dirs, r2);
	strlist_add(&dirs, r3);
	strlist_add(&dirs, "relative/hooks.d");
	memset(&set, 0, sizeof set);
	is_int(0, hook_scan(&dirs, &set), "scan with unsafe entries");
	ok(set.n >= 1 && strcmp(set.v[0].name, "10-ok") == 0,
	    "the safe hook is still listed");
	ok(has_skip(
	       &set, pathf("%s/20-group-writable", r1), "writable by group", 1),
	    "group-writable hook refused: %s",
	    skip_reason(&set, pathf("%s/20-group-writable", r1)));
	ok(has_skip(&set, pathf("%s/21-world-writable", r1),
	       "writable by others", 1),
	    "world-writable hook refused");
	if (root) {
		ok(has_skip(&set, pathf("%s/30-foreign", r1),
		       "owned by uid 65534", 1),
		    "hook owned by uid 65534 refused: %s",
		    skip_reason(&set, pathf("%s/30-foreign", r1)));
		is_int(1, (long long)set.n, "only the safe hook runs");
	} else {
		skip(1, "not root: cannot chown to another uid");
		is_int(2, (long long)set.n, "only the safe hooks run");
	}
	ok(has_skip(&set, r2, "writable by others", 1),
	    "world-writable directory refused: %s", skip_reason(&set, r2));
	ok(has_skip(&set, r3, "writable by group", 1),
	    "group-writable directory refused");
	ok(has_skip(&set, "relative/hooks.d", "not absolute", 1),
	    "relative directory refused");
	is_int(root ? 6 : 5, (long long)set.nrefused, "nrefused counts them");
	hook_set_clear(&set);
	strlist_clear(&dirs);
}

static void
test_symlinks(void)
{
	struct strlist dirs = { NULL, 0 };
	struct hook_set set;
	char *l = held("links.d"), *t = held("target.d");
	char *w = held("wtarget.d"), *a = held("a.d");
	char *s;
	struct result res;

	mkdir_mode(l, 0755);
	mkdir_mode(t, 0755);
	mkdir_mode(w, 0777);
	hook_ok(t, "real-hook");
	hook_ok(w, "unsafe-hook");
	(void)chmod(w, 0777);
	if (symlink(pathf("%s/real-hook", t), pathf("%s/05-link", l)) == -1 ||
	    symlink("/dev/null", pathf("%s/30-c", l)) == -1 ||
	    symlink(pathf("%s/nothing", t), pathf("%s/07-dangling", l)) == -1 ||
	    symlink(pathf("%s/unsafe-hook", w), pathf("%s/08-unsafe", l)) == -1)
		bail("symlink: %s", strerror(errno));

	strlist_add(&dirs, l);
	strlist_add(&dirs, a); /* from test_order: 10-a ... 30-c ... */
	memset(&set, 0, sizeof set);
	(void)hook_scan(&dirs, &set);
	ok(set.n >= 1 && strcmp(set.v[0].name, "05-link") == 0 &&
		strcmp(set.v[0].path, pathf("%s/05-link", l)) == 0,
	    "a symlink to a safe hook is followed, named as the link");
	ok(has_skip(&set, pathf("%s/30-c", l), "masked", 0),
	    "a symlink to /dev/null masks: %s",
	    skip_reason(&set, pathf("%s/30-c", l)));
	ok(has_skip(&set, pathf("%s/30-c", a), "shadowed by", 0),
	    "the masked name in the later directory is skipped");
	ok(has_skip(&set, pathf("%s/07-dangling", l), "dangling", 0),
	    "a dangling symlink is skipped");
	ok(has_skip(&set, pathf("%s/08-unsafe", l), "writable by others", 1),
	    "a symlink into a world-writable directory is refused: %s",
	    skip_reason(&set, pathf("%s/08-unsafe", l)));
	(void)unlink(rec);
	run_phase(&set, HOOK_FREEZE, 1, NULL, 10, 1, &res);
	s = take_rec();
	is_str("05-link freeze\n", s, "the linked hook runs as its link name");
	free(s);
	result_free(&res);
	hook_set_clear(&set);
	strlist_clear(&dirs);
}

/*
 * Ignore (on) or restore (off) the two real-time signals glibc keeps for
 * itself, 32 and 33, the way GNU make runs its recipes: SIG_IGN on them
 * survives execve(), but sigaction() refuses them, so the raw system call
 * (the handler is the first member of the kernel's sigaction except on
 * MIPS). Without this the hooks' SigIgn checks could pass by luck outside
 * make. Returns whether both are ignored now.
 */
static int
reserved_signals_ignore(int on)
{
#if defined(SYS_rt_sigaction) && !defined(__mips__)
	static unsigned long saved[2][8];
	static int have[2];
	unsigned long ign[8];
	size_t ssz = (size_t)(NSIG + 6) / 8;
	int i, sig;

	if (SIGRTMIN <= 33) /* not reserved: nothing to test */
		return 0;
	for (i = 0; i < 2; i++) {
		sig = 32 + i;
		if (on) {
			memset(ign, 0, sizeof ign);
			ign[0] = (unsigned long)SIG_IGN;
			have[i] = syscall(SYS_rt_sigaction, sig, NULL, saved[i],
				      ssz) == 0;
			if (syscall(SYS_rt_sigaction, sig, ign, NULL, ssz) != 0)
				return 0;
		} else if (have[i]) {
			(void)syscall(
			    SYS_rt_sigaction, sig, saved[i], NULL, ssz);
			have[i] = 0;
		}
	}
	return on;
#else
	(void)on;
	return 0;
#endif
}

static int
env_wanted(const char *line, const char *want)
{
	return strcmp(line, want) == 0;
}

/* What a hook starts with: fds, signals, environment, argv, cwd. */
static void
test_report_env(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("env.d"), *leak = held("leak");
	char *script, *line, *save = NULL, *copy;
	char pipe1[64] = "", pipe2[64] = "";
	const char *target;
	sigset_t blk, old;
	int leakfd, bad_fd = 0, nfd = 0, fd0 = 0, nenv = 0, bad_env = 0;
	int sigblk = -1, sigign = -1, phase, savedin, infd;
	char undo_seen = 0, argv_ok = 0, cwd_ok = 0;

	mkdir_mode(d, 0755);
	hook_file(d, "10-report-env", 0755,
	    "echo \"argv $0 $1\"\n"
	    "ls -l /proc/$$/fd/\n"
	    "while read k v; do case $k in SigIgn:) echo \"$k $v\";;"
	    " esac; done </proc/$$/status\n"
	    "env | sed 's/^/env /'\n"
	    "echo \"cwd $PWD\"\n");
	script = xstrdup(pathf("%s/10-report-env", d));
	memset(&set, 0, sizeof set);
	scan1(d, &set);

	/* What the child must not inherit: an fd, ignored and blocked signals.
	 */
	if ((leakfd = open(leak, O_WRONLY | O_CREAT, 0600)) == -1)
		bail("open %s: %s", leak, strerror(errno));
	(void)signal(SIGUSR1, SIG_IGN);
	(void)signal(SIGPIPE, SIG_IGN);
	if (!reserved_signals_ignore(1))
		diag("could not ignore signals 32 and 33 here");
	(void)sigemptyset(&blk);
	(void)sigaddset(&blk, SIGUSR2);
	(void)sigaddset(&blk, SIGHUP);
	(void)sigprocmask(SIG_BLOCK, &blk, &old);
	/* And a stdin that is not /dev/null (make's and ours may be). */
	savedin = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	if ((infd = open(leak, O_RDONLY | O_CLOEXEC)) == -1 ||
	    dup2(infd, STDIN_FILENO) == -1)
		bail("stdin from %s: %s", leak, strerror(errno));
	if (infd != STDIN_FILENO)
		(void)close(infd);

	for (phase = 0; phase < 2; phase++) {
		run_phase(&set, phase ? HOOK_THAW : HOOK_FREEZE, 1,
		    phase ? "hook '20-x' failed" : NULL, 10, 1, &res);
		if (res.noutcomes != 1 || res.o[0].tail == NULL)
			bail("report-env gave no output");
		copy = xstrdup(res.o[0].tail);
		nfd = fd0 = bad_fd = nenv = bad_env = 0;
		undo_seen = argv_ok = cwd_ok = 0;
		pipe1[0] = pipe2[0] = '\0';
		for (line = strtok_r(copy, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			char *arrow = strstr(line, " -> "), *sp;
			int fd;

			if (arrow != NULL) {
				*arrow = '\0';
				target = arrow + 4;
				sp = strrchr(line, ' ');
				fd = sp != NULL ? atoi(sp + 1) : -1;
				nfd++;
				if (fd == 0)
					fd0 = strcmp(target, "/dev/null") == 0;
				else if (fd == 1)
					(void)snprintf(
					    pipe1, sizeof pipe1, "%s", target);
				else if (fd == 2)
					(void)snprintf(
					    pipe2, sizeof pipe2, "%s", target);
				else if (strcmp(target, script) != 0) {
					bad_fd++;
					diag("unexpected fd %d -> %s", fd,
					    target);
				}
			} else if (strncmp(line, "SigBlk: ", 8) == 0) {
				sigblk = strtoull(line + 8, NULL, 16) != 0;
			} else if (strncmp(line, "SigIgn: ", 8) == 0) {
				sigign = strtoull(line + 8, NULL, 16) != 0;
			} else if (strncmp(line, "env ", 4) == 0) {
				const char *e = line + 4;

				/* The shell's own additions. */
				if (strncmp(e, "PWD=", 4) == 0 ||
				    strncmp(e, "OLDPWD=", 7) == 0 ||
				    strncmp(e, "SHLVL=", 6) == 0 ||
				    strncmp(e, "_=", 2) == 0)
					continue;
				nenv++;
				if (env_wanted(e,
					"PATH=/usr/local/sbin:/usr/local/bin:"
					"/usr/sbin:/usr/bin:/sbin:/bin") ||
				    env_wanted(e, "LANG=C") ||
				    env_wanted(e,
					phase ? "FSFREEZE_PHASE=thaw"
					      : "FSFREEZE_PHASE=freeze") ||
				    env_wanted(
					e, "FSFREEZE_HOOK=10-report-env"))
					continue;
				if (phase &&
				    env_wanted(e,
					"FSFREEZE_UNDO=hook '20-x' failed")) {
					undo_seen = 1;
					continue;
				}
				bad_env++;
				diag("unexpected environment: %s", e);
			} else if (strncmp(line, "argv ", 5) == 0) {
				char want[PATH_MAX + 16];

				(void)snprintf(want, sizeof want, "argv %s %s",
				    script, phase ? "thaw" : "freeze");
				argv_ok = strcmp(line, want) == 0;
			} else if (strcmp(line, "cwd /") == 0) {
				cwd_ok = 1;
			}
		}
		free(copy);
		ok(fd0, "%s: stdin is /dev/null", phase ? "thaw" : "freeze");
		ok(pipe1[0] != '\0' && strncmp(pipe1, "pipe:", 5) == 0 &&
			strcmp(pipe1, pipe2) == 0,
		    "%s: stdout and stderr are one pipe (%s, %s)",
		    phase ? "thaw" : "freeze", pipe1, pipe2);
		ok(nfd >= 3 && bad_fd == 0,
		    "%s: no inherited descriptor (only 0-2 and the shell's "
		    "script)",
		    phase ? "thaw" : "freeze");
		/*
		 * Not SigBlk: dash empties its mask at start-up, so the
		 * shell cannot show what it was given; test_self_report does.
		 */
		(void)sigblk;
		is_int(0, sigign, "%s: SigIgn is empty",
		    phase ? "thaw" : "freeze");
		ok(bad_env == 0 && nenv == 4 + phase && undo_seen == phase,
		    "%s: environment is exactly PATH, LANG, FSFREEZE_*%s",
		    phase ? "thaw" : "freeze",
		    phase ? " with FSFREEZE_UNDO" : "");
		ok(argv_ok, "%s: argv is [path, phase]",
		    phase ? "thaw" : "freeze");
		ok(cwd_ok, "%s: working directory /",
		    phase ? "thaw" : "freeze");
		result_free(&res);
	}
	/* The same with no shell in between, in the same hostile state. */
	test_self_report();
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	(void)signal(SIGUSR1, SIG_DFL);
	(void)reserved_signals_ignore(0);
	if (savedin != -1) {
		(void)dup2(savedin, STDIN_FILENO);
		(void)close(savedin);
	} else
		(void)close(STDIN_FILENO);
	(void)close(leakfd);
	free(script);
	hook_set_clear(&set);
}

static void
test_output_cap(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("chatty.d"), *lg;
	size_t n;

	mkdir_mode(d, 0755);
	hook_file(d, "10-chatty", 0755,
	    "yes 'output line of a chatty hook' | head -c 1048576\n"
	    "echo\n"
	    "printf 'esc\\033[31m\\n'\n"
	    "echo LAST-LINE\n");
	memset(&set, 0, sizeof set);
	scan1(d, &set);
	run_phase(&set, HOOK_FREEZE, 1, NULL, 20, 1, &res);
	ok(res.noutcomes == 1 && WIFEXITED(res.o[0].status) &&
		WEXITSTATUS(res.o[0].status) == 0 && !res.o[0].timed_out,
	    "1 MiB of output: the hook never blocked and exited 0");
	ok(res.o[0].tail != NULL && strlen(res.o[0].tail) <= 1024,
	    "tail at most 1 KiB (%zu)",
	    res.o[0].tail ? strlen(res.o[0].tail) : 0);
	n = res.o[0].tail ? strlen(res.o[0].tail) : 0;
	ok(n >= 9 && strcmp(res.o[0].tail + n - 9, "LAST-LINE") == 0,
	    "tail ends with the last line");
	ok(res.o[0].tail != NULL && strstr(res.o[0].tail, "esc?[31m") != NULL,
	    "control characters replaced");
	result_free(&res);
	lg = log_text();
	if (strstr(lg, "hook '") == NULL) {
		skip(2, "the logger wrote nothing to stderr");
	} else {
		n = count_str(lg, "hook '10-chatty' freeze: output line");
		ok(n >= 100 && n <= 200, "at most 200 lines logged (%zu)", n);
		is_int(1,
		    (long long)count_str(
			lg, "hook '10-chatty' freeze: output truncated"),
		    "\"output truncated\" said once");
	}
	free(lg);
	hook_set_clear(&set);
}

static int ticks;

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	ticks++;
}

static void
test_liveness(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("live.d");
	ev_timer tick;

	mkdir_mode(d, 0755);
	hook_file(d, "10-sleep", 0755, "sleep 1\n");
	memset(&set, 0, sizeof set);
	scan1(d, &set);
	ev_timer_init(&tick, tick_cb, 0.1, 0.1);
	ev_timer_start(EV_DEFAULT, &tick);
	ticks = 0;
	run_phase(&set, HOOK_FREEZE, 1, NULL, 10, 1, &res);
	ev_timer_stop(EV_DEFAULT, &tick);
	ok(res.o[0].secs >= 0.9, "the hook slept (%.2f s)", res.o[0].secs);
	ok(ticks >= 5, "a 100 ms timer kept firing meanwhile (%d ticks)",
	    ticks);
	result_free(&res);
	hook_set_clear(&set);
}

/* Never finish inside start: no hooks, and a spawn that cannot start. */
static void
test_deferred(void)
{
	struct hook_set set;
	struct result res;
	struct rlimit rl, low;
	char *d = held("defer.d");
	char want[PATH_MAX * 2];
	int fd;

	memset(&set, 0, sizeof set);
	run_phase(&set, HOOK_FREEZE, 0, NULL, 10, 1, &res);
	ok(res.called == 1 && res.inside == 0,
	    "no hooks: done() later, not inside");
	ok(res.ncompleted == 0 && res.nfailed == 0 && res.noutcomes == 0 &&
		res.desc == NULL,
	    "no hooks: an empty result");
	result_free(&res);

	mkdir_mode(d, 0755);
	hook_ok(d, "10-a");
	scan1(d, &set);
	/* No descriptor left: pipe2()/open() in spawn_hook fail. */
	if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1 ||
	    getrlimit(RLIMIT_NOFILE, &rl) == -1)
		bail("open/getrlimit: %s", strerror(errno));
	(void)close(fd);
	low = rl;
	low.rlim_cur = (rlim_t)fd;
	if (setrlimit(RLIMIT_NOFILE, &low) == -1)
		bail("setrlimit: %s", strerror(errno));
	run_phase(&set, HOOK_FREEZE, 1, NULL, 10, 1, &res);
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	ok(res.called == 1 && res.inside == 0,
	    "spawn failure: done() later, not inside");
	ok(res.noutcomes == 1 && res.o[0].spawn_err == -EMFILE,
	    "spawn failure recorded as -EMFILE (%d)",
	    res.noutcomes ? res.o[0].spawn_err : 0);
	(void)snprintf(want, sizeof want,
	    "fsfreeze hook has failed: hook '%s/10-a' (freeze) could not be "
	    "started: %s",
	    d, strerror(EMFILE));
	is_str(want, res.desc, "spawn failure: desc");
	is_int(1, (long long)res.nfailed, "spawn failure counts as failed");
	result_free(&res);
	hook_set_clear(&set);
}

static void
test_speed(void)
{
	struct hook_set set;
	struct result res;
	char *d = held("speed.d");
	double t0, best = 1e9, sum = 0, dt;
	int i, cycles = 20, good = 1;

	mkdir_mode(d, 0755);
	for (i = 0; i < 10; i++)
		hook_file(d, pathf("%02d-true", i), 0755, "exit 0\n");
	memset(&set, 0, sizeof set);
	scan1(d, &set);
	for (i = 0; i < cycles; i++) {
		t0 = mono_now();
		run_phase(&set, HOOK_FREEZE, set.n, NULL, 10, 1, &res);
		good = good && res.ncompleted == 10;
		result_free(&res);
		run_phase(&set, HOOK_THAW, set.n, NULL, 10, 1, &res);
		good = good && res.ncompleted == 10;
		result_free(&res);
		dt = mono_now() - t0;
		sum += dt;
		if (dt < best)
			best = dt;
	}
	ok(good, "10 exit-0 hooks, %d freeze+thaw cycles", cycles);
	diag("10 'exit 0' hooks freeze+thaw: mean %.1f ms, best %.1f ms per "
	     "cycle (qemu-ga's stock dispatcher: ~110 ms)",
	    sum / cycles * 1000, best * 1000);
	hook_set_clear(&set);
}

/* In a worker: mask empty, the stop signals ignored, nothing else. */
static int
worker_fn(void *arg)
{
	char buf[4096], *p;
	unsigned long long blk = ~0ULL, ign = 0, want;
	ssize_t n;
	int fd;

	if ((fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)) == -1)
		return 1;
	n = read(fd, buf, sizeof buf - 1);
	(void)close(fd);
	buf[n > 0 ? n : 0] = '\0';
	if ((p = strstr(buf, "SigBlk:")) != NULL)
		blk = strtoull(p + 7, NULL, 16);
	if ((p = strstr(buf, "SigIgn:")) != NULL)
		ign = strtoull(p + 7, NULL, 16);
	want = 1ULL << (SIGTERM - 1) | 1ULL << (SIGINT - 1) |
	    1ULL << (SIGHUP - 1) | 1ULL << (SIGQUIT - 1);
	/* glibc's own 32 and 33 keep whatever we inherited. */
	ign &= ~(3ULL << 31);
	if (blk != 0)
		return 2;
	if (ign != want)
		return 3;
	return *(int *)arg;
}

static int worker_status[2];
static int workers_left;

static void
worker_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)revents;
	ev_child_stop(loop, w);
	worker_status[w->data == NULL ? 0 : 1] = w->rstatus;
	if (--workers_left == 0)
		ev_break(loop, EVBREAK_ONE);
}

static void
test_worker(void)
{
	struct ev_loop *loop = EV_DEFAULT;
	ev_child cw[2];
	ev_timer guard;
	int ret[2] = { 42, 0x1ff }, i;
	pid_t pid;

	/* From a hostile parent: blocked and ignored signals. */
	sigset_t blk, old;

	(void)sigemptyset(&blk);
	(void)sigaddset(&blk, SIGUSR2);
	(void)sigprocmask(SIG_BLOCK, &blk, &old);
	(void)signal(SIGUSR1, SIG_IGN);
	workers_left = 2;
	for (i = 0; i < 2; i++) {
		if ((pid = spawn_worker(worker_fn, &ret[i])) < 0)
			bail("spawn_worker: %s", strerror(-pid));
		ev_child_init(&cw[i], worker_cb, pid, 0);
		cw[i].data = i == 0 ? NULL : &cw[i];
		ev_child_start(loop, &cw[i]);
	}
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	(void)signal(SIGUSR1, SIG_DFL);
	guard_fired = 0;
	ev_timer_init(&guard, guard_cb, 30., 0.);
	ev_timer_start(loop, &guard);
	while (workers_left > 0 && !guard_fired)
		(void)ev_run(loop, 0);
	ev_timer_stop(loop, &guard);
	if (guard_fired)
		bail("workers did not exit");
	ok(WIFEXITED(worker_status[0]) && WEXITSTATUS(worker_status[0]) == 42,
	    "worker: fn's value is the exit status; mask empty, "
	    "SIGTERM/INT/HUP/QUIT ignored, the rest default (status %#x)",
	    (unsigned int)worker_status[0]);
	ok(WIFEXITED(worker_status[1]) && WEXITSTATUS(worker_status[1]) == 0xff,
	    "worker: the status is fn's value & 0xff");
}

/*
 * This program as the hook itself: no shell in between, so what it prints
 * is exactly what spawn_hook gave it (a shell clears its signal mask and
 * opens its script). Lines: argv, each fd with its target, SigBlk and
 * SigIgn, each environment string, the working directory, then its pid,
 * session and process group.
 */
static int
report_self(char **argv)
{
	struct dirent *de;
	char buf[4096], target[PATH_MAX], *line, *save = NULL;
	extern char **environ;
	char **e;
	ssize_t n;
	DIR *dp;
	int fd;

	printf("argv %s %s\n", argv[0], argv[1]);
	if ((dp = opendir("/proc/self/fd")) != NULL) {
		while ((de = readdir(dp)) != NULL) {
			if (de->d_name[0] == '.' ||
			    atoi(de->d_name) == dirfd(dp))
				continue;
			n = readlinkat(
			    dirfd(dp), de->d_name, target, sizeof target - 1);
			target[n > 0 ? n : 0] = '\0';
			printf("fd %s -> %s\n", de->d_name, target);
		}
		(void)closedir(dp);
	}
	if ((fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = '\0';
		(void)close(fd);
		for (line = strtok_r(buf, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save))
			if (strncmp(line, "SigBlk:", 7) == 0 ||
			    strncmp(line, "SigIgn:", 7) == 0)
				printf("%s\n", line);
	}
	for (e = environ; *e != NULL; e++)
		printf("env %s\n", *e);
	printf("cwd %s\n", getcwd(buf, sizeof buf) != NULL ? buf : "?");
	printf("ids %ld %ld %ld\n", (long)getpid(), (long)getsid(0),
	    (long)getpgrp());
	return fflush(stdout) == 0 ? 0 : 1;
}

static void
test_self_report(void)
{
	struct hook_set set;
	struct result res;
	char exe[PATH_MAX], want[PATH_MAX + 64], *copy, *line, *save;
	const char *ph;
	int phase, nfd, fd0, bad, blk, ign, nenv, badenv, argv_ok, cwd_ok;
	long pid, sid, pgid;
	char p1[64], p2[64];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
		bail("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = '\0';
	memset(&set, 0, sizeof set);
	hook_set_add(&set, exe);
	for (phase = 0; phase < 2; phase++) {
		ph = phase ? "thaw" : "freeze";
		run_phase(&set, phase ? HOOK_THAW : HOOK_FREEZE, 1,
		    phase ? "fs freeze failed" : NULL, 10, 1, &res);
		if (res.noutcomes != 1 || res.o[0].tail == NULL)
			bail("the self-report hook gave no output");
		ok(WIFEXITED(res.o[0].status) &&
			WEXITSTATUS(res.o[0].status) == 0,
		    "self-report %s: exited 0", ph);
		copy = xstrdup(res.o[0].tail);
		nfd = fd0 = bad = nenv = badenv = argv_ok = cwd_ok = 0;
		blk = ign = -1;
		pid = sid = pgid = -1;
		p1[0] = p2[0] = '\0';
		save = NULL;
		for (line = strtok_r(copy, "\n", &save); line != NULL;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "fd ", 3) == 0) {
				char *t = strstr(line, " -> ");
				int fd = atoi(line + 3);

				if (t == NULL)
					continue;
				t += 4;
				nfd++;
				if (fd == 0)
					fd0 = strcmp(t, "/dev/null") == 0;
				else if (fd == 1)
					(void)snprintf(p1, sizeof p1, "%s", t);
				else if (fd == 2)
					(void)snprintf(p2, sizeof p2, "%s", t);
				else {
					bad++;
					diag("inherited fd %d -> %s", fd, t);
				}
			} else if (strncmp(line, "SigBlk:", 7) == 0) {
				blk = strtoull(line + 7, NULL, 16) != 0;
			} else if (strncmp(line, "SigIgn:", 7) == 0) {
				ign = strtoull(line + 7, NULL, 16) != 0;
			} else if (strncmp(line, "env ", 4) == 0) {
				const char *v = line + 4;

				nenv++;
				(void)snprintf(
				    want, sizeof want, "FSFREEZE_PHASE=%s", ph);
				if (strcmp(v,
					"PATH=/usr/local/sbin:/usr/local/"
					"bin:/usr/sbin:/usr/bin:/sbin:"
					"/bin") == 0 ||
				    strcmp(v, "LANG=C") == 0 ||
				    strcmp(v, want) == 0 ||
				    strcmp(v, "FSFREEZE_HOOK=t3010-hook") ==
					0 ||
				    (phase &&
					strcmp(v,
					    "FSFREEZE_UNDO=fs freeze failed") ==
					    0))
					continue;
				badenv++;
				diag("unexpected environment: %s", v);
			} else if (strncmp(line, "argv ", 5) == 0) {
				(void)snprintf(
				    want, sizeof want, "argv %s %s", exe, ph);
				argv_ok = strcmp(line, want) == 0;
			} else if (strcmp(line, "cwd /") == 0) {
				cwd_ok = 1;
			} else if (strncmp(line, "ids ", 4) == 0 &&
			    sscanf(line + 4, "%ld %ld %ld", &pid, &sid,
				&pgid) != 3) {
				pid = sid = pgid = -1;
			}
		}
		free(copy);
		ok(nfd == 3 && bad == 0 && fd0,
		    "self-report %s: exactly fds 0, 1, 2; stdin /dev/null", ph);
		ok(p1[0] != '\0' && strncmp(p1, "pipe:", 5) == 0 &&
			strcmp(p1, p2) == 0,
		    "self-report %s: stdout and stderr one pipe", ph);
		is_int(0, blk, "self-report %s: SigBlk empty", ph);
		is_int(0, ign, "self-report %s: SigIgn empty", ph);
		ok(badenv == 0 && nenv == 4 + phase,
		    "self-report %s: environment exactly PATH, LANG, "
		    "FSFREEZE_PHASE, FSFREEZE_HOOK%s",
		    ph, phase ? ", FSFREEZE_UNDO" : "");
		ok(argv_ok, "self-report %s: argv [path, %s]", ph, ph);
		ok(cwd_ok, "self-report %s: cwd /", ph);
		ok(pid > 0 && sid == pid && pgid == pid,
		    "self-report %s: its own session and process group (pid "
		    "%ld, sid %ld, pgid %ld)",
		    ph, pid, sid, pgid);
		result_free(&res);
	}
	hook_set_clear(&set);
}

int
main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	/* Run by test_self_report as a hook. */
	if (argc == 2 && getenv("FSFREEZE_HOOK") != NULL &&
	    (strcmp(argv[1], "freeze") == 0 || strcmp(argv[1], "thaw") == 0))
		return report_self(argv);

	plan_lazy();
	if (ev_default_loop(0) == NULL)
		bail("no libev default loop");
	(void)snprintf(dir, sizeof dir, "%s/t3010.XXXXXX",
	    tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	/* The hooks' checks want every parent safe; mkdtemp gives 0700. */
	(void)chmod(dir, 0755);
	/* Not /, so that the hooks' "cwd /" checks can fail. */
	if (chdir(dir) == -1)
		bail("chdir %s: %s", dir, strerror(errno));
	(void)snprintf(rec, sizeof rec, "%s/record", dir);
	(void)snprintf(logpath, sizeof logpath, "%s/log", dir);
	(void)atexit(cleanup);
	(void)signal(SIGTERM, on_signal);
	(void)signal(SIGINT, on_signal);
	(void)signal(SIGALRM, on_signal);

	/* Capture the log: stderr into a file of ours. */
	if ((fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		 0600)) == -1 ||
	    (saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1)
		bail("log capture: %s", strerror(errno));
	(void)close(fd);
	log_init(LOG_TO_STDERR, LOG_DAEMON, LOG_INFO);
	log_start(EV_DEFAULT);

	test_strings();
	test_set_add();
	test_order();
	test_failures();
	test_signal_and_exec();
	test_timeouts();
	test_background_holder();
	test_refused();
	test_symlinks();
	test_report_env();
	test_output_cap();
	test_liveness();
	test_deferred();
	test_worker();
	test_speed();

	log_stop();
	return tap_done();
}
