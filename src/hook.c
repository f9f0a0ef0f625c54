/* SPDX-License-Identifier: ISC */
/*
 * Hooks: discovery with safety checks and order, then one phase at a time,
 * each hook a child with its own exit, output and deadline watchers.
 */

#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "agent.h"

#define HOOK_MAX 256		    /* hooks in one set */
#define HOOK_LOG_BYTES (64 * 1024)  /* output logged per hook */
#define HOOK_LOG_LINES 200	    /* lines logged per hook */
#define HOOK_LINE_MAX 1000	    /* longer lines are logged in pieces */
#define HOOK_TAIL_MAX 1024	    /* outcome->tail */
#define HOOK_READ_MAX (64 * 1024)   /* per out_w callback */
#define HOOK_DRAIN_MAX (256 * 1024) /* read at exit, before the close */
#define HOOK_ABANDON_WAIT 2.0	    /* after SIGKILL, before giving up */
#define HOOK_ENV_PATH \
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const hook_phase_names[HOOK_PHASE_MAX] = {
	[HOOK_FREEZE] = "freeze",
	[HOOK_THAW] = "thaw",
};

/*
 * Names never run: editors' and package managers' leftovers next to a
 * real hook (the list of qemu's fsfreeze-hook dispatcher, plus ucf, swap
 * files and emacs autosaves). Dotfiles are skipped before this.
 */
static const char *const hook_ignored[] = {
	"*~",
	"*.bak",
	"*.orig",
	"*.sample",
	"*.swp",
	"*.rpmnew",
	"*.rpmorig",
	"*.rpmsave",
	"*.dpkg-*",
	"*.ucf-*",
	"#*#",
};

/* One directory entry while scanning, before order and shadowing. */
struct hook_ent {
	char *name;
	char *path;
	size_t dir;   /* index in the directory list: the tie-break */
	char *reason; /* NULL: a hook */
	int refused;
	int ignored; /* by name: neither shadows nor is shadowed */
};

struct hook_ents {
	struct hook_ent *v;
	size_t n;
};

struct hook_run {
	struct ev_loop *loop;
	const struct hook_set *set;
	enum hook_phase phase;
	size_t count;
	char *why;
	double timeout;
	double grace;
	hook_done_fn *done;
	void *arg;

	size_t started; /* hooks started or attempted */
	int stop;	/* a freeze hook failed: no more */
	struct hook_phase_result res;
	ev_timer step_w; /* next hook, or the end, from the loop */

	/* the hook running now */
	const struct hook *h;
	pid_t pid;
	int fd;
	int signalled; /* 0, SIGTERM, SIGKILL */
	int timed_out;
	double t_start;
	ev_child child_w;
	ev_io out_w;
	ev_timer deadline_w;
	size_t log_bytes;
	size_t log_lines;
	int truncated;
	size_t linelen;
	char line[HOOK_LINE_MAX];
	size_t taillen;
	char tail[2 * HOOK_TAIL_MAX + HOOK_LINE_MAX + 2];
};

static void hook_skip_add(
    struct hook_set *, const char *, int, const char *, ...) PRINTFLIKE(4, 5);
static const char *hook_unsafe(const struct stat *, int, char *, size_t);
static int hook_check_parents(const char *, char *, size_t);
static char *hook_join(const char *, const char *);
static void hook_ent_set(struct hook_ent *, int, const char *, ...)
    PRINTFLIKE(3, 4);
static void hook_scan_ent(int, const char *, const char *, struct hook_ent *);
static void hook_scan_link(int, const char *, struct hook_ent *);
static void hook_scan_dir(
    struct hook_set *, struct hook_ents *, const char *, size_t);
