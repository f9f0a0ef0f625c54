/* SPDX-License-Identifier: ISC */
/*
 * The freeze plan: which filesystems to freeze, decided from mountinfo; their
 * fds, opened and checked; the waves of workers that syncfs and FIFREEZE
 * them; and the thaw of exactly the set we froze.
 */

#include "config.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fs.h>

#include <ev.h>

#include "agent.h"

/* Loop devices stacked on loop devices: the deepest chain we follow. */
#define FREEZE_MAX_CHAIN 16

static int freeze_stat_source(const char *, dev_t *);

struct freeze_ops freeze_ops = {
	.sysfs_root = "/sys",
	.stat_source = freeze_stat_source,
};

/* One mountinfo entry through which a target can be opened. */
struct freeze_entry {
	char *point;
	int mnt_id;
	size_t idx; /* its place in the mount table */
	int listed; /* named by the freeze-list, or no list */
};

enum freeze_phase { RUN_IDLE, RUN_SYNC, RUN_FREEZE, RUN_DONE };

/* Per target, parallel to plan->t. */
struct freeze_slot {
	struct freeze_plan *plan;
	unsigned int major; /* mountinfo's superblock device */
	unsigned int minor;
	int btrfs;
	struct freeze_entry *e; /* by preference; e[0] is the target's point */
	size_t ne;
	struct worker *w; /* its call is in flight */
	double t0;
	int killed; /* its FIFREEZE worker died during the call */
};

struct freeze_priv {
	struct freeze_plan *plan;
	struct freeze_slot *s;
	struct ev_loop *loop;
	freeze_done_fn *done;
	void *arg;
	enum freeze_phase phase;
	unsigned int wave;
	size_t next; /* the next target this phase considers */
	size_t inflight;
	int stop;     /* a failure: start no more workers */
	int thawing;  /* freeze_thaw() ran: thaw late results at once */
	int in_start; /* inside freeze_start(): defer done() */
	ev_timer defer_w;
};

/* Per mountinfo entry while the plan is built. */
struct freeze_cand {
	int ok; /* passes the policy */
	int listed;
	int excluded; /* by exclude or exclude_type: the whole fs */
	char *reason;
	dev_t bdev;    /* btrfs: the source's block device */
	size_t target; /* + 1; 0: none */
};

struct freeze_edge {
	size_t from; /* freezes before */
	size_t to;
};

static const char *const target_state_names[TARGET_STATE_MAX] = {
	[TARGET_PLANNED] = "planned",
	[TARGET_FROZEN] = "frozen",
	[TARGET_UNSUPPORTED] = "unsupported",
	[TARGET_BUSY] = "busy",
	[TARGET_UNOPENED] = "unopened",
	[TARGET_FAILED] = "failed",
	[TARGET_THAWED] = "thawed",
};

/* Types that reach over a network: never opened, whatever their device. */
/* clang-format off */
static const char *const freeze_net_types[] = {
	"nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "ceph", "glusterfs",
	"9p", "virtiofs", "afs", "ncpfs", "ncp", "coda", "lustre", "gpfs",
	"beegfs", "orangefs", "pvfs2", "ocfs2_dlmfs", "davfs", "sshfs",
};
/* clang-format on */

static const char *freeze_strlist_match(const struct strlist *, const char *);
static char *freeze_policy_skip(
    const struct mount *, const struct freeze_policy *, struct freeze_cand *);
static int freeze_backing(dev_t, char *, size_t);
static ssize_t freeze_mount_of(const struct mount_table *, const char *);
static int freeze_lookup_dev(
    const struct mount *, const struct freeze_cand *, dev_t *);
static size_t freeze_target_of(
    const struct mount_table *, const struct freeze_plan *, size_t);
static int freeze_waves(const struct mount_table *, struct freeze_cand *,
    struct freeze_plan *, unsigned int *);
static void freeze_add_skip(
    struct freeze_plan *, const char *, const char *, char *, int);
static int freeze_order_cmp(const void *, const void *);
static int freeze_fd_mnt_id(int, int *, dev_t *);
static int freeze_open_entry(struct freeze_slot *, struct freeze_entry *, int *,
    dev_t *, char **, int *);
