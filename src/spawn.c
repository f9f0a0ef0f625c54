/* SPDX-License-Identifier: ISC */
/* The only fork()s: exec a hook in a clean child, or run a freeze worker. */

#include "config.h"

#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/*
 * Everything the child needs is prepared before fork(): between fork() and
 * execve() or _exit() the child calls only async-signal-safe functions
 * (sigaction and the raw rt_sigaction call, sigprocmask, setsid, dup2,
 * close_range, close, chdir, execve, _exit), so it cannot trip over a lock
 * the parent held at fork().
 */
struct spawn_ctx {
	struct sigaction dfl;
	struct sigaction ign;
	sigset_t empty;
	unsigned long kdfl[8]; /* a kernel sigaction, all zero: SIG_DFL */
	long maxfd;
};

static void spawn_ctx_init(struct spawn_ctx *);
static int spawn_fd_high(int *);
static void spawn_child_signals(const struct spawn_ctx *, int);
static void spawn_close_from(const struct spawn_ctx *, int);
static void spawn_hook_child(
    char *const[], char *const[], int, int, const struct spawn_ctx *) NORETURN;

static void
spawn_ctx_init(struct spawn_ctx *c)
{
	long n;

	memset(c, 0, sizeof *c);
	c->dfl.sa_handler = SIG_DFL;
	(void)sigemptyset(&c->dfl.sa_mask);
	c->ign.sa_handler = SIG_IGN;
	(void)sigemptyset(&c->ign.sa_mask);
	(void)sigemptyset(&c->empty);
	/* Only for the fallback loop when close_range() is unavailable. */
	if ((n = sysconf(_SC_OPEN_MAX)) <= 0 || n > 65536)
		n = 65536;
	c->maxfd = n;
}

/*
 * Move an fd the child will dup2() onto 0, 1 or 2 above them. Were it
 * already 0..2, dup2(fd, fd) would be a no-op that leaves it close-on-exec
 * (the hook would start without it), and the first dup2() could overwrite
 * the source of a later one. The agent normally keeps 0..2 open on
 * /dev/null, so this rarely runs; F_DUPFD_CLOEXEC keeps "O_CLOEXEC from
 * birth" true for the copy.
 */
static int
spawn_fd_high(int *fd)
{
	int nfd;

	if (*fd > STDERR_FILENO)
		return 0;
	if ((nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)) == -1)
		return -errno;
	(void)close(*fd);
	*fd = nfd;
	return 0;
}

/*
 * Every disposition back to default (SIG_IGN survives execve(), and the
 * agent ignores SIGPIPE; a handler would become SIG_DFL anyway but not
 * until exec), then the empty mask. Signals are still blocked from the
 * parent here, so none of the agent's handlers (libev's) can run in the
 * child in between. A worker ignores the termination signals instead
 * (see spawn_worker).
 *
 * glibc's sigaction() refuses (EINVAL) the two real-time signals it keeps
 * for itself (32 and 33), yet SIG_IGN on them survives execve() like any
 * other: GNU make, for one, runs its recipes with both ignored. For a
 * hook those go through the raw system call; an all-zero kernel
 * sigaction is SIG_DFL with no flags and an empty mask on every ABI
 * (where the call's signature differs, it merely fails). A worker keeps
 * glibc's own: it goes on running glibc code.
 */
static void
spawn_child_signals(const struct spawn_ctx *c, int worker)
{
	int i, r;

	for (i = 1; i < NSIG; i++) {
		if (worker &&
		    (i == SIGTERM || i == SIGINT || i == SIGHUP ||
			i == SIGQUIT))
			r = sigaction(i, &c->ign, NULL);
		else
			r = sigaction(i, &c->dfl, NULL);
#ifdef SYS_rt_sigaction
		if (r == -1 && errno == EINVAL && !worker && i != SIGKILL &&
		    i != SIGSTOP)
			(void)syscall(SYS_rt_sigaction, i, c->kdfl, NULL,
			    (size_t)(NSIG + 6) / 8);
#else
		(void)r;
#endif
	}
	(void)sigprocmask(SIG_SETMASK, &c->empty, NULL);
}