static int hook_ent_cmp(const void *, const void *);
static void hook_step_cb(struct ev_loop *, ev_timer *, int);
static void hook_child_cb(struct ev_loop *, ev_child *, int);
static void hook_out_cb(struct ev_loop *, ev_io *, int);
static void hook_deadline_cb(struct ev_loop *, ev_timer *, int);
static void hook_run_next(struct hook_run *);
static void hook_run_finish(struct hook_run *);
static void hook_complete(struct hook_run *, int, int);
static void hook_read(struct hook_run *, size_t);
static void hook_close_out(struct hook_run *);
static void hook_take(struct hook_run *, const char *, size_t);
static void hook_line(struct hook_run *);
static void hook_tail_trim(struct hook_run *, size_t);
static int hook_exited(const struct hook_run *);
static void hook_signal(struct hook_run *, int);
static int hook_failed(const struct hook_outcome *);
static char *hook_desc(const struct hook_run *, const struct hook_outcome *);

const char *
hook_phase_name(enum hook_phase p)
{
	if ((unsigned int)p >= HOOK_PHASE_MAX)
		return "unknown";
	return hook_phase_names[p];
}

/* ------------------------------------------------------------ the set */

static void
hook_skip_add(
    struct hook_set *set, const char *path, int refused, const char *fmt, ...)
{
	struct hook_skip *s;
	va_list ap;

	set->skip = xreallocarray(set->skip, set->nskip + 1, sizeof *set->skip);
	s = &set->skip[set->nskip++];
	s->path = xstrdup(path);
	va_start(ap, fmt);
	(void)xvasprintf(&s->reason, fmt, ap);
	va_end(ap);
	s->refused = refused;
	if (refused)
		set->nrefused++;
}

void
hook_set_add(struct hook_set *set, const char *path)
{
	struct hook *h;
	const char *slash;

	set->v = xreallocarray(set->v, set->n + 1, sizeof *set->v);
	h = &set->v[set->n++];
	h->path = xstrdup(path);
	slash = strrchr(path, '/');
	h->name = xstrdup(slash != NULL ? slash + 1 : path);
}

void
hook_set_clear(struct hook_set *set)
{
	size_t i;

	for (i = 0; i < set->n; i++) {
		free(set->v[i].path);
		free(set->v[i].name);
	}
	for (i = 0; i < set->nskip; i++) {
		free(set->skip[i].path);
		free(set->skip[i].reason);
	}
	free(set->v);
	free(set->skip);
	memset(set, 0, sizeof *set);
}

/*
 * Whether st may run as a hook or hold hooks: owned by root (or by us, so
 * that unprivileged test runs work; the agent runs as root) and writable
 * by nobody else. sticky_ok lets a root-owned sticky directory such as
 * /tmp pass as a parent: others may add names there but not replace ours.
 * NULL when safe, else why not (in buf when formatted).
 */
static const char *
hook_unsafe(const struct stat *st, int sticky_ok, char *buf, size_t len)
{
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		(void)snprintf(buf, len, "owned by uid %lu, not root",
		    (unsigned long)st->st_uid);
		return buf;
	}
	if (sticky_ok && S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))
		return NULL;
	if (st->st_mode & S_IWOTH)
		return "writable by others";
	if (st->st_mode & S_IWGRP)
		return "writable by group";
	return NULL;
}

/*
 * OpenSSH's safe_path() for the parents of a canonical directory: each one
 * up to / must pass hook_unsafe() (sticky allowed), or whoever can write
 * there can swap the directory. 0, or -EPERM with the reason in buf.
 */
static int
hook_check_parents(const char *dir, char *buf, size_t len)
{
	struct stat st;
	char p[PATH_MAX], why[64];
	const char *u;
	char *slash;

	if (strlen(dir) >= sizeof p)
		return -ENAMETOOLONG;
	(void)strcpy(p, dir);
	for (;;) {
		if ((slash = strrchr(p, '/')) == NULL || p[1] == '\0')
			return 0;
		if (slash == p)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(p, &st) == -1) {
			(void)snprintf(
			    buf, len, "'%s': %s", p, strerror(errno));
			return -EPERM;
		}
		if ((u = hook_unsafe(&st, 1, why, sizeof why)) != NULL) {
			(void)snprintf(buf, len, "'%s' is %s", p, u);
			return -EPERM;
		}
	}
}