static int freeze_call(struct freeze_plan *, size_t);
static void freeze_done_cb(void *, int);
static void freeze_defer_cb(struct ev_loop *, ev_timer *, int);
static void freeze_pump(struct freeze_plan *);
static void freeze_finish(struct freeze_plan *);
static int freeze_fithaw(struct freeze_target *, struct freeze_slot *);

const char *
target_state_name(enum target_state st)
{
	if ((unsigned int)st >= TARGET_STATE_MAX)
		return "unknown";
	return target_state_names[st];
}

/* The first glob of sl that matches s, or NULL. */
static const char *
freeze_strlist_match(const struct strlist *sl, const char *s)
{
	size_t i;

	for (i = 0; sl != NULL && i < sl->n; i++)
		if (fnmatch(sl->v[i], s, 0) == 0)
			return sl->v[i];
	return NULL;
}

/*
 * Only stat() what looks like a device node: a source is free text, and a
 * path elsewhere could sit on a hung network mount.
 */
static int
freeze_stat_source(const char *source, dev_t *rdev)
{
	struct stat st;

	if (strncmp(source, "/dev/", 5) != 0)
		return -ENOTBLK;
	if (stat(source, &st) == -1)
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	*rdev = st.st_rdev;
	return 0;
}

/*
 * Why an entry is not a candidate, or NULL. From its fields alone: nothing
 * on the mount is touched (a btrfs source is a /dev node, not the mount).
 * FUSE comes before the device check because fuseblk has a real one.
 */
static char *
freeze_policy_skip(const struct mount *m, const struct freeze_policy *pol,
    struct freeze_cand *c)
{
	const char *g;
	char *reason;
	size_t i;

	if (pol->include != NULL && pol->include->n > 0 &&
	    freeze_strlist_match(pol->include, m->point) == NULL)
		return xstrdup("not in [freeze] include");
	if ((g = freeze_strlist_match(pol->exclude, m->point)) != NULL) {
		c->excluded = 1;
		(void)xasprintf(
		    &reason, "excluded by [freeze] exclude '%s'", g);
		return reason;
	}
	if ((g = freeze_strlist_match(pol->exclude_type, m->fstype)) != NULL) {
		c->excluded = 1;
		(void)xasprintf(
		    &reason, "excluded by [freeze] exclude_type '%s'", g);
		return reason;
	}
	for (i = 0; i < nitems(freeze_net_types); i++)
		if (strcmp(m->fstype, freeze_net_types[i]) == 0)
			return xstrdup("network filesystem");
	if (strcmp(m->fstype, "fuse") == 0 ||
	    strcmp(m->fstype, "fuseblk") == 0 ||
	    strncmp(m->fstype, "fuse.", 5) == 0)
		return xstrdup("FUSE filesystem");
	if (m->major == 0) {
		/* btrfs shows an anonymous device; its source is the disk. */
		if (strcmp(m->fstype, "btrfs") != 0)
			return xstrdup("pseudo filesystem (no block device)");
		if (freeze_ops.stat_source(m->source, &c->bdev) < 0) {
			(void)xasprintf(&reason,
			    "btrfs source '%s' is not a block device",
			    m->source);
			return reason;
		}
	}
	if (m->readonly)
		return xstrdup("read-only");
	return NULL;
}

/*
 * The file behind a loop device, from sysfs; a partition of a loop device
 * finds it in its parent's directory. -errno when dev is no loop device.
 */
static int
freeze_backing(dev_t dev, char *path, size_t size)
{
	static const char *const rel[] = { "loop/backing_file",
		"../loop/backing_file" };
	char file[PATH_MAX];
	ssize_t n = -1;
	size_t i, len;
	int fd = -1, r = -ENOENT;

	for (i = 0; i < nitems(rel) && fd == -1; i++) {
		if ((size_t)snprintf(file, sizeof file, "%s/dev/block/%u:%u/%s",
			freeze_ops.sysfs_root, major(dev), minor(dev),
			rel[i]) >= sizeof file)
			return -ENAMETOOLONG;
		if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
			r = -errno;
	}
	if (fd == -1)
		return r;
	do
		n = read(fd, path, size - 1);
	while (n == -1 && errno == EINTR);
	r = n == -1 ? -errno : 0;
	(void)safe_close(fd);
	if (r < 0)
		return r;
	path[n] = '\0';
	len = strcspn(path, "\n");
	path[len] = '\0';
	/* An unlinked backing file still lives on its filesystem. */
	if (len > 10 && strcmp(path + len - 10, " (deleted)") == 0)
		path[len - 10] = '\0';
	return path[0] == '/' ? 0 : -ENOENT;
}

