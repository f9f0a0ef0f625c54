/* SPDX-License-Identifier: ISC */
/*
 * The freeze engine on real loop filesystems (root only): ext4, xfs, btrfs
 * with a subvolume, bind mounts, a foreign freeze, an over-mount, a loop
 * filesystem on another one, squashfs (EOPNOTSUPP), failures and thaws.
 *
 * Safety: the test re-executes itself under t/fsguard.so, which refuses
 * FIFREEZE on any device but the ones this test mounted; each plan is also
 * checked (mount points under our directory, each fd on one of our
 * devices) before freeze_start, or the test bails. Frozen state is probed
 * with FIFREEZE (EBUSY: frozen; success: thawed at once), never by writing.
 * Every mount is thawed and unmounted at exit, on failure and on signals.
 */

#include "config.h"

#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>

#include <ev.h>

#include "../src/agent.h"
#include "tap.h"

extern char **environ;

#define MAX_MNT 32

struct tmnt {
	char path[PATH_MAX];
	int fd;	   /* kept open: probes, and thaws in cleanup */
	dev_t dev; /* fstat(fd).st_dev, what the guard sees */
	int mounted;
};

static struct tmnt mnts[MAX_MNT];
static int nmnt;
static char dir[256];
static char guardlog[PATH_MAX + 16];
static char cmdlog[PATH_MAX + 16];
static struct buf allow;
static char mntlist[PATH_MAX + 16];
static volatile sig_atomic_t cleaning;
static pid_t watchdog = -1;

/* Past this the watchdog thaws everything: a freeze deadlocked. */
#define WATCHDOG_SECS 90

/* ------------------------------------------------------------ cleanup */

/* FITHAW until EINVAL: whatever froze it, it must be thawed now. */
static void
thaw_fd(int fd)
{
	int i;

	for (i = 0; i < 64 && ioctl(fd, FITHAW, 0) == 0; i++)
		;
}

static void
umount_retry(const char *path)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int i;

	/* A loop device below is released asynchronously: EBUSY a while. */
	for (i = 0; i < 300; i++) {
		if (umount2(path, 0) == 0 || errno == EINVAL || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		(void)nanosleep(&ts, NULL);
	}
	(void)umount2(path, MNT_DETACH);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	(void)remove(path);
	return 0;
}

/*
 * Only syscalls: it also runs from signal handlers. Thaw in creation
 * order: a filesystem can only live on one made before it, and thawing
 * the upper one first would block on the frozen one below (its thaw
 * writes through the loop device).
 */
static void
teardown(void)
{
	int i;

	if (cleaning)
		return;
	cleaning = 1;
	if (watchdog > 0) {
		(void)kill(watchdog, SIGKILL);
		watchdog = -1;
	}
	for (i = 0; i < nmnt; i++)
		if (mnts[i].fd >= 0)
			thaw_fd(mnts[i].fd);
	for (i = nmnt; i-- > 0;) {
		if (mnts[i].fd >= 0) {
			(void)close(mnts[i].fd);
			mnts[i].fd = -1;
		}
		if (mnts[i].mounted) {
			umount_retry(mnts[i].path);
			mnts[i].mounted = 0;
		}
	}
	nmnt = 0;
}

static void
cleanup_atexit(void)
{
	teardown();
	if (dir[0] != '\0') {
		(void)nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
		dir[0] = '\0';
	}
}

static void
cleanup_signal(int sig)
{
	static const char msg[] = "Bail out! t4020: signal, cleaning up\n";

	(void)write(STDOUT_FILENO, msg, sizeof msg - 1);
	teardown();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ------------------------------------------------------------ helpers */

/* The watchdog's list of our mount points, in creation order. */
static void
note_mount(const char *path)
{
	int fd;

	if ((fd = open(mntlist, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		 0600)) == -1)
		bail("open %s: %s", mntlist, strerror(errno));
	if (write(fd, path, strlen(path)) == -1 || write(fd, "\n", 1) == -1)
		bail("write %s: %s", mntlist, strerror(errno));
	(void)close(fd);
}

/*
 * A deadlocked freeze or thaw leaves this process in an uninterruptible
 * ioctl where no signal helps. A separate process then thaws every test
 * mount (creation order, FITHAW until EINVAL) until we exit, so the test
 * fails instead of hanging CI.
 */
static void
watchdog_run(pid_t parent)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	char buf[65536], *line, *nl;
	ssize_t n;
	int i, fd, warned = 0;

	for (i = 1; i < NSIG; i++)
		(void)signal(i, SIG_DFL);
	for (i = 0; i < WATCHDOG_SECS * 10; i++) {
		if (getppid() != parent)
			_exit(0);
		(void)nanosleep(&ts, NULL);
	}
	for (;;) {
		if (getppid() != parent)
			_exit(0);
		if (!warned) {
			static const char msg[] = "# t4020 watchdog: thawing "
						  "all test mounts\n";

			(void)write(STDOUT_FILENO, msg, sizeof msg - 1);
			warned = 1;
		}
		if ((fd = open(mntlist, O_RDONLY | O_CLOEXEC)) != -1) {
			n = read(fd, buf, sizeof buf - 1);
			(void)close(fd);
			buf[n > 0 ? n : 0] = '\0';
			for (line = buf; *line != '\0'; line = nl + 1) {
				if ((nl = strchr(line, '\n')) == NULL)
					break;
				*nl = '\0';
				if ((fd = open(line,
					 O_RDONLY | O_DIRECTORY | O_CLOEXEC)) !=
				    -1) {
					thaw_fd(fd);
					(void)close(fd);
				}
			}
		}
		ts.tv_sec = 1;
		ts.tv_nsec = 0;
		(void)nanosleep(&ts, NULL);
	}
}