static char *
hook_join(const char *dir, const char *name)
{
	char *p;

	(void)xasprintf(&p, "%s/%s", dir, name);
	return p;
}

static void
hook_ent_set(struct hook_ent *e, int refused, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)xvasprintf(&e->reason, fmt, ap);
	va_end(ap);
	e->refused = refused;
}

/*
 * A symlink is followed, and everything that could swap what it leads to
 * is checked like a hook's own directory: the target file, the directory
 * holding it and that directory's parents. So a package may link a hook
 * from /usr/share, and a link to /dev/null masks a hook of the same name
 * in a later directory (systemd's convention). Dangling links are skipped.
 */
static void
hook_scan_link(int dfd, const char *name, struct hook_ent *e)
{
	struct stat st;
	char real[PATH_MAX], why[256], *slash;
	const char *u;

	if (fstatat(dfd, name, &st, 0) == -1) {
		if (errno == ENOENT)
			hook_ent_set(e, 0, "dangling symlink");
		else
			hook_ent_set(e, 1, "symlink: %s", strerror(errno));
		return;
	}
	if (S_ISCHR(st.st_mode) && realpath(e->path, real) != NULL &&
	    strcmp(real, "/dev/null") == 0) {
		hook_ent_set(e, 0, "masked (symlink to /dev/null)");
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		hook_ent_set(e, 0, "symlink to something not a regular file");
		return;
	}
	if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
		hook_ent_set(e, 0, "not executable");
		return;
	}
	if ((u = hook_unsafe(&st, 0, why, sizeof why)) != NULL) {
		hook_ent_set(e, 1, "symlink target is %s", u);
		return;
	}
	if (realpath(e->path, real) == NULL) {
		hook_ent_set(e, 1, "symlink: %s", strerror(errno));
		return;
	}
	slash = strrchr(real, '/');
	if (slash == real)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	if (stat(real, &st) == -1) {
		hook_ent_set(e, 1, "symlink target's directory '%s': %s", real,
		    strerror(errno));
		return;
	}
	if ((u = hook_unsafe(&st, 0, why, sizeof why)) != NULL) {
		hook_ent_set(
		    e, 1, "symlink target's directory '%s' is %s", real, u);
		return;
	}
	if (hook_check_parents(real, why, sizeof why) < 0)
		hook_ent_set(e, 1, "symlink target's parent %s", why);
}

static void
hook_scan_ent(int dfd, const char *dir, const char *name, struct hook_ent *e)
{
	struct stat st;
	char why[64];
	const char *u;
	size_t i;
	int err;

	e->name = xstrdup(name);
	e->path = hook_join(dir, name);
	if (name[0] == '.') {
		hook_ent_set(e, 0, "hidden file");
		e->ignored = 1;
		return;
	}
	for (i = 0; i < nitems(hook_ignored); i++) {
		if (fnmatch(hook_ignored[i], name, 0) == 0) {
			hook_ent_set(e, 0, "ignored name (matches '%s')",
			    hook_ignored[i]);
			e->ignored = 1;
			return;
		}
	}
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		/* Removed while we looked: skipped; anything else refuses. */
		err = errno;
		hook_ent_set(e, err != ENOENT, "%s", strerror(err));
		return;
	}
	if (S_ISLNK(st.st_mode)) {
		hook_scan_link(dfd, name, e);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		hook_ent_set(e, 0, "not a regular file%s",
		    S_ISDIR(st.st_mode) ? " (directory)" : "");
		return;
	}
	if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
		hook_ent_set(e, 0, "not executable");
		return;
	}
	if ((u = hook_unsafe(&st, 0, why, sizeof why)) != NULL)
		hook_ent_set(e, 1, "%s", u);
}

