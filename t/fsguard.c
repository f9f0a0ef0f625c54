/* SPDX-License-Identifier: ISC */
/*
 * An LD_PRELOAD safety shim for the tests: ioctl(FIFREEZE) is refused with
 * EPERM (and a line on stderr) unless the fd's st_dev is in the allow list
 * $FSFREEZE_GUARD_DEVS ("MAJ:MIN,MAJ:MIN"), read at every call so a test
 * can grow it as it mounts. Forked workers are the same process image, so
 * they are covered too. With $FSFREEZE_GUARD_LOG set, every FIFREEZE (its
 * start and its result), FITHAW and syncfs is appended there as
 * "PID OP MAJ:MIN RC ERRNO", one write each, so tests can check order.
 * Under ASan set ASAN_OPTIONS=verify_asan_link_order=0.
 */

#include "config.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fs.h>

/* Tests look this up to know the shim is loaded. */
int fsguard_active = 1;

typedef int ioctl_fn(int, unsigned long, ...);
typedef int syncfs_fn(int);

static int fsguard_allowed(dev_t);
static void fsguard_log(const char *, dev_t, int, int);

static int
fsguard_allowed(dev_t dev)
{
	const char *s = getenv("FSFREEZE_GUARD_DEVS");
	unsigned long maj, min;
	char *end;

	if (s == NULL)
		return 0;
	while (*s != '\0') {
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

static void
fsguard_log(const char *op, dev_t dev, int rc, int err)
{
	const char *path = getenv("FSFREEZE_GUARD_LOG");
	char line[128];
	int fd, n;

	if (path == NULL || *path == '\0')
		return;
	n = snprintf(line, sizeof line, "%ld %s %u:%u %d %d\n", (long)getpid(),
	    op, major(dev), minor(dev), rc, err);
	if (n <= 0 || (size_t)n >= sizeof line)
		return;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return;
	(void)write(fd, line, (size_t)n);
	(void)close(fd);
}

int
ioctl(int fd, unsigned long req, ...)
{
	static ioctl_fn *real;
	struct stat st;
	char msg[160];
	va_list ap;
	void *arg;
	int r, e, n, saved = errno;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (real == NULL &&
	    (real = (ioctl_fn *)dlsym(RTLD_NEXT, "ioctl")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (req != FIFREEZE && req != FITHAW)
		return real(fd, req, arg);
	if (fstat(fd, &st) == -1)
		return -1;
	if (req == FIFREEZE && !fsguard_allowed(st.st_dev)) {
		n = snprintf(msg, sizeof msg,
		    "fsguard: refused FIFREEZE on device %u:%u (pid %ld): "
		    "not in FSFREEZE_GUARD_DEVS\n",
		    major(st.st_dev), minor(st.st_dev), (long)getpid());
		if (n > 0 && (size_t)n < sizeof msg)
			(void)write(STDERR_FILENO, msg, (size_t)n);
		fsguard_log("FIFREEZE-refused", st.st_dev, -1, EPERM);
		errno = EPERM;
		return -1;
	}
	if (req == FIFREEZE)
		fsguard_log("FIFREEZE-begin", st.st_dev, 0, 0);
	errno = saved;
	r = real(fd, req, arg);
	e = r == -1 ? errno : 0;
	fsguard_log(req == FIFREEZE ? "FIFREEZE" : "FITHAW", st.st_dev, r, e);
	errno = r == -1 ? e : saved;
	return r;
}

int
syncfs(int fd)
{
	static syncfs_fn *real;
	struct stat st;
	int r, e, saved = errno;

	if (real == NULL &&
	    (real = (syncfs_fn *)dlsym(RTLD_NEXT, "syncfs")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	r = real(fd);
	e = r == -1 ? errno : 0;
	if (fstat(fd, &st) == 0)
		fsguard_log("syncfs", st.st_dev, r, e);
	errno = r == -1 ? e : saved;
	return r;
}