static void
watchdog_start(void)
{
	pid_t parent = getpid();

	fflush(stdout);
	if ((watchdog = fork()) == -1)
		bail("fork: %s", strerror(errno));
	if (watchdog == 0)
		watchdog_run(parent);
}

static int
run(const char *arg0, ...)
{
	posix_spawn_file_actions_t fa;
	const char *argv[32];
	va_list ap;
	pid_t pid;
	int n = 0, status, r;

	argv[n++] = arg0;
	va_start(ap, arg0);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	(void)posix_spawn_file_actions_init(&fa);
	(void)posix_spawn_file_actions_addopen(
	    &fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	(void)posix_spawn_file_actions_addopen(
	    &fa, STDOUT_FILENO, cmdlog, O_WRONLY | O_APPEND | O_CREAT, 0600);
	(void)posix_spawn_file_actions_adddup2(
	    &fa, STDOUT_FILENO, STDERR_FILENO);
	r = posix_spawnp(&pid, arg0, &fa, NULL, (char *const *)argv, environ);
	(void)posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -r;
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void
show_cmdlog(void)
{
	char line[512];
	FILE *f;

	if ((f = fopen(cmdlog, "r")) == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		diag("  %s", line);
	}
	(void)fclose(f);
}

#define RUN(...) \
	do { \
		if (run(__VA_ARGS__, (const char *)NULL) != 0) { \
			show_cmdlog(); \
			bail("command failed: %s", #__VA_ARGS__); \
		} \
	} while (0)

static int
have(const char *prog)
{
	char path[PATH_MAX];
	const char *dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
	size_t i;

	for (i = 0; i < nitems(dirs); i++) {
		(void)snprintf(path, sizeof path, "%s/%s", dirs[i], prog);
		if (access(path, X_OK) == 0)
			return 1;
	}
	return 0;
}

static const char *
sub(const char *name)
{
	static char bufs[8][PATH_MAX];
	static int k;
	char *p = bufs[k++ % 8];

	(void)snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

static void
allow_dev(dev_t dev)
{
	(void)buf_addf(&allow, "%s%u:%u", buf_used(&allow) ? "," : "",
	    major(dev), minor(dev));
	(void)buf_addc(&allow, '\0');
	if (setenv("FSFREEZE_GUARD_DEVS", buf_head(&allow), 1) == -1)
		bail("setenv: %s", strerror(errno));
	allow.len--; /* drop the NUL again */
	/* Workers kept from an earlier freeze have the old list: new ones. */
	worker_close_idle();
}

/* Record a mount that exists now; keep an fd for probes and cleanup. */
static struct tmnt *
track(const char *path, int guard)
{
	struct tmnt *m;
	struct stat st;

	if (nmnt == MAX_MNT)
		bail("too many mounts");
	m = &mnts[nmnt++];
	(void)snprintf(m->path, sizeof m->path, "%s", path);
	m->mounted = 1;
	if ((m->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fstat(m->fd, &st) == -1)
		bail("open %s: %s", path, strerror(errno));
	m->dev = st.st_dev;
	if (guard)
		allow_dev(m->dev);
	note_mount(path);
	return m;
}

static void
mkdir_or_bail(const char *path)
{
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		bail("mkdir %s: %s", path, strerror(errno));
}

static void
make_image(const char *img, const char *fstype, const char *size)
{
	RUN("truncate", "-s", size, img);
	if (strcmp(fstype, "ext4") == 0)
		RUN("mkfs.ext4", "-q", "-F", "-E",
		    "lazy_itable_init=0,lazy_journal_init=0", img);
	else if (strcmp(fstype, "xfs") == 0)
		RUN("mkfs.xfs", "-q", "-f", img);
	else if (strcmp(fstype, "btrfs") == 0)
		RUN("mkfs.btrfs", "-q", "-f", img);
	else
		bail("unknown fstype %s", fstype);
}

/* A new loop filesystem: image, mkfs, mount -o loop. */
static struct tmnt *
loopfs(const char *name, const char *fstype, const char *size,
    const char *imgdir, int guard)
{
	char img[PATH_MAX];
	const char *mnt = sub(name);

	(void)snprintf(img, sizeof img, "%s/%s.img", imgdir, name);
	make_image(img, fstype, size);
	mkdir_or_bail(mnt);
	RUN("mount", "-o", "loop", img, mnt);
	return track(mnt, guard);
}

static struct tmnt *
bindmount(const char *from, const char *name)
{
	const char *mnt = sub(name);

	mkdir_or_bail(mnt);
	if (mount(from, mnt, NULL, MS_BIND, NULL) == -1)
		bail("bind %s %s: %s", from, mnt, strerror(errno));
	return track(mnt, 1);
}

/* 1 frozen, 0 not (the probe's own freeze is undone at once), -errno. */
static int
probe(const struct tmnt *m)
{
	if (ioctl(m->fd, FIFREEZE, 0) == 0) {
		if (ioctl(m->fd, FITHAW, 0) == -1)
			bail("probe of %s could not thaw: %s", m->path,
			    strerror(errno));
		return 0;
	}
	return errno == EBUSY ? 1 : -errno;
}

static void
dirty(const struct tmnt *m, const char *name, size_t mib)
{
	static char block[1 << 20];
	char path[PATH_MAX + 64];
	size_t i;
	int fd;

	memset(block, 0x5a, sizeof block);
	(void)snprintf(path, sizeof path, "%s/%s", m->path, name);
	if (probe(m) != 0)
		bail("refusing to write to %s: frozen", m->path);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) ==
	    -1)
		bail("open %s: %s", path, strerror(errno));
	for (i = 0; i < mib; i++)
		if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
			bail("write %s: %s", path, strerror(errno));
	(void)close(fd);
}

/* ------------------------------------------------------------ plans */

static struct strlist inc, exc, exct, list;

static void
policy_reset(void)
{
	strlist_clear(&inc);
	strlist_clear(&exc);
	strlist_clear(&exct);
	strlist_clear(&list);
}

static int
is_ours(dev_t dev)
{
	int i;

	for (i = 0; i < nmnt; i++)
		if (mnts[i].dev == dev)
			return 1;
	return 0;
}

/*
 * The safety net before any freeze: every target is below our directory
 * and every fd to be frozen is on a device this test mounted.
 */
static void
check_safe(const struct freeze_plan *plan)
{
	size_t i, len = strlen(dir);
	struct stat st;

	for (i = 0; i < plan->n; i++) {
		const struct freeze_target *t = &plan->t[i];

		if (strncmp(t->point, dir, len) != 0 || t->point[len] != '/')
			bail("plan holds '%s', not a test mount", t->point);
		if (t->fd < 0)
			continue;
		if (fstat(t->fd, &st) == -1 || !is_ours(st.st_dev))
			bail("plan fd for '%s' is not on a test device",
			    t->point);
	}
}

static struct freeze_plan *
plan_make(int has_list)
{
	struct freeze_policy pol = { &inc, &exc, &exct, &list, has_list };
	struct mount_table mt;
	struct freeze_plan *plan;
	int r;

	if ((r = mounts_read(NULL, &mt)) < 0)
		bail("mounts_read: %s", strerror(-r));
	r = freeze_plan_build(&mt, &pol, &plan);
	mounts_free(&mt);
	if (r < 0)
		bail("freeze_plan_build: %s", strerror(-r));
	check_safe(plan);
	if ((r = freeze_plan_open(plan)) < 0)
		bail("freeze_plan_open: %s", strerror(-r));
	check_safe(plan);
	return plan;
}

static const struct freeze_target *
target(const struct freeze_plan *plan, const struct tmnt *m)
{
	size_t i;

	for (i = 0; i < plan->n; i++)
		if (strcmp(plan->t[i].point, m->path) == 0)
			return &plan->t[i];
	return NULL;
}

static const char *
skip_reason(const struct freeze_plan *plan, const char *point)
{
	size_t i;

	for (i = 0; i < plan->nskip; i++)
		if (strcmp(plan->skip[i].point, point) == 0)
			return plan->skip[i].reason;
	return NULL;
}

/* The reason of point's skip that starts with prefix, or NULL. */
static const char *
skip_with(const struct freeze_plan *plan, const char *point, const char *prefix)
{
	size_t i;

	for (i = 0; i < plan->nskip; i++)
		if (strcmp(plan->skip[i].point, point) == 0 &&
		    strncmp(plan->skip[i].reason, prefix, strlen(prefix)) == 0)
			return plan->skip[i].reason;
	return NULL;
}

struct result {
	int called;
	int r;
	int in_start;
	int inside;
	unsigned long ticks;
	unsigned long ticks_at_done;
	int timed_out;
};

static void
done_cb(void *arg, int r)
{
	struct result *res = arg;

	res->called++;
	res->r = r;
	if (res->in_start)
		res->inside = 1;
	res->ticks_at_done = res->ticks;
	ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct result *res = w->data;

	(void)loop;
	(void)revents;
	res->ticks++;
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct result *res = w->data;

	(void)revents;
	res->timed_out = 1;
	ev_break(loop, EVBREAK_ALL);
}

/* freeze_start and run the loop until done (or 20 s). */
static int
freeze_run(struct freeze_plan *plan, struct result *res)
{
	struct ev_loop *loop = EV_DEFAULT;
	ev_timer tick_w, deadline_w;
	int r;

	memset(res, 0, sizeof *res);
	check_safe(plan);
	ev_timer_init(&tick_w, tick_cb, 0.001, 0.001);
	tick_w.data = res;
	ev_timer_init(&deadline_w, deadline_cb, 20., 0.);
	deadline_w.data = res;
	ev_timer_start(loop, &tick_w);
	ev_timer_start(loop, &deadline_w);
	res->in_start = 1;
	r = freeze_start(loop, plan, done_cb, res);
	res->in_start = 0;
	if (r == 0)
		ev_run(loop, 0);
	ev_timer_stop(loop, &tick_w);
	ev_timer_stop(loop, &deadline_w);
	if (res->timed_out)
		bail("freeze did not finish in 20 s (deadlock?)");
	return r;
}

/* The guard log: "PID OP MAJ:MIN RC ERRNO" lines. */
struct gline {
	long pid;
	char op[32];
	dev_t dev;
	int rc;
	int err;
};

static size_t
guard_read(struct gline *v, size_t max)
{
	char line[256];
	unsigned int maj, min;
	size_t n = 0;
	FILE *f;

	if ((f = fopen(guardlog, "r")) == NULL)
		return 0;
	while (n < max && fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "%ld %31s %u:%u %d %d", &v[n].pid, v[n].op,
			&maj, &min, &v[n].rc, &v[n].err) != 6)
			continue;
		v[n].dev = makedev(maj, min);
		n++;
	}
	(void)fclose(f);
	return n;
}

static void
guard_reset(void)
{
	(void)unlink(guardlog);
}

/* Index of the first line with op on dev (any dev if 0), or -1. */
static long
guard_find(const struct gline *v, size_t n, const char *op, dev_t dev)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].op, op) == 0 && (dev == 0 || v[i].dev == dev))
			return (long)i;
	return -1;
}