static void
hook_scan_dir(
    struct hook_set *set, struct hook_ents *ents, const char *dir, size_t idx)
{
	struct stat st;
	struct dirent *de;
	struct hook_ent *e;
	char real[PATH_MAX], why[PATH_MAX + 64], *d;
	const char *u;
	size_t len;
	DIR *dp;
	int dfd, err;

	if (dir[0] != '/') {
		hook_skip_add(set, dir, 1, "hook directory is not absolute");
		return;
	}
	/* Spell paths as configured, without a trailing slash. */
	d = xstrdup(dir);
	len = strlen(d);
	while (len > 1 && d[len - 1] == '/')
		d[--len] = '\0';
	if (realpath(d, real) == NULL) {
		if (errno == ENOENT)
			hook_skip_add(set, d, 0, "no such directory");
		else
			hook_skip_add(
			    set, d, 1, "hook directory: %s", strerror(errno));
		goto out;
	}
	if ((dfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		err = errno;
		hook_skip_add(
		    set, d, err != ENOENT, "hook directory: %s", strerror(err));
		goto out;
	}
	if (fstat(dfd, &st) == -1) {
		hook_skip_add(set, d, 1, "hook directory: %s", strerror(errno));
		(void)close(dfd);
		goto out;
	}
	if ((u = hook_unsafe(&st, 0, why, sizeof why)) != NULL) {
		hook_skip_add(set, d, 1, "hook directory is %s", u);
		(void)close(dfd);
		goto out;
	}
	if (hook_check_parents(real, why, sizeof why) < 0) {
		hook_skip_add(set, d, 1, "hook directory's parent %s", why);
		(void)close(dfd);
		goto out;
	}
	if ((dp = fdopendir(dfd)) == NULL) {
		hook_skip_add(set, d, 1, "hook directory: %s", strerror(errno));
		(void)close(dfd);
		goto out;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(dp)) == NULL) {
			if (errno != 0)
				hook_skip_add(set, d, 1,
				    "reading hook directory: %s",
				    strerror(errno));
			break;
		}
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		ents->v = xreallocarray(ents->v, ents->n + 1, sizeof *ents->v);
		e = &ents->v[ents->n++];
		memset(e, 0, sizeof *e);
		e->dir = idx;
		hook_scan_ent(dirfd(dp), d, de->d_name, e);
	}
	(void)closedir(dp);
out:
	free(d);
}

static int
hook_ent_cmp(const void *a, const void *b)
{
	const struct hook_ent *ea = a, *eb = b;
	int r;

	if ((r = strcmp(ea->name, eb->name)) != 0)
		return r;
	return ea->dir < eb->dir ? -1 : ea->dir > eb->dir;
}

/*
 * Names are unique in the set: the first directory holding a name wins,
 * whatever that entry is (a hook, a refused or skipped file, a link to
 * /dev/null), and the same name in later directories is skipped as
 * shadowed. So /etc can override or mask a packaged hook in /usr/lib, and
 * each hook runs once. Only names ignored by pattern take no part.
 */
int
hook_scan(const struct strlist *dirs, struct hook_set *set)
{
	struct hook_set ns;
	struct hook_ents ents = { NULL, 0 };
	struct hook_ent *e;
	const struct hook_ent *win = NULL;
	size_t i;

	memset(&ns, 0, sizeof ns);
	for (i = 0; i < dirs->n; i++)
		hook_scan_dir(&ns, &ents, dirs->v[i], i);
	if (ents.n > 0)
		qsort(ents.v, ents.n, sizeof *ents.v, hook_ent_cmp);
	for (i = 0; i < ents.n; i++) {
		e = &ents.v[i];
		if (!e->ignored && win != NULL &&
		    strcmp(win->name, e->name) == 0)
			hook_skip_add(
			    &ns, e->path, 0, "shadowed by '%s'", win->path);
		else if (e->reason != NULL)
			hook_skip_add(
			    &ns, e->path, e->refused, "%s", e->reason);
		else if (ns.n >= HOOK_MAX)
			hook_skip_add(&ns, e->path, 1,
			    "too many hooks (at most %d)", HOOK_MAX);
		else
			hook_set_add(&ns, e->path);
		if (!e->ignored && (win == NULL || strcmp(win->name, e->name)))
			win = e;
	}
	for (i = 0; i < ents.n; i++) {
		free(ents.v[i].name);
		free(ents.v[i].path);
		free(ents.v[i].reason);
	}
	free(ents.v);
	hook_set_clear(set);
	*set = ns;
	return 0;
}

