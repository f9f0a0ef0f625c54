/* SPDX-License-Identifier: ISC */
/*
 * rawfreeze: the physical limits freezebench.py measures the agents against,
 * and the small helpers it needs. Compiled by freezebench.py with cc; not
 * part of the agent.
 *
 *   rawfreeze freeze --root DIR [--mode MODE] [--cycles K] [--wait] MNT...
 *	Opens every MNT first (O_RDONLY | O_DIRECTORY), then runs K freeze/thaw
 *	cycles back to back, one JSON line each: the freeze and thaw phase
 *	times and their CLOCK_MONOTONIC bounds (the writer's gaps are matched
 *	against them). --wait: before each cycle print "ready" and wait for a
 *	line on stdin, so that the cycle starts long after this process was
 *	exec()ed, like an agent's: a process exit (and exec's teardown of the
 *	old image) just before a cold FIFREEZE makes it 10-15 ms slower.
 *	  seq	  FIFREEZE one fs after the other, in the order given
 *	  par	  one fork()ed child per fs, all started at once, each does
 *		  FIFREEZE and _exit(errno); the freeze ends when all are reaped
 *	  syncpar the agent's strategy done raw: first one child per fs doing
 *		  syncfs, all reaped, then the par freeze
 *	  vmpar	  par, but each child made by clone(CLONE_VM) on a stack of its
 *		  own (no page tables copied, no copy-on-write faults): what a
 *		  worker costs when it is not a fork. The child only calls
 *		  ioctl() (through t/fsguard.so when preloaded), resolved in
 *		  the parent first, and returns
 *	Thaw: FITHAW on each fd in the parent, last frozen first.
 *	Refuses any MNT that is not a mount point below DIR or that is on the
 *	device of "/". On any failure or on SIGINT/SIGTERM/SIGHUP it thaws
 *	everything it may have frozen before exiting.
 *
 *   rawfreeze hooks K ARG PATH...
 *	The floor of running hooks: K times, each PATH in turn with ARG, one
 *	at a time, by posix_spawn() (vfork + exec, the cheapest way) with
 *	stdin and stdout on /dev/null, each waited for. Then one JSON line
 *	with the time of each of the K passes.
 *
 *   rawfreeze writer FILE PERIOD_US MINGAP_US
 *	The application of the write-stall measurement: a 64-byte pwrite()
 *	into FILE (cycling through its first MiB, never fsync'd), a
 *	timestamp, a sleep of PERIOD_US, until SIGTERM or SIGINT. Then one
 *	JSON line: the number of writes and every gap between two write
 *	completions longer than MINGAP_US, as [start_ns, end_ns] pairs.
 *
 * Built with -DTHAWGUARD -shared -fPIC it is instead an LD_PRELOAD shim
 * for qemu-ga, whose guest-fsfreeze-thaw sends FITHAW to every mount of
 * the machine: FITHAW on a device not in $FSFREEZE_GUARD_DEVS (the list
 * t/fsguard.so uses) answers EINVAL without reaching the kernel, so other
 * people's frozen test filesystems are never thawed by it.
 */

#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#ifdef THAWGUARD

typedef int ioctl_fn(int, unsigned long, ...);

static int
guard_allowed(dev_t dev)
{
	const char *s = getenv("FSFREEZE_GUARD_DEVS");
	unsigned long maj, min;
	char *end;

	while (s != NULL && *s != '\0') {
		maj = strtoul(s, &end, 10);
		if (end == s || *end != ':')
			return 0;
		s = end + 1;
		min = strtoul(s, &end, 10);
		if (end == s || (*end != ',' && *end != '\0'))
			return 0;
		if (maj == major(dev) && min == minor(dev))
			return 1;
		s = *end == ',' ? end + 1 : end;
	}
	return 0;
}