/* ------------------------------------------------------------ tests */

static struct tmnt *e1, *e1b, *x1, *b1, *b1s;

static void
test_cycle(void)
{
	struct freeze_plan *plan;
	struct result res;
	struct gline g[256];
	size_t n, i, nfz = 0, nsync = 0;
	long last_sync = -1, first_fz;
	int workers = 1;

	strlist_add(&inc, e1->path);
	strlist_add(&inc, e1b->path);
	strlist_add(&inc, x1->path);
	strlist_add(&inc, b1->path);
	strlist_add(&inc, b1s->path);
	plan = plan_make(0);
	is_int(3, (long long)plan->n, "ext4+bind, xfs, btrfs+subvolume: 3");
	ok(target(plan, e1) != NULL && target(plan, x1) != NULL &&
		target(plan, b1) != NULL,
	    "targets are the whole-filesystem mounts");
	is_int(1, plan->nwaves, "independent: one wave");
	for (i = 0; i < plan->n; i++)
		if (plan->t[i].fd < 0 || plan->t[i].state != TARGET_PLANNED)
			break;
	ok(i == plan->n, "all opened");
	for (i = 0; i < plan->n; i++) {
		struct stat st;

		if (plan->t[i].fd < 0 || fstat(plan->t[i].fd, &st) == -1 ||
		    st.st_dev != plan->t[i].dev)
			break;
	}
	ok(i == plan->n, "each target's dev is its fd's st_dev");
	ok(target(plan, b1) != NULL && target(plan, b1)->dev == b1->dev,
	    "btrfs: the subvolume device the fd shows");

	dirty(e1, "dirty", 16);
	guard_reset();
	ok(freeze_run(plan, &res) == 0, "freeze_start");
	is_int(1, res.called, "done once");
	ok(!res.inside, "done not inside freeze_start");
	is_int(0, res.r, "done(0)");
	is_int(3, (long long)freeze_count(plan), "3 frozen");
	ok(freeze_failed(plan) == NULL, "none failed");
	ok(res.ticks_at_done > 0, "the loop ran during the freeze (%lu ticks)",
	    res.ticks_at_done);
	ok(plan->t_frozen > 0, "t_frozen set");
	for (i = 0; i < plan->n; i++)
		ok(plan->t[i].state == TARGET_FROZEN && plan->t[i].secs > 0,
		    "'%s' frozen in %.1f ms", plan->t[i].point,
		    plan->t[i].secs * 1e3);

	n = guard_read(g, nitems(g));
	first_fz = guard_find(g, n, "FIFREEZE-begin", 0);
	for (i = 0; i < n; i++) {
		if (g[i].pid == (long)getpid())
			continue;
		if (strcmp(g[i].op, "FIFREEZE") == 0) {
			nfz++;
			if (g[i].rc != 0)
				diag("FIFREEZE rc %d errno %d", g[i].rc,
				    g[i].err);
		}
		if (strcmp(g[i].op, "syncfs") == 0) {
			nsync++;
			last_sync = (long)i;
		}
	}
	for (i = 0; i < n; i++)
		if (strcmp(g[i].op, "FIFREEZE-begin") == 0 &&
		    g[i].pid == (long)getpid())
			workers = 0;
	is_int(3, (long long)nfz, "one FIFREEZE per filesystem, none EBUSY");
	ok(workers, "every FIFREEZE in a worker process");
	is_int(3, (long long)nsync, "each synced first");
	ok(first_fz > last_sync, "all syncfs before the first FIFREEZE");
	is_int(1, probe(e1), "ext4 probed frozen");
	is_int(1, probe(e1b), "its bind mount too");
	is_int(1, probe(x1), "xfs probed frozen");
	is_int(1, probe(b1), "btrfs probed frozen");
	is_int(1, probe(b1s), "its subvolume too");

	ok(freeze_start(EV_DEFAULT, plan, done_cb, &res) == -EALREADY,
	    "a second freeze_start: -EALREADY");
	is_int(3, (long long)freeze_thaw(plan), "thaw: 3");
	is_int(0, (long long)freeze_count(plan), "none frozen now");
	for (i = 0; i < plan->n; i++)
		ok(plan->t[i].state == TARGET_THAWED && plan->t[i].err == 0,
		    "'%s' thawed", plan->t[i].point);
	ok(probe(e1) == 0 && probe(e1b) == 0 && probe(x1) == 0 &&
		probe(b1) == 0 && probe(b1s) == 0,
	    "all probed thawed");
	is_int(0, (long long)freeze_thaw(plan), "a second thaw: 0");
	freeze_plan_free(plan);
	policy_reset();
}