/* ------------------------------------------------------------ the run */

struct hook_run *
hook_phase_start(struct ev_loop *loop, const struct hook_set *set,
    enum hook_phase phase, size_t count, const char *why, double timeout,
    double grace, hook_done_fn *done, void *arg)
{
	struct hook_run *hr;

	hr = xcalloc(1, sizeof *hr);
	hr->loop = loop;
	hr->set = set;
	hr->phase = phase;
	hr->count = count < set->n ? count : set->n;
	hr->why = why != NULL ? xstrdup(why) : NULL;
	hr->timeout = timeout;
	hr->grace = grace > 0 ? grace : 0;
	hr->done = done;
	hr->arg = arg;
	hr->fd = -1;
	hr->res.phase = phase;
	hr->res.outcomes = xcalloc(hr->count + 1, sizeof *hr->res.outcomes);
	/*
	 * Even the first hook starts from the loop: done() must never run
	 * inside this call (no hooks, or a spawn failure), and one hook's end
	 * starts the next the same way, so nothing nests.
	 */
	ev_timer_init(&hr->step_w, hook_step_cb, 0., 0.);
	ev_timer_start(loop, &hr->step_w);
	return hr;
}

static void
hook_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hook_run *hr = container_of(w, struct hook_run, step_w);

	(void)loop;
	(void)revents;
	if (hr->stop || hr->started >= hr->count)
		hook_run_finish(hr);
	else
		hook_run_next(hr);
}

static void
hook_run_next(struct hook_run *hr)
{
	char *argv[3], *envp[8];
	size_t idx, i, n = 0;
	pid_t pid;
	int fd;

	idx = hr->phase == HOOK_FREEZE ? hr->started
				       : hr->count - 1 - hr->started;
	hr->started++;
	hr->h = &hr->set->v[idx];
	hr->signalled = 0;
	hr->timed_out = 0;
	hr->log_bytes = hr->log_lines = 0;
	hr->truncated = 0;
	hr->linelen = hr->taillen = 0;

	/* Built before fork(): the child only execs. */
	argv[0] = hr->h->path;
	argv[1] = (char *)hook_phase_name(hr->phase);
	argv[2] = NULL;
	envp[n++] = xstrdup(HOOK_ENV_PATH);
	envp[n++] = xstrdup("LANG=C");
	(void)xasprintf(
	    &envp[n++], "FSFREEZE_PHASE=%s", hook_phase_name(hr->phase));
	(void)xasprintf(&envp[n++], "FSFREEZE_HOOK=%s", hr->h->name);
	if (hr->why != NULL)
		(void)xasprintf(&envp[n++], "FSFREEZE_UNDO=%s", hr->why);
	envp[n] = NULL;

	hr->t_start = mono_now();
	pid = spawn_hook(argv, envp, &fd);
	for (i = 0; i < n; i++)
		free(envp[i]);
	if (pid < 0) {
		hook_complete(hr, 0, (int)pid);
		return;
	}
	hr->pid = pid;
	hr->fd = fd;
	/* Before the loop runs again: libev reaps every child it sees. */
	ev_child_init(&hr->child_w, hook_child_cb, pid, 0);
	ev_child_start(hr->loop, &hr->child_w);
	ev_io_init(&hr->out_w, hook_out_cb, fd, EV_READ);
	ev_io_start(hr->loop, &hr->out_w);
	if (hr->timeout > 0) {
		ev_timer_init(
		    &hr->deadline_w, hook_deadline_cb, hr->timeout, 0.);
		ev_timer_start(hr->loop, &hr->deadline_w);
	}
	log_debug("%s: hook '%s' %s started as pid %ld", __func__, hr->h->name,
	    hook_phase_name(hr->phase), (long)pid);
}