int
ioctl(int fd, unsigned long req, ...)
{
	static ioctl_fn *real;
	struct stat st;
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (real == NULL &&
	    (real = (ioctl_fn *)dlsym(RTLD_NEXT, "ioctl")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (req == FITHAW &&
	    (fstat(fd, &st) == -1 || !guard_allowed(st.st_dev))) {
		errno = EINVAL; /* "not frozen": what qemu-ga stops on */
		return -1;
	}
	return real(fd, req, arg);
}

#else /* !THAWGUARD */

enum mode { MODE_SEQ, MODE_PAR, MODE_SYNCPAR, MODE_VMPAR };

#define VM_STACK (64 * 1024)

static int *fds;
static int nfds;
static volatile sig_atomic_t stop;

static long long
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* FITHAW until EINVAL on every fd: never blocks, async-signal safe. */
static void
thaw_all(void)
{
	int i, k;

	for (i = 0; i < nfds; i++)
		for (k = 0; fds[i] >= 0 && k < 64; k++)
			if (ioctl(fds[i], FITHAW, 0) == -1)
				break;
}

static void
on_fatal_signal(int sig)
{
	thaw_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int
check_path(const char *p, const char *root)
{
	char rp[PATH_MAX], parent[PATH_MAX], *slash;
	struct stat st, pst, rst;
	size_t rl = strlen(root);

	if (realpath(p, rp) == NULL) {
		fprintf(stderr, "rawfreeze: %s: %s\n", p, strerror(errno));
		return -1;
	}
	if (strncmp(rp, root, rl) != 0 || rp[rl] != '/') {
		fprintf(stderr, "rawfreeze: refusing %s: not below %s\n", rp,
		    root);
		return -1;
	}
	if (stat(rp, &st) == -1 || stat("/", &rst) == -1) {
		perror("rawfreeze: stat");
		return -1;
	}
	if (st.st_dev == rst.st_dev) {
		fprintf(stderr, "rawfreeze: refusing %s: on the root device\n",
		    rp);
		return -1;
	}
	(void)snprintf(parent, sizeof parent, "%s", rp);
	if ((slash = strrchr(parent, '/')) != NULL)
		*(slash == parent ? slash + 1 : slash) = '\0';
	if (stat(parent, &pst) == -1 || pst.st_dev == st.st_dev) {
		fprintf(stderr, "rawfreeze: refusing %s: not a mount point\n",
		    rp);
		return -1;
	}
	return 0;
}

/* One child per fd doing op (FIFREEZE or syncfs); 0 or the first errno. */
static int
fork_all(pid_t *pids, int freeze)
{
	int i, status, err = 0;

	for (i = 0; i < nfds; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			int r = freeze ? ioctl(fds[i], FIFREEZE, 0)
				       : syncfs(fds[i]);
			_exit(r == -1 ? (errno > 0 && errno < 256 ? errno
								  : EIO)
				      : 0);
		}
		if (pids[i] == -1) {
			err = errno;
			break;
		}
	}
	for (i = 0; i < nfds && pids[i] != -1; i++) {
		while (waitpid(pids[i], &status, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(status))
			err = err ? err : EINTR;
		else if (WEXITSTATUS(status) != 0)
			err = err ? err : WEXITSTATUS(status);
	}
	return err;
}

static int
vm_child(void *arg)
{
	int fd = *(int *)arg;

	/* The exit status of this task; errno is the parent's (shared TLS). */
	return ioctl(fd, FIFREEZE, 0) == -1 ? 1 : 0;
}

static int
clone_all(pid_t *pids, char *stacks)
{
	int i, status, err = 0;

	for (i = 0; i < nfds; i++) {
		pids[i] = clone(vm_child, stacks + (size_t)(i + 1) * VM_STACK,
		    CLONE_VM | SIGCHLD, &fds[i]);
		if (pids[i] == -1) {
			err = errno;
			break;
		}
	}
	for (i = 0; i < nfds && pids[i] != -1; i++) {
		while (waitpid(pids[i], &status, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			err = err ? err : EIO;
	}
	return err;
}

static int
cmd_freeze(int argc, char **argv)
{
	const char *root = NULL;
	char rootrp[PATH_MAX];
	enum mode mode = MODE_SEQ;
	long long t0, t1, t2, t3;
	int i, c, cycles = 1, err, wait = 0;
	char line[64];
	struct sigaction sa;
	char *stacks = NULL;
	pid_t *pids;
	int bsz;

	while (argc > 0 && argv[0][0] == '-') {
		if (strcmp(argv[0], "--wait") == 0) {
			wait = 1;
			argc--;
			argv++;
			continue;
		}
		if (strcmp(argv[0], "--root") == 0 && argc > 1)
			root = argv[1];
		else if (strcmp(argv[0], "--cycles") == 0 && argc > 1)
			cycles = atoi(argv[1]);
		else if (strcmp(argv[0], "--mode") == 0 && argc > 1) {
			if (strcmp(argv[1], "seq") == 0)
				mode = MODE_SEQ;
			else if (strcmp(argv[1], "par") == 0)
				mode = MODE_PAR;
			else if (strcmp(argv[1], "syncpar") == 0)
				mode = MODE_SYNCPAR;
			else if (strcmp(argv[1], "vmpar") == 0)
				mode = MODE_VMPAR;
			else
				return 2;
		} else
			return 2;
		argc -= 2;
		argv += 2;
	}
	if (root == NULL || argc < 1 || cycles < 1) {
		fprintf(stderr, "usage: rawfreeze freeze --root DIR [--mode "
				"seq|par|syncpar] [--cycles K] MNT...\n");
		return 2;
	}
	if (realpath(root, rootrp) == NULL) {
		perror(root);
		return 2;
	}
	nfds = argc;
	fds = calloc((size_t)nfds, sizeof *fds);
	pids = calloc((size_t)nfds, sizeof *pids);
	if (fds == NULL || pids == NULL)
		return 1;
	for (i = 0; i < nfds; i++)
		fds[i] = -1;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_fatal_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (i = 0; i < nfds; i++) {
		if (check_path(argv[i], rootrp) == -1)
			return 2;
		fds[i] = open(argv[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fds[i] == -1) {
			fprintf(stderr, "rawfreeze: %s: %s\n", argv[i],
			    strerror(errno));
			return 1;
		}
	}
	if (mode == MODE_VMPAR) {
		if ((stacks = malloc((size_t)nfds * VM_STACK)) == NULL)
			return 1;
		/* Bind ioctl (and the shim's pointer to the real one) now. */
		(void)ioctl(fds[0], FIGETBSZ, &bsz);
	}
	for (c = 0; c < cycles; c++) {
		if (wait) {
			printf("ready\n");
			if (fflush(stdout) != 0 ||
			    fgets(line, sizeof line, stdin) == NULL)
				return 1;
		}
		err = 0;
		t0 = now_ns();
		if (mode == MODE_VMPAR) {
			err = clone_all(pids, stacks);
		} else if (mode == MODE_SEQ) {
			for (i = 0; i < nfds && err == 0; i++)
				if (ioctl(fds[i], FIFREEZE, 0) == -1)
					err = errno;
		} else {
			if (mode == MODE_SYNCPAR)
				err = fork_all(pids, 0);
			if (err == 0)
				err = fork_all(pids, 1);
		}
		t1 = now_ns();
		if (err != 0) {
			fprintf(stderr, "rawfreeze: freeze: %s\n",
			    strerror(err));
			thaw_all();
			return 1;
		}
		t2 = now_ns();
		for (i = nfds; i-- > 0;)
			if (ioctl(fds[i], FITHAW, 0) == -1) {
				fprintf(stderr, "rawfreeze: FITHAW %s: %s\n",
				    argv[i], strerror(errno));
				thaw_all();
				return 1;
			}
		t3 = now_ns();
		printf("{\"n\": %d, \"freeze_ns\": %lld, \"thaw_ns\": %lld, "
		       "\"t0\": %lld, \"t3\": %lld}\n",
		    nfds, t1 - t0, t3 - t2, t0, t3);
		if (wait && fflush(stdout) != 0)
			return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
cmd_writer(int argc, char **argv)
{
	static const char chunk[64] = "freezebench writer: a small write\n";
	long long prev, t, gap, mingap, *gaps = NULL;
	size_t ngaps = 0, cap = 0, i;
	struct timespec period;
	unsigned long long writes = 0;
	struct sigaction sa;
	off_t off = 0;
	long us;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: rawfreeze writer FILE PERIOD_US "
				"MINGAP_US\n");
		return 2;
	}
	us = atol(argv[1]);
	mingap = atoll(argv[2]) * 1000;
	period.tv_sec = us / 1000000;
	period.tv_nsec = (us % 1000000) * 1000;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if ((fd = open(argv[0], O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) == -1) {
		perror(argv[0]);
		return 1;
	}
	prev = now_ns();
	while (!stop) {
		if (pwrite(fd, chunk, sizeof chunk, off) != sizeof chunk &&
		    errno != EINTR) {
			perror("rawfreeze: writer: pwrite");
			return 1;
		}
		off = (off + (off_t)sizeof chunk) % (1 << 20);
		writes++;
		t = now_ns();
		gap = t - prev;
		if (gap > mingap) {
			if (ngaps + 2 > cap) {
				cap = cap ? cap * 2 : 1024;
				if ((gaps = realloc(gaps,
					 cap * sizeof *gaps)) == NULL)
					return 1;
			}
			gaps[ngaps++] = prev;
			gaps[ngaps++] = t;
		}
		prev = t;
		(void)nanosleep(&period, NULL);
	}
	printf("{\"writes\": %llu, \"gaps\": [", writes);
	for (i = 0; i < ngaps; i += 2)
		printf("%s[%lld, %lld]", i ? ", " : "", gaps[i], gaps[i + 1]);
	printf("]}\n");
	(void)close(fd);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
cmd_hooks(int argc, char **argv)
{
	extern char **environ;
	posix_spawn_file_actions_t fa;
	long long t0, *passes;
	int i, k, n, status;
	char *hargv[3];
	pid_t pid;

	if (argc < 3 || (n = atoi(argv[0])) < 1) {
		fprintf(stderr, "usage: rawfreeze hooks K ARG PATH...\n");
		return 2;
	}
	if ((passes = calloc((size_t)n, sizeof *passes)) == NULL)
		return 1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	hargv[1] = argv[1];
	hargv[2] = NULL;
	for (k = 0; k < n; k++) {
		t0 = now_ns();
		for (i = 2; i < argc; i++) {
			hargv[0] = argv[i];
			if ((errno = posix_spawn(&pid, argv[i], &fa, NULL, hargv,
				 environ)) != 0) {
				perror(argv[i]);
				return 1;
			}
			while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
				;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				fprintf(stderr, "rawfreeze: %s: status 0x%x\n",
				    argv[i], (unsigned int)status);
				return 1;
			}
		}
		passes[k] = now_ns() - t0;
	}
	printf("{\"passes_ns\": [");
	for (k = 0; k < n; k++)
		printf("%s%lld", k ? ", " : "", passes[k]);
	printf("]}\n");
	return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "freeze") == 0)
		return cmd_freeze(argc - 2, argv + 2);
	if (argc > 1 && strcmp(argv[1], "writer") == 0)
		return cmd_writer(argc - 2, argv + 2);
	if (argc > 1 && strcmp(argv[1], "hooks") == 0)
		return cmd_hooks(argc - 2, argv + 2);
	fprintf(stderr, "usage: rawfreeze freeze|hooks|writer ...\n");
	return 2;
}

#endif /* !THAWGUARD */