/* The worker pids in the guard log, each once. */
static size_t
guard_pids(long *pids, size_t max)
{
	struct gline g[256];
	size_t n, i, j, k = 0;

	n = guard_read(g, nitems(g));
	for (i = 0; i < n; i++) {
		if (g[i].pid == (long)getpid())
			continue;
		for (j = 0; j < k && pids[j] != g[i].pid; j++)
			;
		if (j == k && k < max)
			pids[k++] = g[i].pid;
	}
	return k;
}

/* A kept worker holds only fds 0-3 (3: its socket) and says what it is. */
static int
worker_clean(long pid)
{
	char path[64], comm[32] = "";
	struct dirent *de;
	DIR *d;
	int bad = 0;
	FILE *f;

	(void)snprintf(path, sizeof path, "/proc/%ld/fd", pid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && atoi(de->d_name) > 3)
			bad++;
	(void)closedir(d);
	(void)snprintf(path, sizeof path, "/proc/%ld/comm", pid);
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(comm, sizeof comm, f) == NULL)
			comm[0] = '\0';
		(void)fclose(f);
	}
	return bad == 0 && strcmp(comm, "fsfa-worker\n") == 0;
}

/* Run the loop for secs. */
static void
loop_for(double secs)
{
	ev_timer t;

	ev_timer_init(&t, deadline_cb, secs, 0.);
	t.data = &(struct result){ 0 };
	ev_timer_start(EV_DEFAULT, &t);
	ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &t);
}