/*
 * The hook is done when its process has exited, not at EOF on its pipe: a
 * hook may leave a background process holding its stdout on purpose (the
 * MySQL sample holds FLUSH TABLES WITH READ LOCK that way until thaw). So
 * read what the pipe holds now, close our end, and never signal the group
 * after a normal exit.
 */
static void
hook_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct hook_run *hr = container_of(w, struct hook_run, child_w);

	(void)revents;
	ev_child_stop(loop, w);
	ev_timer_stop(loop, &hr->deadline_w);
	if (hr->fd != -1) {
		hook_read(hr, HOOK_DRAIN_MAX);
		hook_close_out(hr);
	}
	hook_complete(hr, w->rstatus, 0);
}

static void
hook_out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hook_run *hr = container_of(w, struct hook_run, out_w);

	(void)loop;
	(void)revents;
	hook_read(hr, HOOK_READ_MAX);
}

/*
 * On expiry SIGTERM goes to the hook's process group (its own session,
 * from setsid), then SIGKILL after the grace. A process stuck in the
 * kernel can outlive even SIGKILL; after a last wait the hook is given up
 * on so that the phase stays bounded (libev still reaps it whenever it
 * goes).
 */
static void
hook_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hook_run *hr = container_of(w, struct hook_run, deadline_w);

	(void)revents;
	/*
	 * It has exited and child_w is about to say so: not a timeout, and
	 * its group (perhaps a background holder) must not be signalled.
	 */
	if (ev_is_pending(&hr->child_w) || hook_exited(hr))
		return;
	hr->timed_out = 1;
	switch (hr->signalled) {
	case 0:
		hook_signal(hr, SIGTERM);
		ev_timer_set(w, hr->grace, 0.);
		ev_timer_start(loop, w);
		break;
	case SIGTERM:
		hook_signal(hr, SIGKILL);
		ev_timer_set(w, HOOK_ABANDON_WAIT, 0.);
		ev_timer_start(loop, w);
		break;
	default:
		log_warnx("%s: hook '%s' (pid %ld) did not exit after SIGKILL;"
			  " giving up on it",
		    hook_phase_name(hr->phase), hr->h->name, (long)hr->pid);
		ev_child_stop(loop, &hr->child_w);
		if (hr->fd != -1)
			hook_close_out(hr);
		hook_complete(hr, W_EXITCODE(0, SIGKILL), 0);
		break;
	}
}