/*
 * The mount holding path, by its mount point alone: the deepest point that
 * is a whole-component prefix, the last of equals (the top of a stack).
 * No stat(): the file may be on a mount we must not touch.
 */
static ssize_t
freeze_mount_of(const struct mount_table *mt, const char *path)
{
	ssize_t best = -1;
	size_t i, len, bestlen = 0;
	const char *p;

	for (i = 0; i < mt->n; i++) {
		p = mt->v[i].point;
		len = strlen(p);
		if (len == 1 && p[0] == '/')
			len = 0;
		else if (strncmp(path, p, len) != 0 ||
		    (path[len] != '/' && path[len] != '\0'))
			continue;
		if (best == -1 || len >= bestlen) {
			best = (ssize_t)i;
			bestlen = len;
		}
	}
	return best;
}

/* The block device behind a mount entry, for the loop look-up. */
static int
freeze_lookup_dev(
    const struct mount *m, const struct freeze_cand *c, dev_t *dev)
{
	if (m->major != 0) {
		*dev = makedev(m->major, m->minor);
		return 0;
	}
	if (strcmp(m->fstype, "btrfs") != 0)
		return -ENOTBLK;
	if (c->ok) {
		*dev = c->bdev;
		return 0;
	}
	return freeze_ops.stat_source(m->source, dev);
}

/* The target whose superblock is entry j's, + 1; 0: none. */
static size_t
freeze_target_of(
    const struct mount_table *mt, const struct freeze_plan *plan, size_t j)
{
	const struct freeze_priv *p = plan->priv;
	size_t k;

	for (k = 0; k < plan->n; k++)
		if (p->s[k].major == mt->v[j].major &&
		    p->s[k].minor == mt->v[j].minor)
			return k + 1;
	return 0;
}

/*
 * A filesystem on a loop device whose backing file lives on filesystem B
 * must be frozen before B: with B frozen first, its writeback would stall
 * in B and the freeze would deadlock. The chain is followed through
 * filesystems that are not targets too (A's file on C, C on a loop whose
 * file is on B: A before B). Every target's wave is one more than the
 * latest wave of those that must precede it; with none it is wave 0, so
 * independent filesystems share a wave and freeze in parallel. Nesting of
 * mount points alone implies nothing (FIFREEZE of a parent does not block
 * a child filesystem).
 */
static int
freeze_waves(const struct mount_table *mt, struct freeze_cand *c,
    struct freeze_plan *plan, unsigned int *wave)
{
	struct freeze_priv *p = plan->priv;
	struct freeze_edge *edge = NULL;
	size_t nedge = 0, i, k, pass, from;
	char path[PATH_MAX];
	unsigned int depth;
	ssize_t j;
	dev_t dev;
	int changed;

	for (i = 0; i < plan->n; i++) {
		wave[i] = 0;
		dev = p->s[i].btrfs ? c[p->s[i].e[0].idx].bdev
				    : makedev(p->s[i].major, p->s[i].minor);
		for (depth = 0; depth < FREEZE_MAX_CHAIN; depth++) {
			if (freeze_backing(dev, path, sizeof path) < 0 ||
			    (j = freeze_mount_of(mt, path)) < 0)
				break;
			k = freeze_target_of(mt, plan, (size_t)j);
			if (k != 0 && k - 1 != i) {
				edge = xreallocarray(
				    edge, nedge + 1, sizeof *edge);
				edge[nedge].from = i;
				edge[nedge++].to = k - 1;
			}
			if (freeze_lookup_dev(&mt->v[j], &c[j], &dev) < 0)
				break;
		}
	}
	/* Longest path by relaxation; still moving after n passes: a cycle. */
	for (pass = 0, changed = 1; changed && pass <= plan->n; pass++) {
		changed = 0;
		for (i = 0; i < nedge; i++) {
			from = edge[i].from;
			if (wave[edge[i].to] < wave[from] + 1) {
				wave[edge[i].to] = wave[from] + 1;
				changed = 1;
			}
		}
	}
	free(edge);
	return changed ? -ELOOP : 0;
}