/*
 * The pool: one worker per target syncs and freezes, is kept, serves the
 * next freeze without a fork, keeps nothing of the agent, is replaced when
 * it died unseen, and exits once idle.
 */
static void
test_pool(void)
{
	struct freeze_plan *plan;
	struct result res;
	long first[8], again[8];
	size_t nfirst, nagain, i, j;
	siginfo_t si;
	int sub = 1, clean = 1, gone = 1;

	worker_close_idle();
	strlist_add(&inc, e1->path);
	strlist_add(&inc, x1->path);
	plan = plan_make(0);
	guard_reset();
	ok(freeze_run(plan, &res) == 0 && res.r == 0 && freeze_count(plan) == 2,
	    "pool: 2 frozen");
	nfirst = guard_pids(first, nitems(first));
	is_int(2, (long long)nfirst,
	    "pool: 2 workers did the syncfs and FIFREEZE");
	is_int(
	    2, (long long)worker_count(), "pool: both kept after the freeze");
	for (i = 0; i < nfirst; i++)
		clean &= worker_clean(first[i]);
	ok(clean, "pool: a kept worker holds fds 0-3 only and is fsfa-worker");
	is_int(2, (long long)freeze_thaw(plan), "pool: thaw: 2");
	freeze_plan_free(plan);

	plan = plan_make(0);
	guard_reset();
	ok(freeze_run(plan, &res) == 0 && res.r == 0 && freeze_count(plan) == 2,
	    "pool: the next freeze: 2 frozen");
	nagain = guard_pids(again, nitems(again));
	for (i = 0; i < nagain; i++) {
		for (j = 0; j < nfirst && first[j] != again[i]; j++)
			;
		sub &= j < nfirst;
	}
	ok(nagain > 0 && sub, "pool: ... by the same workers, no fork");
	is_int(2, (long long)freeze_thaw(plan), "pool: thaw: 2");
	freeze_plan_free(plan);

	/* One dies while idle; the loop does not run before the next call. */
	(void)kill((pid_t)first[0], SIGKILL);
	(void)waitid(P_PID, (id_t)first[0], &si, WEXITED | WNOWAIT);
	plan = plan_make(0);
	ok(freeze_run(plan, &res) == 0 && res.r == 0 && freeze_count(plan) == 2,
	    "pool: a worker that died unseen is replaced: 2 frozen");
	is_int(2, (long long)freeze_thaw(plan), "pool: thaw: 2");
	freeze_plan_free(plan);

	worker_set_idle(0.2);
	loop_for(0.6);
	is_int(0, (long long)worker_count(), "pool: idle workers exit");
	nagain = guard_pids(again, nitems(again));
	for (i = 0; i < nagain; i++)
		gone &= kill((pid_t)again[i], 0) == -1 && errno == ESRCH;
	ok(gone, "pool: ... and are reaped");
	worker_set_idle(WORKER_IDLE);
	policy_reset();
}

static void
test_foreign(void)
{
	struct freeze_plan *plan;
	struct result res;

	strlist_add(&inc, e1->path);
	strlist_add(&inc, x1->path);
	plan = plan_make(0);
	if (ioctl(e1->fd, FIFREEZE, 0) == -1)
		bail("FIFREEZE %s: %s", e1->path, strerror(errno));
	freeze_run(plan, &res);
	is_int(0, res.r, "foreign freeze: done(0)");
	ok(target(plan, e1) && target(plan, e1)->state == TARGET_BUSY &&
		target(plan, e1)->err == EBUSY,
	    "the foreign one is busy");
	is_int(1, (long long)freeze_count(plan), "not counted");
	is_int(1, (long long)freeze_thaw(plan), "thaw: 1");
	is_int(1, probe(e1), "someone else's freeze is still there");
	is_int(0, probe(x1), "ours is thawed");
	ok(ioctl(e1->fd, FITHAW, 0) == 0, "the test thaws its own");
	is_int(0, probe(e1), "thawed");
	freeze_plan_free(plan);

	/* Thawed behind our back: FITHAW says EINVAL, not counted. */
	plan = plan_make(0);
	freeze_run(plan, &res);
	is_int(2, (long long)freeze_count(plan), "2 frozen");
	(void)ioctl(x1->fd, FITHAW, 0);
	is_int(1, (long long)freeze_thaw(plan), "someone thawed one: thaw 1");
	ok(target(plan, x1) && target(plan, x1)->state == TARGET_THAWED &&
		target(plan, x1)->err == EINVAL,
	    "EINVAL recorded for the caller's warning");
	freeze_plan_free(plan);

	/* freeze_plan_free never thaws. */
	plan = plan_make(0);
	freeze_run(plan, &res);
	freeze_plan_free(plan);
	ok(probe(e1) == 1 && probe(x1) == 1, "freeze_plan_free did not thaw");
	(void)ioctl(e1->fd, FITHAW, 0);
	(void)ioctl(x1->fd, FITHAW, 0);

	/* fatal()'s path. */
	plan = plan_make(0);
	freeze_run(plan, &res);
	freeze_emergency_thaw(plan);
	ok(probe(e1) == 0 && probe(x1) == 0, "freeze_emergency_thaw thaws");
	is_int(0, (long long)freeze_count(plan), "and marks them thawed");
	freeze_plan_free(plan);
	policy_reset();
}