/* Exited, not reaped yet: WNOWAIT looks without reaping (libev reaps). */
static int
hook_exited(const struct hook_run *hr)
{
	siginfo_t si;

	memset(&si, 0, sizeof si);
	if (waitid(P_PID, (id_t)hr->pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
	    -1)
		return 0;
	return si.si_pid == hr->pid;
}

static void
hook_signal(struct hook_run *hr, int sig)
{
	hr->signalled = sig;
	/* ESRCH: the child has not reached setsid() yet. */
	if (kill(-hr->pid, sig) == -1 && errno == ESRCH)
		(void)kill(hr->pid, sig);
	log_debug("%s: hook '%s' group %ld sent signal %d", __func__,
	    hr->h->name, (long)hr->pid, sig);
}

/* Read up to max bytes, until EAGAIN or EOF; EOF closes our end. */
static void
hook_read(struct hook_run *hr, size_t max)
{
	char buf[16384];
	size_t got = 0;
	ssize_t n;

	while (hr->fd != -1 && got < max) {
		n = read(hr->fd, buf, sizeof buf);
		if (n > 0) {
			got += (size_t)n;
			hook_take(hr, buf, (size_t)n);
		} else if (n == 0) {
			hook_close_out(hr);
		} else if (errno == EINTR) {
			continue;
		} else {
			if (errno != EAGAIN)
				hook_close_out(hr);
			break;
		}
	}
}

static void
hook_close_out(struct hook_run *hr)
{
	ev_io_stop(hr->loop, &hr->out_w);
	hr->fd = safe_close(hr->fd);
}

/* Split output into lines; overlong lines become pieces. */
static void
hook_take(struct hook_run *hr, const char *p, size_t n)
{
	const char *nl;
	size_t k, room;

	while (n > 0) {
		nl = memchr(p, '\n', n);
		k = nl != NULL ? (size_t)(nl - p) : n;
		room = sizeof hr->line - hr->linelen;
		if (k > room)
			k = room;
		memcpy(hr->line + hr->linelen, p, k);
		hr->linelen += k;
		p += k;
		n -= k;
		if (n > 0 && *p == '\n') {
			p++;
			n--;
			hook_line(hr);
		} else if (hr->linelen == sizeof hr->line) {
			hook_line(hr);
		}
	}
}

/*
 * One complete line: logged under the hook's name while under the caps
 * (then "output truncated" once, and the rest is read and discarded so
 * the hook never blocks on a full pipe), and always kept in the tail.
 */
static void
hook_line(struct hook_run *hr)
{
	size_t i, len = hr->linelen;
	unsigned char c;

	hr->linelen = 0;
	if (len > 0 && hr->line[len - 1] == '\r')
		len--;
	/* Control characters would forge log lines or garble a terminal. */
	for (i = 0; i < len; i++) {
		c = (unsigned char)hr->line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			hr->line[i] = '?';
	}
	if (!hr->truncated) {
		if (hr->log_lines < HOOK_LOG_LINES &&
		    hr->log_bytes + len <= HOOK_LOG_BYTES) {
			hr->log_lines++;
			hr->log_bytes += len;
			log_info("hook '%s' %s: %.*s", hr->h->name,
			    hook_phase_name(hr->phase), (int)len, hr->line);
		} else {
			hr->truncated = 1;
			log_info("hook '%s' %s: output truncated after %zu "
				 "lines",
			    hr->h->name, hook_phase_name(hr->phase),
			    hr->log_lines);
		}
	}
	if (hr->taillen + len + 1 > sizeof hr->tail)
		hook_tail_trim(hr, HOOK_TAIL_MAX);
	memcpy(hr->tail + hr->taillen, hr->line, len);
	hr->taillen += len;
	hr->tail[hr->taillen++] = '\n';
}

/* Drop whole lines from the front until at most keep bytes are left. */
static void
hook_tail_trim(struct hook_run *hr, size_t keep)
{
	size_t off = 0;
	char *nl;

	while (hr->taillen - off > keep) {
		nl = memchr(hr->tail + off, '\n', hr->taillen - off);
		off = nl != NULL ? (size_t)(nl - hr->tail) + 1 : hr->taillen;
	}
	memmove(hr->tail, hr->tail + off, hr->taillen - off);
	hr->taillen -= off;
}

static int
hook_failed(const struct hook_outcome *o)
{
	return o->spawn_err != 0 || o->timed_out || !WIFEXITED(o->status) ||
	    WEXITSTATUS(o->status) != 0;
}

/* The host's text: qemu-ga's prefixes, then which hook and what. */
static char *
hook_desc(const struct hook_run *hr, const struct hook_outcome *o)
{
	const char *ph = hook_phase_name(hr->phase);
	char *s;

	if (o->spawn_err != 0)
		(void)xasprintf(&s,
		    "fsfreeze hook has failed: hook '%s' (%s) could not be "
		    "started: %s",
		    o->path, ph, strerror(-o->spawn_err));
	else if (o->timed_out)
		(void)xasprintf(&s,
		    "fsfreeze hook has timed out: hook '%s' (%s) after %g s",
		    o->path, ph, hr->timeout);
	else if (WIFEXITED(o->status))
		(void)xasprintf(&s,
		    "fsfreeze hook has failed with status %d: hook '%s' (%s)",
		    WEXITSTATUS(o->status), o->path, ph);
	else
		(void)xasprintf(&s,
		    "fsfreeze hook has terminated abnormally: hook '%s' (%s) "
		    "killed by signal %d",
		    o->path, ph,
		    WIFSIGNALED(o->status) ? WTERMSIG(o->status) : 0);
	return s;
}

/* Record the hook's outcome, log it once, and go on from the loop. */
static void
hook_complete(struct hook_run *hr, int status, int spawn_err)
{
	struct hook_outcome *o = &hr->res.outcomes[hr->res.noutcomes++];
	const char *ph = hook_phase_name(hr->phase);
	struct hook_outcome plain;
	char what[128];

	if (hr->linelen > 0)
		hook_line(hr);
	o->name = hr->h->name;
	o->path = hr->h->path;
	o->phase = hr->phase;
	o->spawn_err = spawn_err;
	o->status = status;
	o->timed_out = hr->timed_out;
	o->secs = mono_now() - hr->t_start;
	hook_tail_trim(hr, HOOK_TAIL_MAX);
	if (hr->taillen > 0)
		o->tail = xstrndup(hr->tail, hr->taillen - 1);

	if (o->timed_out) {
		/* How it ended after the signal, without the timeout. */
		plain = *o;
		plain.timed_out = 0;
		hook_outcome_str(&plain, what, sizeof what);
		log_info("%s: hook '%s' timed out after %g s, %s in %.2f s", ph,
		    o->name, hr->timeout, what, o->secs);
	} else {
		hook_outcome_str(o, what, sizeof what);
		if (spawn_err != 0)
			log_info("%s: hook '%s' %s", ph, o->name, what);
		else
			log_info("%s: hook '%s' %s in %.2f s", ph, o->name,
			    what, o->secs);
	}

	if (hook_failed(o)) {
		hr->res.nfailed++;
		if (hr->res.desc == NULL)
			hr->res.desc = hook_desc(hr, o);
		if (hr->phase == HOOK_FREEZE)
			hr->stop = 1;
	} else
		hr->res.ncompleted++;
	hr->h = NULL;
	ev_timer_set(&hr->step_w, 0., 0.);
	ev_timer_start(hr->loop, &hr->step_w);
}

static void
hook_run_finish(struct hook_run *hr)
{
	size_t i;

	hr->done(hr->arg, &hr->res);
	for (i = 0; i < hr->res.noutcomes; i++)
		free(hr->res.outcomes[i].tail);
	free(hr->res.outcomes);
	free(hr->res.desc);
	free(hr->why);
	free(hr);
}

void
hook_outcome_str(const struct hook_outcome *o, char *buf, size_t len)
{
	if (len == 0)
		return;
	if (o->spawn_err != 0)
		(void)snprintf(buf, len, "could not be started: %s",
		    strerror(-o->spawn_err));
	else if (o->timed_out)
		(void)snprintf(buf, len, "timed out after %.1f s", o->secs);
	else if (WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0)
		(void)snprintf(buf, len, "exited 0");
	else if (WIFEXITED(o->status))
		(void)snprintf(
		    buf, len, "failed with status %d", WEXITSTATUS(o->status));
	else if (WIFSIGNALED(o->status))
		(void)snprintf(
		    buf, len, "killed by signal %d", WTERMSIG(o->status));
	else
		(void)snprintf(buf, len, "ended with wait status %#x",
		    (unsigned int)o->status);
}