static void
freeze_add_skip(struct freeze_plan *plan, const char *point, const char *fstype,
    char *reason, int warn)
{
	struct plan_skip *sk;

	plan->skip =
	    xreallocarray(plan->skip, plan->nskip + 1, sizeof *plan->skip);
	sk = &plan->skip[plan->nskip++];
	sk->point = xstrdup(point);
	sk->fstype = xstrdup(fstype);
	sk->reason = reason;
	sk->warn = warn;
}

struct freeze_order {
	size_t target;
	unsigned int wave;
	size_t idx; /* mountinfo position of its first entry */
};

/* Wave by wave; within one, reverse mountinfo order as qemu-ga does. */
static int
freeze_order_cmp(const void *a, const void *b)
{
	const struct freeze_order *x = a, *y = b;

	if (x->wave != y->wave)
		return x->wave < y->wave ? -1 : 1;
	if (x->idx != y->idx)
		return x->idx > y->idx ? -1 : 1;
	return 0;
}

int
freeze_plan_build(const struct mount_table *mt, const struct freeze_policy *pol,
    struct freeze_plan **planp)
{
	struct freeze_plan *plan;
	struct freeze_priv *p;
	struct freeze_cand *c;
	struct freeze_order *ord = NULL;
	struct freeze_target *t, *nt = NULL;
	struct freeze_slot *s, *ns = NULL;
	struct freeze_entry *e;
	const struct mount *m;
	unsigned int *wave = NULL, maxwave = 0;
	size_t i, j, k, pass, n;
	int r = 0, matched;

	*planp = NULL;
	plan = xcalloc(1, sizeof *plan);
	plan->priv = p = xcalloc(1, sizeof *p);
	p->plan = plan;
	c = xcalloc(mt->n == 0 ? 1 : mt->n, sizeof *c);

	for (i = 0; i < mt->n; i++) {
		m = &mt->v[i];
		c[i].listed =
		    !pol->has_list || strlist_has(pol->list, m->point);
		c[i].reason = freeze_policy_skip(m, pol, &c[i]);
		c[i].ok = c[i].reason == NULL;
	}
	/*
	 * An exclusion names a filesystem by one of its mount points: none of
	 * its other mounts (a bind mount, a subvolume) may freeze it instead.
	 */
	for (i = 0; i < mt->n; i++) {
		if (!c[i].excluded)
			continue;
		for (j = 0; j < mt->n; j++) {
			if (!c[j].ok || mt->v[j].major != mt->v[i].major ||
			    mt->v[j].minor != mt->v[i].minor)
				continue;
			c[j].ok = 0;
			(void)xasprintf(&c[j].reason,
			    "same filesystem as excluded '%s'", mt->v[i].point);
		}
	}
	/* Skips are recorded for what was asked for: no list, or listed. */
	for (i = 0; i < mt->n; i++) {
		if (c[i].ok || !c[i].listed) {
			free(c[i].reason);
			c[i].reason = NULL;
			continue;
		}
		freeze_add_skip(
		    plan, mt->v[i].point, mt->v[i].fstype, c[i].reason, 0);
		c[i].reason = NULL;
	}
	if (pol->has_list && pol->list != NULL) {
		for (k = 0; k < pol->list->n; k++) {
			for (i = 0, matched = 0; i < mt->n && !matched; i++)
				matched = strcmp(mt->v[i].point,
					      pol->list->v[k]) == 0;
			if (!matched &&
			    !strlist_has(&plan->unmatched, pol->list->v[k]))
				strlist_add(&plan->unmatched, pol->list->v[k]);
		}
	}