static void
test_overmount(void)
{
	struct freeze_plan *plan;
	struct result res;
	struct tmnt *e2, *e2b;
	const char *why;

	e2 = loopfs("e2", "ext4", "64M", dir, 1);
	e2b = bindmount(e2->path, "e2b");
	if (mount("t4020", e2->path, "tmpfs", 0, "size=1m") == -1)
		bail("tmpfs over %s: %s", e2->path, strerror(errno));
	(void)track(e2->path, 0);

	strlist_add(&inc, e2->path);
	plan = plan_make(0);
	is_int(1, (long long)plan->n, "over-mounted: one target");
	ok(plan->n == 1 && plan->t[0].state == TARGET_UNOPENED &&
		plan->t[0].fd < 0 && plan->t[0].err == EXDEV,
	    "over-mount detected: unopened, EXDEV");
	why = skip_reason(plan, e2->path);
	ok(why != NULL &&
		strcmp(why, "pseudo filesystem (no block device)") == 0,
	    "the tmpfs on top: pseudo");
	why = skip_with(plan, e2->path, "over-mounted");
	ok(why != NULL && strstr(why, "frozen through") == NULL &&
		plan->skip[plan->nskip - 1].warn,
	    "the ext4 below: '%s'", why ? why : "(none)");
	freeze_run(plan, &res);
	is_int(0, (long long)freeze_count(plan), "nothing frozen");
	is_int(0, probe(e2), "the ext4 below is not frozen");
	freeze_plan_free(plan);

	/* With its bind mount included, it is reached through that. */
	strlist_add(&inc, e2b->path);
	plan = plan_make(0);
	ok(plan->n == 1 && plan->t[0].fd >= 0 &&
		strcmp(plan->t[0].point, e2b->path) == 0,
	    "reached through the bind mount");
	why = skip_with(plan, e2->path, "over-mounted");
	ok(why != NULL && strstr(why, "frozen through") != NULL,
	    "and says so: '%s'", why ? why : "(none)");
	freeze_run(plan, &res);
	is_int(1, (long long)freeze_count(plan), "1 frozen");
	is_int(1, probe(e2), "the ext4 below is frozen");
	is_int(1, (long long)freeze_thaw(plan), "thaw: 1");
	is_int(0, probe(e2), "thawed");
	freeze_plan_free(plan);
	policy_reset();

	/* A freeze-list naming the covered point: the unlisted bind works. */
	strlist_add(&inc, sub("*"));
	strlist_add(&list, e2->path);
	plan = plan_make(1);
	ok(plan->n == 1 && plan->t[0].fd >= 0 &&
		strcmp(plan->t[0].point, e2b->path) == 0,
	    "freeze-list: reached through an unlisted bind mount");
	freeze_run(plan, &res);
	is_int(1, probe(e2), "frozen");
	is_int(1, (long long)freeze_thaw(plan), "thaw: 1");
	freeze_plan_free(plan);
	policy_reset();
}

static void
test_exclude(void)
{
	struct freeze_plan *plan;
	struct result res;
	size_t i, nfrozen;
	int bad = 0;

	strlist_add(&inc, sub("*"));
	strlist_add(&exc, x1->path);
	strlist_add(&exct, "btrfs");
	plan = plan_make(0);
	ok(target(plan, x1) == NULL, "exclude: xfs not a target");
	ok(target(plan, b1) == NULL && target(plan, b1s) == NULL,
	    "exclude_type: btrfs not a target");
	ok(target(plan, e1) != NULL, "ext4 is");
	ok(skip_reason(plan, x1->path) != NULL &&
		strstr(skip_reason(plan, x1->path), "exclude") != NULL,
	    "xfs: '%s'", skip_reason(plan, x1->path));
	ok(skip_reason(plan, b1s->path) != NULL &&
		strstr(skip_reason(plan, b1s->path), "exclude_type") != NULL,
	    "btrfs: '%s'", skip_reason(plan, b1s->path));
	for (i = 0; i < plan->n; i++)
		if (strcmp(plan->t[i].fstype, "ext4") != 0)
			bad++;
	is_int(0, bad, "only ext4 targets");
	freeze_run(plan, &res);
	ok(freeze_count(plan) >= 1, "froze %zu", freeze_count(plan));
	is_int(0, probe(x1), "excluded xfs not frozen");
	is_int(0, probe(b1), "excluded btrfs not frozen");
	is_int(1, probe(e1), "ext4 frozen");
	nfrozen = freeze_count(plan);
	is_int((long long)nfrozen, (long long)freeze_thaw(plan),
	    "thaw: all of them");
	is_int(0, probe(e1), "thawed");
	freeze_plan_free(plan);
	policy_reset();
}

