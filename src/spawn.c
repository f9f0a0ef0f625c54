/* SPDX-License-Identifier: ISC */
/*
 * The only children: a hook exec'd in a clean child (by posix_spawn(), or
 * fork() where the C library lacks what that needs), or a freeze worker.
 */

#include "config.h"

#include <sys/syscall.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/*
 * A hook by posix_spawn() where the C library can do everything a hook's
 * child needs: glibc's clones with CLONE_VM | CLONE_VFORK and does not
 * copy the agent's page tables as fork() does, ~0.25 ms less per hook run
 * (bench/FREEZE.md). Without the chdir or closefrom file actions (glibc
 * before 2.34, other C libraries) a hook is forked as a worker is and set
 * up by hand (spawn_hook_child), with the same result.
 */
#if defined(POSIX_SPAWN_SETSID) && \
    defined(HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCHDIR_NP) && \
    defined(HAVE_POSIX_SPAWN_FILE_ACTIONS_ADDCLOSEFROM_NP)
#define SPAWN_HOOK_POSIX 1
#endif

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
static int spawn_hook_start(pid_t *, char *const[], char *const[], int, int);
#ifndef SPAWN_HOOK_POSIX
static void spawn_close_from(const struct spawn_ctx *, int);
static void spawn_hook_child(
    char *const[], char *const[], int, int, const struct spawn_ctx *) NORETURN;
#endif

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

#ifdef SPAWN_HOOK_POSIX
/*
 * glibc's child does what spawn_hook_child does by hand, in that order:
 * every disposition in the sigdefault set to SIG_DFL, setsid(), the file
 * actions, the empty mask, execve(). The parent blocks every signal around
 * the clone itself, and the child resets every handler before it unblocks,
 * so none of libev's handlers can run in it. CLONE_VFORK suspends the loop
 * until the hook's execve() has returned (the kernel loading it, and for a
 * script its interpreter; no hook code). An execve() that fails comes back
 * as posix_spawn()'s error, the child already reaped by glibc (its one
 * blocking waitpid, on a process that has exited): the hook could not be
 * started, where a forked child would exit 127.
 */
static int
spawn_hook_start(
    pid_t *pid, char *const argv[], char *const envp[], int nullfd, int wfd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t every, none;
	const short flags =
	    POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
	int r;

	if ((r = posix_spawnattr_init(&attr)) != 0)
		return -r;
	if ((r = posix_spawn_file_actions_init(&fa)) != 0) {
		(void)posix_spawnattr_destroy(&attr);
		return -r;
	}
	/*
	 * Every bit set, not sigfillset(): glibc's sigfillset() leaves out
	 * (and sigaddset() refuses) the two real-time signals it keeps for
	 * itself, 32 and 33, and its posix_spawn() child sets those two to
	 * SIG_IGN unless they are in the sigdefault set, whatever the
	 * parent's disposition; SIG_IGN survives execve(), so every hook
	 * would start with both ignored. The attribute is copied as it is
	 * and the child's loop tests the bits, so a full bitmask gets them
	 * SIG_DFL like every other signal, as the raw rt_sigaction in
	 * spawn_child_signals does for a forked child. (That SIG_IGN is
	 * glibc's guard against its own cancellation signal reaching the
	 * child before execve(); the agent has no threads to cancel, and
	 * nothing else sends them to a new pid.) Fixing the agent's own
	 * dispositions would change nothing here.
	 */
	memset(&every, 0xff, sizeof every);
	(void)sigemptyset(&none);
	r = posix_spawnattr_setflags(&attr, flags);
	if (r == 0)
		r = posix_spawnattr_setsigdefault(&attr, &every);
	if (r == 0)
		r = posix_spawnattr_setsigmask(&attr, &none);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, nullfd, STDIN_FILENO);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, wfd, STDOUT_FILENO);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(&fa, wfd, STDERR_FILENO);
	/* The belt to O_CLOEXEC's braces (see spawn_close_from). */
	if (r == 0)
		r = posix_spawn_file_actions_addclosefrom_np(
		    &fa, STDERR_FILENO + 1);
	/* A predictable working directory, whatever the agent's is. */
	if (r == 0)
		r = posix_spawn_file_actions_addchdir_np(&fa, "/");
	if (r == 0)
		r = posix_spawn(pid, argv[0], &fa, &attr, argv, envp);
	(void)posix_spawn_file_actions_destroy(&fa);
	(void)posix_spawnattr_destroy(&attr);
	return -r;
}
#else
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

static int
spawn_hook_start(
    pid_t *pid, char *const argv[], char *const envp[], int nullfd, int wfd)
{
	struct spawn_ctx c;
	sigset_t all, old;
	int r;

	spawn_ctx_init(&c);
	/*
	 * Block everything around fork() (tmux job.c): a signal arriving in
	 * the child before it has reset the dispositions would otherwise run
	 * the agent's handler there.
	 */
	(void)sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &old);
	*pid = fork();
	if (*pid == 0)
		spawn_hook_child(argv, envp, nullfd, wfd, &c);
	r = *pid == -1 ? -errno : 0;
	(void)sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}
#endif

pid_t
spawn_hook(char *const argv[], char *const envp[], int *outfd)
{
	int p[2] = { -1, -1 }, nullfd = -1, r;
	pid_t pid = -1;

	*outfd = -1;
	if (argv == NULL || argv[0] == NULL || argv[0][0] != '/')
		return -EINVAL;
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
	    (r = spawn_fd_high(&nullfd)) < 0 ||
	    (r = spawn_fd_high(&p[1])) < 0 ||
	    (r = spawn_hook_start(&pid, argv, envp, nullfd, p[1])) < 0)
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