	/*
	 * One superblock, one target: mountinfo's major:minor is the
	 * superblock's device (btrfs subvolumes share their filesystem's
	 * anonymous one). Its entries by preference: listed ones, root "/"
	 * (the whole filesystem, not a bind of a subtree), mountinfo order.
	 * Unlisted ones stay as a way in when a listed point is over-mounted.
	 */
	for (i = 0; i < mt->n; i++) {
		if (!c[i].ok || !c[i].listed || c[i].target != 0)
			continue;
		m = &mt->v[i];
		n = plan->n;
		plan->t = xreallocarray(plan->t, n + 1, sizeof *plan->t);
		p->s = xreallocarray(p->s, n + 1, sizeof *p->s);
		t = &plan->t[n];
		s = &p->s[n];
		memset(t, 0, sizeof *t);
		t->fd = -1;
		memset(s, 0, sizeof *s);
		s->major = m->major;
		s->minor = m->minor;
		s->btrfs = strcmp(m->fstype, "btrfs") == 0;
		for (pass = 0; pass < 4; pass++) {
			for (j = 0; j < mt->n; j++) {
				if (!c[j].ok || c[j].target != 0 ||
				    mt->v[j].major != m->major ||
				    mt->v[j].minor != m->minor)
					continue;
				if ((pass < 2 && !c[j].listed) ||
				    (pass % 2 == 0 &&
					strcmp(mt->v[j].root, "/") != 0))
					continue;
				c[j].target = n + 1;
				s->e = xreallocarray(
				    s->e, s->ne + 1, sizeof *s->e);
				e = &s->e[s->ne++];
				e->point = xstrdup(mt->v[j].point);
				e->mnt_id = mt->v[j].id;
				e->idx = j;
				e->listed = c[j].listed;
			}
		}
		plan->n++;
	}

	wave = xcalloc(plan->n == 0 ? 1 : plan->n, sizeof *wave);
	if ((r = freeze_waves(mt, c, plan, wave)) < 0)
		goto out;

	ord = xcalloc(plan->n == 0 ? 1 : plan->n, sizeof *ord);
	for (i = 0; i < plan->n; i++) {
		ord[i].target = i;
		ord[i].wave = wave[i];
		ord[i].idx = p->s[i].e[0].idx;
		if (wave[i] > maxwave)
			maxwave = wave[i];
	}
	qsort(ord, plan->n, sizeof *ord, freeze_order_cmp);
	nt = xcalloc(plan->n == 0 ? 1 : plan->n, sizeof *nt);
	ns = xcalloc(plan->n == 0 ? 1 : plan->n, sizeof *ns);
	for (i = 0; i < plan->n; i++) {
		j = ord[i].idx;
		m = &mt->v[j];
		t = &nt[i];
		s = &ns[i];
		*s = p->s[ord[i].target];
		s->plan = plan;
		t->point = xstrdup(s->e[0].point);
		t->fstype = xstrdup(m->fstype);
		t->source = xstrdup(m->source);
		t->dev = makedev(m->major, m->minor);
		t->mnt_id = m->id;
		t->fd = -1;
		t->wave = ord[i].wave;
		t->state = TARGET_PLANNED;
	}
	free(plan->t);
	free(p->s);
	plan->t = nt;
	p->s = ns;
	nt = NULL;
	ns = NULL;
	plan->nwaves = plan->n == 0 ? 0 : maxwave + 1;
	*planp = plan;
	plan = NULL;
out:
	for (i = 0; i < mt->n; i++)
		free(c[i].reason);
	free(c);
	free(ord);
	free(wave);
	freeze_plan_free(plan);
	return r;
}

/*
 * Which mount an fd is on: statx() (Linux 5.8) or /proc/self/fdinfo, which
 * has said mnt_id since 3.15. *mnt_id is -1 when neither can tell.
 */
static int
freeze_fd_mnt_id(int fd, int *mnt_id, dev_t *dev)
{
	char path[64], buf[512], *q;
	struct stat st;
	ssize_t n;
	int ifd;

	*mnt_id = -1;
#if defined(HAVE_STATX) && defined(STATX_MNT_ID)
	{
		struct statx stx;

		if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT,
			STATX_MNT_ID, &stx) == 0) {
			*dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
			if (stx.stx_mask & STATX_MNT_ID) {
				*mnt_id = (int)stx.stx_mnt_id;
				return 0;
			}
		} else if (errno != ENOSYS)
			return -errno;
	}