static void
test_nested(void)
{
	struct freeze_plan *plan;
	struct result res;
	struct tmnt *nb, *na, *bad;
	const struct freeze_target *ta, *tb;
	struct gline g[256];
	size_t n;
	long a_end, b_begin, a_thaw, b_thaw;

	nb = loopfs("nb", "ext4", "256M", dir, 1);
	na = loopfs("na", "ext4", "64M", nb->path, 1);
	strlist_add(&inc, na->path);
	strlist_add(&inc, nb->path);
	plan = plan_make(0);
	ta = target(plan, na);
	tb = target(plan, nb);
	is_int(2, plan->nwaves, "loop on loop: two waves");
	ok(ta && tb && ta->wave == 0 && tb->wave == 1,
	    "the one on the image first, the one holding it second");
	dirty(na, "dirty", 32);
	guard_reset();
	freeze_run(plan, &res);
	is_int(0, res.r, "nested freeze: done(0), no deadlock");
	is_int(2, (long long)freeze_count(plan), "2 frozen");
	ok(probe(na) == 1 && probe(nb) == 1, "both probed frozen");
	is_int(2, (long long)freeze_thaw(plan), "thaw: 2");
	ok(probe(na) == 0 && probe(nb) == 0, "both probed thawed");
	n = guard_read(g, nitems(g));
	a_end = guard_find(g, n, "FIFREEZE", na->dev);
	b_begin = guard_find(g, n, "FIFREEZE-begin", nb->dev);
	a_thaw = guard_find(g, n, "FITHAW", na->dev);
	b_thaw = guard_find(g, n, "FITHAW", nb->dev);
	ok(a_end >= 0 && b_begin > a_end, "wave 1 starts after wave 0 is in");
	ok(b_thaw >= 0 && a_thaw > b_thaw, "thaw: backing filesystem first");
	freeze_plan_free(plan);

	/*
	 * A failure in wave 0 (the guard refuses one device: EPERM) stops
	 * the waves: what would hold the image is never frozen.
	 */
	bad = loopfs("gz", "ext4", "64M", dir, 0);
	is_int(-EPERM, (ioctl(bad->fd, FIFREEZE, 0) == -1 ? -errno : 0),
	    "the guard refuses a device not allowed");
	allow_dev(bad->dev);
	is_int(0, probe(bad), "allowed, it was not frozen");
	policy_reset();
	/* Rebuild the allow list without gz. */
	{
		int i;

		buf_reset(&allow);
		for (i = 0; i < nmnt; i++)
			if (&mnts[i] != bad && mnts[i].dev != 0)
				allow_dev(mnts[i].dev);
	}
	strlist_add(&inc, na->path);
	strlist_add(&inc, nb->path);
	strlist_add(&inc, bad->path);
	plan = plan_make(0);
	freeze_run(plan, &res);
	is_int(-EPERM, res.r, "a FIFREEZE error: done(-EPERM)");
	ok(freeze_failed(plan) == target(plan, bad) &&
		target(plan, bad)->state == TARGET_FAILED &&
		target(plan, bad)->err == EPERM,
	    "freeze_failed names it");
	ok(target(plan, na)->state == TARGET_FROZEN,
	    "the rest of its wave finished");
	ok(target(plan, nb)->state == TARGET_PLANNED,
	    "the next wave never started");
	is_int(0, probe(nb), "not frozen");
	is_int(1, (long long)freeze_thaw(plan), "rollback thaws 1");
	is_int(0, probe(na), "thawed");
	freeze_plan_free(plan);
	allow_dev(bad->dev);
	policy_reset();
}

static void
test_squashfs(void)
{
	struct freeze_policy pol = { &inc, &exc, &exct, &list, 0 };
	struct freeze_plan *plan;
	struct mount_table mt;
	struct result res;
	struct tmnt *sq;
	const char *src = sub("sqsrc"), *img = sub("sq.img"), *mnt = sub("sq");
	size_t i;

	if (!have("mksquashfs")) {
		skip(5, "mksquashfs not installed (squashfs-tools)");
		return;
	}
	mkdir_or_bail(src);
	RUN("mksquashfs", src, img, "-quiet", "-noappend");
	mkdir_or_bail(mnt);
	RUN("mount", "-o", "loop,ro", "-t", "squashfs", img, mnt);
	sq = track(mnt, 1);
	strlist_add(&inc, sq->path);
	plan = plan_make(0);
	ok(plan->n == 0 && skip_reason(plan, sq->path) != NULL &&
		strcmp(skip_reason(plan, sq->path), "read-only") == 0,
	    "squashfs: skipped as read-only");
	freeze_plan_free(plan);

	/* Pretend it is writable to reach its FIFREEZE: EOPNOTSUPP. */
	if (mounts_read(NULL, &mt) < 0)
		bail("mounts_read");
	for (i = 0; i < mt.n; i++)
		if (strcmp(mt.v[i].point, sq->path) == 0)
			mt.v[i].readonly = 0;
	if (freeze_plan_build(&mt, &pol, &plan) < 0)
		bail("freeze_plan_build");
	mounts_free(&mt);
	check_safe(plan);
	if (freeze_plan_open(plan) < 0)
		bail("freeze_plan_open");
	is_int(1, (long long)plan->n, "squashfs as a target");
	freeze_run(plan, &res);
	is_int(0, res.r, "EOPNOTSUPP is no failure");
	ok(plan->n == 1 && plan->t[0].state == TARGET_UNSUPPORTED &&
		plan->t[0].err == EOPNOTSUPP,
	    "unsupported");
	is_int(0, (long long)freeze_thaw(plan), "nothing to thaw");
	freeze_plan_free(plan);
	policy_reset();
}

static void
test_empty(void)
{
	struct freeze_plan *plan;
	struct result res;

	plan = plan_make(1);
	is_int(0, (long long)plan->n, "[]: no targets");
	is_int(0, freeze_run(plan, &res), "freeze_start with nothing");
	ok(res.called == 1 && !res.inside && res.r == 0,
	    "done(0) later, not inside");
	ok(plan->t_frozen == 0, "no FIFREEZE, no t_frozen");
	freeze_plan_free(plan);
}