/*
 * Every descriptor of the agent is close-on-exec already; this is the
 * belt to those braces, for anything a library or our parent left open
 * (a supervisor's leaked pipe, say).
 */
static void
spawn_close_from(const struct spawn_ctx *c, int lowfd)
{
	long fd;

#ifdef HAVE_CLOSE_RANGE
	if (close_range((unsigned int)lowfd, ~0U, 0) == 0)
		return;
#endif
	/* ENOSYS: a kernel older than 5.9 under a newer glibc. */
	for (fd = lowfd; fd < c->maxfd; fd++)
		(void)close((int)fd);
}

static void
spawn_hook_child(char *const argv[], char *const envp[], int nullfd, int wfd,
    const struct spawn_ctx *c)
{
	spawn_child_signals(c, 0);
	/* Its own session and process group: the deadline signals -pgid. */
	if (setsid() == -1 || dup2(nullfd, STDIN_FILENO) == -1 ||
	    dup2(wfd, STDOUT_FILENO) == -1 || dup2(wfd, STDERR_FILENO) == -1)
		_exit(127);
	spawn_close_from(c, STDERR_FILENO + 1);
	/* A predictable working directory, whatever the agent's is. */
	(void)chdir("/");
	(void)execve(argv[0], argv, envp);
	_exit(127);
}

pid_t
spawn_hook(char *const argv[], char *const envp[], int *outfd)
{
	struct spawn_ctx c;
	sigset_t all, old;
	int p[2] = { -1, -1 }, nullfd = -1, r;
	pid_t pid;

	*outfd = -1;
	if (argv == NULL || argv[0] == NULL || argv[0][0] != '/')
		return -EINVAL;
	spawn_ctx_init(&c);
	if ((nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		return -errno;
	/*
	 * Only the read end is non-blocking: the hook's stdout stays
	 * blocking, as programs expect; the loop reads fast enough and
	 * discards past the cap, so it never stays blocked for long.
	 */
	if (pipe2(p, O_CLOEXEC) == -1) {
		r = -errno;
		goto fail;
	}
	if ((r = fd_set_nonblock(p[0])) < 0 ||
	    (r = spawn_fd_high(&nullfd)) < 0 || (r = spawn_fd_high(&p[1])) < 0)
		goto fail;

	/*
	 * Block everything around fork() (tmux job.c): a signal arriving in
	 * the child before it has reset the dispositions would otherwise run
	 * the agent's handler there.
	 */
	(void)sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		spawn_hook_child(argv, envp, nullfd, p[1], &c);
	r = pid == -1 ? -errno : 0;
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		goto fail;

	(void)close(p[1]);
	(void)close(nullfd);
	*outfd = p[0];
	return pid;

fail:
	safe_close(p[0]);
	safe_close(p[1]);
	safe_close(nullfd);
	return r;
}

/*
 * A worker keeps the agent's descriptors (it works on one of them) and
 * does not exec. It ignores SIGTERM, SIGINT, SIGHUP and SIGQUIT: a stop
 * sent to the whole process group or cgroup (a terminal's ^C, systemd's
 * KillMode=control-group) must not kill it between its ioctl and its
 * _exit(), or the loop would not know whether that FIFREEZE happened; the
 * agent itself handles those signals with an orderly thaw and waits for
 * its workers. For the same reason there is no PR_SET_PDEATHSIG: freeze
 * state belongs to the superblock, not to the worker or its fd, so a
 * worker that outlives a dead agent only finishes its short call, and the
 * state file written before the first FIFREEZE (and --thaw) take it from
 * there. SIGKILL still ends it. fn must not log or touch the loop: the
 * child is a copy of the agent and _exit()s without flushing anything.
 */
pid_t
spawn_worker(int (*fn)(void *), void *arg)
{
	struct spawn_ctx c;
	sigset_t all, old;
	pid_t pid;
	int r;

	spawn_ctx_init(&c);
	(void)sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		spawn_child_signals(&c, 1);
		r = fn(arg);
		_exit(r & 0xff);
	}
	r = pid == -1 ? -errno : 0;
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	return r < 0 ? r : pid;
}