#endif
	if (fstat(fd, &st) == -1)
		return -errno;
	*dev = st.st_dev;
	(void)snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if ((ifd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return 0;
	n = read(ifd, buf, sizeof buf - 1);
	(void)safe_close(ifd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if ((q = strstr(buf, "mnt_id:")) != NULL)
		*mnt_id = atoi(q + 7);
	return 0;
}

/*
 * Open one entry and check that the fd is that mount: a mount point
 * over-mounted since (tmpfs over /mnt/b) reaches the top mount instead.
 * 0 with *fdp >= 0: verified; 0 with *fdp == -1: skipped, *reasonp says
 * why and *errp the errno (EXDEV: another mount); -errno: the plan cannot
 * go on.
 */
static int
freeze_open_entry(struct freeze_slot *s, struct freeze_entry *e, int *fdp,
    dev_t *devp, char **reasonp, int *errp)
{
	dev_t dev = 0, want = makedev(s->major, s->minor);
	int fd, r, mnt_id;

	*fdp = -1;
	*errp = 0;
	fd = open(e->point, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		r = errno;
		switch (r) {
		case ENOENT:
		case EACCES:
		case ENXIO:
		case EIO:
		case ESTALE:
		case ENOTDIR: /* a bind mount of a file */
		case ELOOP:   /* a symbolic link where the point was */
			*errp = r;
			(void)xasprintf(
			    reasonp, "cannot open: %s", strerror(r));
			return 0;
		default:
			return -r;
		}
	}
	if ((r = freeze_fd_mnt_id(fd, &mnt_id, &dev)) < 0) {
		(void)safe_close(fd);
		return r;
	}
	if (mnt_id != -1 && mnt_id != e->mnt_id) {
		(void)safe_close(fd);
		*errp = EXDEV;
		(void)xasprintf(reasonp,
		    "over-mounted: the path reaches mount %d, not %d", mnt_id,
		    e->mnt_id);
		return 0;
	}
	/* btrfs shows each subvolume's own st_dev, not the superblock's. */
	if (!s->btrfs && dev != want) {
		(void)safe_close(fd);
		*errp = EXDEV;
		(void)xasprintf(reasonp,
		    "over-mounted: the path reaches device %u:%u, not %u:%u",
		    major(dev), minor(dev), s->major, s->minor);
		return 0;
	}
	*fdp = fd;
	*devp = dev;
	return 0;
}

int
freeze_plan_open(struct freeze_plan *plan)
{
	struct freeze_priv *p = plan->priv;
	struct freeze_target *t;
	struct freeze_slot *s;
	char **reason;
	size_t i, k, used;
	int fd, err, first_err, r;
	dev_t dev = 0;

	if (p == NULL)
		return -EINVAL;
	for (i = 0; i < plan->n; i++) {
		t = &plan->t[i];
		s = &p->s[i];
		if (t->state != TARGET_PLANNED || t->fd >= 0)
			continue;
		reason = xcalloc(s->ne, sizeof *reason);
		fd = -1;
		first_err = 0;
		for (k = 0; k < s->ne && fd == -1; k++) {
			if ((r = freeze_open_entry(s, &s->e[k], &fd, &dev,
				 &reason[k], &err)) < 0) {
				for (k = 0; k < s->ne; k++)
					free(reason[k]);
				free(reason);
				return r;
			}
			if (k == 0)
				first_err = err;
		}
		used = fd == -1 ? s->ne : k - 1;
		/* Each failed entry gets its warning, listed ones only. */
		for (k = 0; k < s->ne; k++) {
			if (reason[k] == NULL)
				continue;
			if (s->e[k].listed) {
				if (fd != -1) {
					char *full;

					(void)xasprintf(&full,
					    "%s; frozen through '%s'",
					    reason[k], s->e[used].point);
					free(reason[k]);
					reason[k] = full;
				}
				freeze_add_skip(plan, s->e[k].point, t->fstype,
				    reason[k], 1);
			} else
				free(reason[k]);
		}
		free(reason);
		if (fd == -1) {
			t->state = TARGET_UNOPENED;
			t->err = first_err;
			continue;
		}
		if (used != 0) {
			free(t->point);
			t->point = xstrdup(s->e[used].point);
			t->mnt_id = s->e[used].mnt_id;
		}
		t->fd = fd;
		/* What fstat() on it says; btrfs: the subvolume's device. */
		t->dev = dev;
	}
	return 0;
}

void
freeze_plan_free(struct freeze_plan *plan)
{
	struct freeze_priv *p;
	size_t i, k;

	if (plan == NULL)
		return;
	p = plan->priv;
	for (i = 0; i < plan->n; i++) {
		if (p != NULL) {
			/*
			 * A worker still running is on its own now: kill it
			 * (one not yet in its ioctl then freezes nothing).
			 */
			if (p->s[i].w != NULL)
				worker_cancel(p->s[i].w);
			for (k = 0; k < p->s[i].ne; k++)
				free(p->s[i].e[k].point);
			free(p->s[i].e);
		}
		free(plan->t[i].point);
		free(plan->t[i].fstype);
		free(plan->t[i].source);
		(void)safe_close(plan->t[i].fd);
	}
	if (p != NULL) {
		if (p->loop != NULL)
			ev_timer_stop(p->loop, &p->defer_w);
		free(p->s);
		free(p);
	}
	free(plan->t);
	for (i = 0; i < plan->nskip; i++) {
		free(plan->skip[i].point);
		free(plan->skip[i].fstype);
		free(plan->skip[i].reason);
	}
	free(plan->skip);
	for (i = 0; i < plan->unmatched.n; i++)
		free(plan->unmatched.v[i]);
	free(plan->unmatched.v);
	free(plan);
}

/* The target's next call, syncfs or FIFREEZE, on a worker of the pool. */
static int
freeze_call(struct freeze_plan *plan, size_t i)
{
	struct freeze_priv *p = plan->priv;
	struct freeze_slot *s = &p->s[i];
	int r;

	s->t0 = mono_now();
	if ((r = worker_call(p->loop,
		 p->phase == RUN_SYNC ? WORKER_SYNCFS : WORKER_FIFREEZE,
		 plan->t[i].fd, freeze_done_cb, s, &s->w)) < 0)
		return r;
	p->inflight++;
	return 0;
}

static void
freeze_done_cb(void *arg, int err)
{
	struct freeze_slot *s = arg;
	struct freeze_plan *plan = s->plan;
	struct freeze_priv *p = plan->priv;
	struct freeze_target *t = &plan->t[s - p->s];

	s->w = NULL;
	p->inflight--;
	if (p->phase == RUN_SYNC) {
		/* FIFREEZE syncs again and reports what matters. */
		if (err != 0)
			log_debug(
			    "%s: syncfs '%s': %d", __func__, t->point, err);
		freeze_pump(plan);
		return;
	}
	t->secs = mono_now() - s->t0;
	switch (err) {
	case 0:
		t->state = TARGET_FROZEN;
		break;
	case EOPNOTSUPP:
		t->state = TARGET_UNSUPPORTED;
		break;
	case EBUSY:
		/* Someone else's freeze: never ours to thaw. */
		t->state = TARGET_BUSY;
		break;
	case WORKER_LOST:
		/*
		 * Killed (SIGKILL, the OOM killer): its FIFREEZE may or may
		 * not have happened. Fail the freeze, and let the thaw try
		 * this fd too rather than leave it frozen for good.
		 */
		t->state = TARGET_FAILED;
		err = EINTR;
		s->killed = 1;
		p->stop = 1;
		break;
	default:
		t->state = TARGET_FAILED;
		p->stop = 1;
		break;
	}
	t->err = err;
	/* The thaw has started meanwhile: what froze late thaws now. */
	if (p->thawing && (t->state == TARGET_FROZEN || s->killed))
		(void)freeze_fithaw(t, s);
	freeze_pump(plan);
}

static void
freeze_defer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct freeze_priv *p = container_of(w, struct freeze_priv, defer_w);

	(void)revents;
	ev_timer_stop(loop, w);
	freeze_finish(p->plan);
}

static void
freeze_finish(struct freeze_plan *plan)
{
	struct freeze_priv *p = plan->priv;
	const struct freeze_target *f;
	freeze_done_fn *done = p->done;
	void *arg = p->arg;

	p->phase = RUN_DONE;
	p->done = NULL;
	f = freeze_failed(plan);
	/* Last: done() may free the plan. */
	if (done != NULL)
		done(arg, f != NULL ? -f->err : 0);
}

/*
 * Start what the phase allows; when nothing is left in flight, move on:
 * the syncs, then each wave in turn, then done().
 */
static void
freeze_pump(struct freeze_plan *plan)
{
	struct freeze_priv *p = plan->priv;
	struct freeze_target *t;
	size_t i;
	int r;

	for (;;) {
		while (
		    !p->stop && p->inflight < WORKER_MAX && p->next < plan->n) {
			t = &plan->t[p->next];
			if (p->phase == RUN_FREEZE && t->wave != p->wave)
				break;
			i = p->next++;
			if (t->state != TARGET_PLANNED || t->fd < 0)
				continue;
			if (p->phase == RUN_FREEZE && plan->t_frozen == 0)
				plan->t_frozen = mono_now();
			if ((r = freeze_call(plan, i)) < 0) {
				t->state = TARGET_FAILED;
				t->err = -r;
				p->stop = 1;
			}
		}
		if (p->inflight > 0)
			return;
		if (p->stop || p->next >= plan->n) {
			if (p->phase == RUN_SYNC && !p->stop) {
				p->phase = RUN_FREEZE;
				p->next = 0;
				p->wave = plan->n > 0 ? plan->t[0].wave : 0;
				continue;
			}
			break;
		}
		if (p->phase == RUN_FREEZE)
			p->wave = plan->t[p->next].wave;
	}
	if (p->in_start) {
		ev_timer_init(&p->defer_w, freeze_defer_cb, 0., 0.);
		ev_timer_start(p->loop, &p->defer_w);
		return;
	}
	freeze_finish(plan);
}

int
freeze_start(struct ev_loop *loop, struct freeze_plan *plan,
    freeze_done_fn *done, void *arg)
{
	struct freeze_priv *p = plan->priv;

	if (p == NULL)
		return -EINVAL;
	if (p->phase != RUN_IDLE)
		return -EALREADY;
	p->loop = loop;
	p->done = done;
	p->arg = arg;
	p->phase = RUN_SYNC;
	p->next = 0;
	p->in_start = 1;
	freeze_pump(plan);
	p->in_start = 0;
	return 0;
}

size_t
freeze_count(const struct freeze_plan *plan)
{
	size_t i, n = 0;

	for (i = 0; i < plan->n; i++)
		if (plan->t[i].state == TARGET_FROZEN)
			n++;
	return n;
}

const struct freeze_target *
freeze_failed(const struct freeze_plan *plan)
{
	size_t i;

	for (i = 0; i < plan->n; i++)
		if (plan->t[i].state == TARGET_FAILED)
			return &plan->t[i];
	return NULL;
}

/*
 * One FITHAW on one of ours: 1 thawed, 0 not frozen any more (EINVAL:
 * someone thawed it; t->err says so), -errno still frozen. Async-signal
 * safe and allocation free, for freeze_emergency_thaw().
 */
static int
freeze_fithaw(struct freeze_target *t, struct freeze_slot *s)
{
	int killed = s != NULL && s->killed;

	if (t->fd < 0 || (t->state != TARGET_FROZEN && !killed))
		return 0;
	if (ioctl(t->fd, FITHAW, 0) == 0) {
		t->state = TARGET_THAWED;
		if (!killed)
			t->err = 0;
		if (s != NULL)
			s->killed = 0;
		return 1;
	}
	if (errno == EINVAL) {
		if (s != NULL)
			s->killed = 0;
		if (killed)
			return 0;
		t->state = TARGET_THAWED;
		t->err = EINVAL;
		return 0;
	}
	t->err = errno;
	return -errno;
}

size_t
freeze_thaw(struct freeze_plan *plan)
{
	struct freeze_priv *p = plan->priv;
	size_t i, n = 0;

	if (p != NULL && p->phase != RUN_IDLE && p->phase != RUN_DONE) {
		p->thawing = 1;
		p->stop = 1;
	}
	/* Last wave first: backing filesystems thaw before what is on them. */
	for (i = plan->n; i-- > 0;)
		if (freeze_fithaw(&plan->t[i], p != NULL ? &p->s[i] : NULL) ==
		    1)
			n++;
	return n;
}

void
freeze_emergency_thaw(struct freeze_plan *plan)
{
	struct freeze_priv *p;
	size_t i;
	int saved = errno;

	if (plan == NULL)
		return;
	p = plan->priv;
	for (i = plan->n; i-- > 0;)
		(void)freeze_fithaw(&plan->t[i], p != NULL ? &p->s[i] : NULL);
	errno = saved;
}