/* Loop devices whose backing file is below our directory. */
static size_t
count_loops(void)
{
	char path[PATH_MAX], file[PATH_MAX];
	size_t len = strlen(dir), nl = 0;
	ssize_t n;
	int k, fd;

	for (k = 0; k < 256; k++) {
		(void)snprintf(path, sizeof path,
		    "/sys/block/loop%d/loop/backing_file", k);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		n = read(fd, file, sizeof file - 1);
		(void)close(fd);
		if (n > 0 && strncmp(file, dir, len) == 0)
			nl++;
	}
	return nl;
}

/* No mount, no loop device of ours may be left. */
static void
test_left_over(void)
{
	struct mount_table mt;
	size_t i, len = strlen(dir), nm = 0, nl = 0;
	int k;

	teardown();
	/* mount -o loop sets autoclear; the release may lag the umount. */
	for (k = 0; k < 200; k++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		if ((nl = count_loops()) == 0)
			break;
		(void)nanosleep(&ts, NULL);
	}
	if (mounts_read(NULL, &mt) == 0) {
		for (i = 0; i < mt.n; i++)
			if (strncmp(mt.v[i].point, dir, len) == 0)
				nm++;
		mounts_free(&mt);
	}
	is_int(0, (long long)nm, "nothing left mounted");
	is_int(0, (long long)nl, "no loop device left");
}

/* Run under the guard: re-exec with LD_PRELOAD unless it is loaded. */
static void
ensure_guard(char **argv)
{
	char self[PATH_MAX], exe[PATH_MAX], so[PATH_MAX + 16], *p, *env;
	const char *asan;
	ssize_t n;

	if (dlsym(RTLD_DEFAULT, "fsguard_active") != NULL)
		return;
	if (getenv("T4020_REEXEC") != NULL)
		bail("t/fsguard.so did not load under LD_PRELOAD");
	if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) == -1)
		bail("readlink /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	memcpy(exe, self, (size_t)n + 1);
	if ((p = strrchr(self, '/')) != NULL)
		*p = '\0';
	/* libtool-free build: t/fsguard.so sits beside this program. */
	(void)snprintf(so, sizeof so, "%s/fsguard.so", self);
	if (access(so, R_OK) == -1)
		bail("%s: %s", so, strerror(errno));
	(void)xasprintf(&env, "%s%s%s", so, getenv("LD_PRELOAD") ? ":" : "",
	    getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
	(void)setenv("LD_PRELOAD", env, 1);
	free(env);
	asan = getenv("ASAN_OPTIONS");
	(void)xasprintf(&env, "%s%sverify_asan_link_order=0", asan ? asan : "",
	    asan && *asan ? ":" : "");
	(void)setenv("ASAN_OPTIONS", env, 1);
	free(env);
	(void)setenv("FSFREEZE_GUARD_DEVS", "", 1);
	(void)setenv("T4020_REEXEC", "1", 1);
	fflush(stdout);
	/* By name: under valgrind /proc/self/exe would be valgrind itself. */
	execv(exe, argv);
	bail("execv: %s", strerror(errno));
}

int
main(int argc, char **argv)
{
	static const char *const tools[] = { "mount", "umount", "truncate",
		"mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "btrfs" };
	const char *tmp;
	struct sigaction sa;
	size_t i;

	(void)argc;
	if (geteuid() != 0)
		skip_all("needs root (loop mounts, FIFREEZE)");
	for (i = 0; i < nitems(tools); i++) {
		if (!have(tools[i])) {
			char why[64];

			(void)snprintf(why, sizeof why, "needs %s", tools[i]);
			skip_all(why);
		}
	}
	if (access("/dev/loop-control", W_OK) == -1)
		skip_all("no /dev/loop-control");
	ensure_guard(argv);

	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	(void)snprintf(dir, sizeof dir, "%s/t4020.XXXXXX", tmp);
	if (mkdtemp(dir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	(void)snprintf(guardlog, sizeof guardlog, "%s/guard.log", dir);
	(void)snprintf(cmdlog, sizeof cmdlog, "%s/cmd.log", dir);
	(void)snprintf(mntlist, sizeof mntlist, "%s/mounts", dir);
	(void)setenv("FSFREEZE_GUARD_LOG", guardlog, 1);
	buf_init(&allow, 0);
	atexit(cleanup_atexit);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = cleanup_signal;
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGHUP, &sa, NULL);
	(void)sigaction(SIGALRM, &sa, NULL);
	(void)sigaction(SIGQUIT, &sa, NULL);
	(void)sigaction(SIGABRT, &sa, NULL);
	(void)sigaction(SIGSEGV, &sa, NULL);
	(void)sigaction(SIGBUS, &sa, NULL);
	alarm(WATCHDOG_SECS + 30);
	watchdog_start();
	plan_lazy();

	e1 = loopfs("e1", "ext4", "64M", dir, 1);
	e1b = bindmount(e1->path, "e1b");
	x1 = loopfs("x1", "xfs", "300M", dir, 1);
	b1 = loopfs("b1", "btrfs", "256M", dir, 1);
	{
		char subv[PATH_MAX + 16], img[PATH_MAX];

		(void)snprintf(subv, sizeof subv, "%s/sub", b1->path);
		(void)snprintf(img, sizeof img, "%s/b1.img", dir);
		RUN("btrfs", "-q", "subvolume", "create", subv);
		mkdir_or_bail(sub("b1s"));
		RUN("mount", "-o", "loop,subvol=sub", img, sub("b1s"));
		b1s = track(sub("b1s"), 1);
	}

	test_empty();
	test_cycle();
	test_pool();
	test_foreign();
	test_overmount();
	test_exclude();
	test_nested();
	test_squashfs();
	test_left_over();
	buf_free(&allow);
	policy_reset();
	return tap_done();
}
