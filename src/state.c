/* SPDX-License-Identifier: ISC */
/*
 * The state file that outlives the agent, in state_dir (a tmpfs, never a
 * filesystem that can freeze). A line-based text file: a restarted agent
 * adopts it, and `fsfreeze-agent --thaw` thaws what it records.
 *
 *	fsfreeze-agent-state 1
 *	frozen_at <unix time>
 *	deadline <unix time or 0>
 *	complete <0|1>
 *	target <mount id> <major>:<minor> <mount point, octal-escaped>
 *	hook <path, octal-escaped>
 */

#include "config.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define STATE_MAGIC "fsfreeze-agent-state 1"
#define STATE_FILE "state"
#define STATE_MAX_SIZE (1024 * 1024)

const char *
state_path(const char *dir)
{
	static char path[PATH_MAX];

	(void)snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
	return path;
}

/* Escape space, tab, newline and backslash as mountinfo does (and as
 * mounts_unescape() reads it back). */
static void
state_put_escaped(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\\')
			(void)buf_addf(b, "\\%03o", (unsigned char)*s);
		else
			(void)buf_addc(b, *s);
	}
}

int
state_dir_dev(const char *dir, dev_t *devp)
{
	struct stat st;
	char path[PATH_MAX], *p;

	/* It is there on every freeze but the first: one stat(), no mkdir. */
	if (stat(dir, &st) == -1) {
		if (errno != ENOENT)
			return -errno;
		/* Like mkdir -p: a fresh /run has no fsfreeze-agent/ yet. */
		if (strlen(dir) >= sizeof path)
			return -ENAMETOOLONG;
		(void)strcpy(path, dir);
		for (p = path + 1; *p != '\0'; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(path, 0755) == -1 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			return -errno;
		if (stat(dir, &st) == -1)
			return -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	*devp = st.st_dev;
	return 0;
}

int
state_write(const char *dir, const struct freeze_plan *plan,
    const struct hook_set *hooks, size_t nhooks, const struct state_info *si)
{
	char tmp[PATH_MAX];
	const struct freeze_target *t;
	struct buf b;
	dev_t dev;
	size_t i, off;
	ssize_t n;
	int fd, r = 0;

	if ((r = state_dir_dev(dir, &dev)) < 0)
		return r;
	buf_init(&b, 0);
	(void)buf_addf(&b, "%s\nfrozen_at %lld\ndeadline %lld\ncomplete %d\n",
	    STATE_MAGIC, (long long)si->frozen_at, (long long)si->deadline,
	    si->complete);
	for (i = 0; i < plan->n; i++) {
		t = &plan->t[i];
		/*
		 * Before the freeze is done every planned target is written
		 * (one we froze must never be forgotten); after it, only
		 * those we froze.
		 */
		if (t->state != TARGET_FROZEN &&
		    (si->complete || t->state != TARGET_PLANNED))
			continue;
		(void)buf_addf(&b, "target %d %u:%u ", t->mnt_id, major(t->dev),
		    minor(t->dev));
		state_put_escaped(&b, t->point);
		(void)buf_addc(&b, '\n');
	}
	for (i = 0; i < nhooks && i < hooks->n; i++) {
		(void)buf_adds(&b, "hook ");
		state_put_escaped(&b, hooks->v[i].path);
		(void)buf_addc(&b, '\n');
	}
	(void)snprintf(tmp, sizeof tmp, "%s/%s.new", dir, STATE_FILE);
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		r = -errno;
		goto out;
	}
	for (off = 0; off < buf_used(&b); off += (size_t)n) {
		n = write(fd, buf_head(&b) + off, buf_used(&b) - off);
		if (n == -1 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0) {
			r = n == 0 ? -EIO : -errno;
			break;
		}
	}
	if (close(fd) == -1 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, state_path(dir)) == -1)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
out:
	buf_free(&b);
	return r;
}

int
state_remove(const char *dir)
{
	if (unlink(state_path(dir)) == -1)
		return -errno;
	return 0;
}

/* Open a recorded target; it must still be the device we froze. */
static void
state_open_target(struct freeze_target *t)
{
	struct stat st;

	t->fd = open(t->point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->fd == -1) {
		t->state = TARGET_UNOPENED;
		t->err = errno;
		return;
	}
	if (fstat(t->fd, &st) == -1 || st.st_dev != t->dev) {
		t->fd = safe_close(t->fd);
		t->state = TARGET_UNOPENED;
		t->err = ESTALE;
		return;
	}
	t->state = TARGET_FROZEN;
}

int
state_load(const char *dir, struct freeze_plan **planp, struct hook_set *hooks,
    struct state_info *si)
{
	struct freeze_plan *plan;
	struct freeze_target *t;
	char *data = NULL, *line, *next, *p;
	unsigned int maj, min;
	long long v;
	int fd, mnt_id, r = 0, lineno = 0, n;
	ssize_t len;
	size_t size = 0;

	*planp = NULL;
	memset(si, 0, sizeof *si);
	if ((fd = open(state_path(dir), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
	    -1)
		return errno == ENOENT ? 0 : -errno;
	data = xmalloc(STATE_MAX_SIZE + 1);
	while (size < STATE_MAX_SIZE) {
		len = read(fd, data + size, STATE_MAX_SIZE - size);
		if (len == -1 && errno == EINTR)
			continue;
		if (len == -1) {
			r = -errno;
			break;
		}
		if (len == 0)
			break;
		size += (size_t)len;
	}
	(void)close(fd);
	if (r < 0) {
		free(data);
		return r;
	}
	data[size] = '\0';
	plan = xcalloc(1, sizeof *plan);
	for (line = data; line != NULL && *line != '\0'; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (lineno == 1) {
			if (strcmp(line, STATE_MAGIC) != 0) {
				r = -EINVAL;
				break;
			}
		} else if (sscanf(line, "frozen_at %lld", &v) == 1)
			si->frozen_at = (time_t)v;
		else if (sscanf(line, "deadline %lld", &v) == 1)
			si->deadline = (time_t)v;
		else if (sscanf(line, "complete %lld", &v) == 1)
			si->complete = v != 0;
		else if (sscanf(line, "target %d %u:%u %n", &mnt_id, &maj, &min,
			     &n) == 3) {
			plan->t = xreallocarray(
			    plan->t, plan->n + 1, sizeof *plan->t);
			t = &plan->t[plan->n++];
			memset(t, 0, sizeof *t);
			t->mnt_id = mnt_id;
			t->dev = makedev(maj, min);
			t->point = mounts_unescape(line + n);
			t->fstype = xstrdup("");
			t->source = xstrdup("");
			t->fd = -1;
			state_open_target(t);
		} else if (strncmp(line, "hook ", 5) == 0) {
			p = mounts_unescape(line + 5);
			hook_set_add(hooks, p);
			free(p);
		} else if (*line != '\0') {
			r = -EINVAL;
			break;
		}
	}
	free(data);
	if (r < 0) {
		freeze_plan_free(plan);
		hook_set_clear(hooks);
		return r;
	}
	*planp = plan;
	return 1;
}
