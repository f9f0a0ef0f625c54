/* SPDX-License-Identifier: ISC */
/*
 * mountinfo parsing and the freeze plan from fixtures: skip reasons,
 * include/exclude, freeze-list matching, superblock dedupe, waves from a
 * fake sysfs. No root, nothing is opened but the fixtures.
 */

#include "../src/freeze.c"

#include <sys/stat.h>

#include <ftw.h>

#include "tap.h"

static const char *srcdir;
static char sysdir[] = "/tmp/t4010.XXXXXX";
static int nstat_nonbtrfs;

/* The block devices the fixtures' btrfs sources name. */
static int
fake_stat_source(const char *source, dev_t *rdev)
{
	if (strcmp(source, "/dev/vdb") == 0) {
		*rdev = makedev(254, 16);
		return 0;
	}
	if (strcmp(source, "/dev/loop5") == 0) {
		*rdev = makedev(7, 5);
		return 0;
	}
	if (strcmp(source, "none") != 0)
		nstat_nonbtrfs++;
	return -ENOTBLK;
}

static char *
fixture(const char *name)
{
	char *p;

	(void)xasprintf(&p, "%s/t/mountinfo/%s", srcdir, name);
	return p;
}

static void
load(const char *name, struct mount_table *mt)
{
	char *p = fixture(name);
	int r;

	if ((r = mounts_read(p, mt)) < 0)
		bail("mounts_read %s: %s", p, strerror(-r));
	free(p);
}

static const struct plan_skip *
find_skip(const struct freeze_plan *plan, const char *point)
{
	size_t i;

	for (i = 0; i < plan->nskip; i++)
		if (strcmp(plan->skip[i].point, point) == 0)
			return &plan->skip[i];
	return NULL;
}

static const char *
skip_reason(const struct freeze_plan *plan, const char *point)
{
	const struct plan_skip *sk = find_skip(plan, point);

	return sk != NULL ? sk->reason : NULL;
}

static const struct freeze_target *
find_target(const struct freeze_plan *plan, const char *point)
{
	size_t i;

	for (i = 0; i < plan->n; i++)
		if (strcmp(plan->t[i].point, point) == 0)
			return &plan->t[i];
	return NULL;
}

/* The target's points in preference order, joined by spaces. */
static char *
entries(const struct freeze_plan *plan, const char *point)
{
	const struct freeze_priv *p = plan->priv;
	struct buf b;
	size_t i, k;
	char *s;

	for (i = 0; i < plan->n; i++)
		if (strcmp(plan->t[i].point, point) == 0)
			break;
	if (i == plan->n)
		return xstrdup("(none)");
	buf_init(&b, 0);
	for (k = 0; k < p->s[i].ne; k++)
		(void)buf_addf(&b, "%s%s", k ? " " : "", p->s[i].e[k].point);
	(void)buf_addc(&b, '\0');
	s = xstrdup(buf_head(&b));
	buf_free(&b);
	return s;
}

static char *
order(const struct freeze_plan *plan)
{
	struct buf b;
	size_t i;
	char *s;

	buf_init(&b, 0);
	for (i = 0; i < plan->n; i++)
		(void)buf_addf(&b, "%s%s:%u", i ? " " : "", plan->t[i].point,
		    plan->t[i].wave);
	(void)buf_addc(&b, '\0');
	s = xstrdup(buf_head(&b));
	buf_free(&b);
	return s;
}

static void
is_order(const struct freeze_plan *plan, const char *want, const char *what)
{
	char *got = order(plan);

	is_str(want, got, "%s", what);
	free(got);
}

static void
is_entries(const struct freeze_plan *plan, const char *point, const char *want)
{
	char *got = entries(plan, point);

	is_str(want, got, "entries of '%s'", point);
	free(got);
}

static void
test_read(void)
{
	struct mount_table mt;
	const struct mount *m;
	char *p;
	int r;
	size_t i;

	load("basic.txt", &mt);
	is_int(26, (long long)mt.n, "basic.txt: 26 entries");
	m = &mt.v[7];
	is_int(28, m->id, "id");
	is_int(24, m->parent, "parent id");
	is_int(253, m->major, "major");
	is_int(0, m->minor, "minor");
	is_str("/data", m->root, "root");
	is_str("/var/data", m->point, "mount point");
	is_str("rw,relatime", m->opts, "mount options");
	is_str("xfs", m->fstype, "type after the optional fields");
	is_str("/dev/mapper/vg-srv", m->source, "source");
	is_str("rw,attr2,inode64,noquota", m->super_opts, "super options");
	is_int(0, m->readonly, "rw");
	is_str("/mnt/with space", mt.v[17].point, "\\040 decoded");
	is_str("/mnt/back\\slash\ttab", mt.v[18].point, "\\134 and \\011");
	is_int(1, mt.v[15].readonly, "mount option ro");
	is_int(1, mt.v[16].readonly, "super option ro");
	is_str("fuse.sshfs", mt.v[13].fstype, "fuse subtype");
	is_str("user@host:", mt.v[13].source, "source with a colon");
	mounts_free(&mt);
	is_int(0, (long long)mt.n, "mounts_free empties the table");

	p = fixture("bad.txt");
	r = mounts_read(p, &mt);
	is_int(-EINVAL, r, "a line without ' - ' is -EINVAL");
	is_int(0, (long long)mt.n, "and leaves no table");
	free(p);
	p = fixture("no-such-file.txt");
	is_int(-ENOENT, mounts_read(p, &mt), "a missing file is -ENOENT");
	free(p);

	r = mounts_read(NULL, &mt);
	is_int(0, r, "/proc/self/mountinfo reads");
	for (i = 0; i < mt.n; i++)
		if (strcmp(mt.v[i].point, "/") == 0)
			break;
	ok(i < mt.n, "and it has '/'");
	mounts_free(&mt);
}

static void
test_policy(void)
{
	struct mount_table mt;
	struct freeze_policy pol = { 0 };
	struct freeze_plan *plan;
	struct strlist inc = { 0 }, exc = { 0 }, exct = { 0 };
	const struct freeze_target *t;
	int r;

	load("basic.txt", &mt);
	nstat_nonbtrfs = 0;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan with no policy");
	is_int(8, (long long)plan->n, "8 filesystems");
	is_int(15, (long long)plan->nskip, "15 skipped");
	is_int(1, plan->nwaves, "one wave");
	is_order(plan,
	    "/var/lib/docker:0 /mnt/twice:0 "
	    "/mnt/back\\slash\ttab:0 /mnt/with space:0 /home:0 /srv:0 /boot:0 "
	    "/:0",
	    "reverse mountinfo order");
	is_str("pseudo filesystem (no block device)",
	    skip_reason(plan, "/proc"), "proc: pseudo");
	ok(!find_skip(plan, "/proc")->warn, "a policy skip is no warning");
	is_str("pseudo filesystem (no block device)", skip_reason(plan, "/run"),
	    "tmpfs: pseudo");
	is_str("pseudo filesystem (no block device)", skip_reason(plan, "/dev"),
	    "devtmpfs: pseudo");
	is_str("btrfs source 'none' is not a block device",
	    skip_reason(plan, "/mnt/fakebtrfs"), "btrfs without a device");
	is_str("network filesystem", skip_reason(plan, "/mnt/nfs"), "nfs4");
	is_str("network filesystem", skip_reason(plan, "/mnt/smb"), "cifs");
	is_str("network filesystem", skip_reason(plan, "/mnt/vfs"), "virtiofs");
	is_str("network filesystem", skip_reason(plan, "/mnt/9p"), "9p");
	is_str(
	    "FUSE filesystem", skip_reason(plan, "/mnt/sshfs"), "fuse.sshfs");
	is_str("FUSE filesystem", skip_reason(plan, "/mnt/ntfs"),
	    "fuseblk, though it has a block device");
	is_str("FUSE filesystem", skip_reason(plan, "/mnt/glfs"),
	    "fuse.glusterfs");
	is_str("read-only", skip_reason(plan, "/mnt/ro"), "mount option ro");
	is_str(
	    "read-only", skip_reason(plan, "/mnt/superro"), "super option ro");
	is_int(0, nstat_nonbtrfs, "only btrfs sources are stat()ed");
	ok(find_target(plan, "/mnt/ceph") == NULL, "ceph: not a target");
	is_str("network filesystem", skip_reason(plan, "/mnt/ceph"), "ceph");
	t = find_target(plan, "/srv");
	ok(t != NULL && t->dev == makedev(253, 0) && t->mnt_id == 27 &&
		t->fd == -1 && t->state == TARGET_PLANNED,
	    "/srv: device, mount id, no fd, planned");
	is_entries(plan, "/srv", "/srv /var/data");
	is_entries(plan, "/home", "/home /snap");
	is_entries(plan, "/mnt/twice", "/mnt/twice /mnt/twice2");
	t = find_target(plan, "/home");
	ok(t != NULL && t->dev == makedev(0, 40) &&
		strcmp(t->fstype, "btrfs") == 0 &&
		strcmp(t->source, "/dev/vdb") == 0,
	    "btrfs: subvolumes are one filesystem, the superblock's device");
	ok(find_target(plan, "/var/data") == NULL &&
		find_target(plan, "/snap") == NULL &&
		find_skip(plan, "/var/data") == NULL,
	    "bind mount and subvolume: frozen once, not skips");
	freeze_plan_free(plan);

	/* The mountinfo order is not the preference: root "/" wins. */
	{
		struct mount tmp = mt.v[6];

		mt.v[6] = mt.v[7];
		mt.v[7] = tmp;
		r = freeze_plan_build(&mt, &pol, &plan);
		is_entries(plan, "/srv", "/srv /var/data");
		ok(find_target(plan, "/var/data") == NULL,
		    "a bind of a subtree listed first is not the point");
		freeze_plan_free(plan);
		mt.v[7] = mt.v[6];
		mt.v[6] = tmp;
	}

	strlist_add(&exc, "/var/lib/*");
	strlist_add(&exc, "/snap");
	strlist_add(&exct, "xfs");
	strlist_add(&exct, "ext2");
	pol.exclude = &exc;
	pol.exclude_type = &exct;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan with exclusions");
	is_order(plan,
	    "/mnt/twice:0 /mnt/back\\slash\ttab:0 /mnt/with space:0 /:0",
	    "exclusions leave four");
	is_str("excluded by [freeze] exclude '/var/lib/*'",
	    skip_reason(plan, "/var/lib/docker"), "exclude glob");
	is_str("excluded by [freeze] exclude '/snap'",
	    skip_reason(plan, "/snap"), "exclude a subvolume");
	is_str("same filesystem as excluded '/snap'",
	    skip_reason(plan, "/home"), "... excludes its whole filesystem");
	is_str("excluded by [freeze] exclude_type 'xfs'",
	    skip_reason(plan, "/srv"), "exclude_type");
	is_str("excluded by [freeze] exclude_type 'xfs'",
	    skip_reason(plan, "/var/data"), "exclude_type, bind mount too");
	is_str("excluded by [freeze] exclude_type 'ext2'",
	    skip_reason(plan, "/boot"), "exclude_type ext2");
	freeze_plan_free(plan);

	pol.exclude = pol.exclude_type = NULL;
	strlist_add(&inc, "/mnt/*");
	strlist_add(&inc, "/boot");
	pol.include = &inc;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan with include");
	is_order(plan,
	    "/mnt/twice:0 /mnt/back\\slash\ttab:0 /mnt/with space:0 /boot:0",
	    "include: only matching mount points");
	is_str("not in [freeze] include", skip_reason(plan, "/"),
	    "/ not included");
	is_str("not in [freeze] include", skip_reason(plan, "/proc"),
	    "not included comes first");
	is_str("network filesystem", skip_reason(plan, "/mnt/nfs"),
	    "included, then the type decides");
	is_str("read-only", skip_reason(plan, "/mnt/ro"), "included but ro");
	freeze_plan_free(plan);
	strlist_clear(&inc);
	strlist_clear(&exc);
	strlist_clear(&exct);
	mounts_free(&mt);
}

static void
test_list(void)
{
	struct mount_table mt;
	struct freeze_policy pol = { 0 };
	struct freeze_plan *plan;
	struct strlist list = { 0 };
	int r;

	load("basic.txt", &mt);
	strlist_add(&list, "/mnt/with space");
	strlist_add(&list, "/var/data");
	strlist_add(&list, "/var/data");
	strlist_add(&list, "/nonexistent");
	strlist_add(&list, "/mnt/with\\040space");
	strlist_add(&list, "/proc");
	strlist_add(&list, "/snap");
	strlist_add(&list, "/nonexistent");
	strlist_add(&list, "/srv/");
	pol.list = &list;
	pol.has_list = 1;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan from a freeze-list");
	is_order(plan, "/mnt/with space:0 /snap:0 /var/data:0",
	    "exact matches only; each filesystem once");
	is_entries(plan, "/var/data", "/var/data /srv");
	is_entries(plan, "/snap", "/snap /home");
	is_int(1, (long long)plan->nskip, "one skip: what was listed");
	is_str("pseudo filesystem (no block device)",
	    skip_reason(plan, "/proc"), "a listed pseudo filesystem says why");
	is_int(3, (long long)plan->unmatched.n, "three unmatched");
	if (plan->unmatched.n == 3) {
		is_str("/nonexistent", plan->unmatched.v[0], "unmatched 1");
		is_str("/mnt/with\\040space", plan->unmatched.v[1],
		    "escaped form does not match");
		is_str(
		    "/srv/", plan->unmatched.v[2], "no trailing slash magic");
	} else
		skip(3, "wrong count");
	freeze_plan_free(plan);

	strlist_clear(&list);
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan from []");
	ok(plan->n == 0 && plan->nskip == 0 && plan->unmatched.n == 0 &&
		plan->nwaves == 0,
	    "[] freezes nothing, skips nothing");
	freeze_plan_free(plan);

	/* The list restricts the policy, it does not replace it. */
	{
		struct strlist exc = { 0 };

		strlist_add(&list, "/srv");
		strlist_add(&list, "/boot");
		strlist_add(&exc, "/boot");
		pol.exclude = &exc;
		r = freeze_plan_build(&mt, &pol, &plan);
		is_order(plan, "/srv:0", "listed and excluded: excluded");
		is_str("excluded by [freeze] exclude '/boot'",
		    skip_reason(plan, "/boot"), "with the reason");
		freeze_plan_free(plan);
		strlist_clear(&exc);
		strlist_clear(&list);
	}
	mounts_free(&mt);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) == EOF)
		bail("write %s: %s", path, strerror(errno));
}

static void mkpath(const char *fmt, ...) PRINTFLIKE(1, 2);

static void
mkpath(const char *fmt, ...)
{
	char path[PATH_MAX], *p;
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(path, sizeof path, fmt, ap);
	va_end(ap);
	for (p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST)
			bail("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		bail("mkdir %s: %s", path, strerror(errno));
}

static void
backing(unsigned int maj, unsigned int min, const char *file)
{
	char path[PATH_MAX];

	mkpath("%s/dev/block/%u:%u/loop", sysdir, maj, min);
	(void)snprintf(path, sizeof path,
	    "%s/dev/block/%u:%u/loop/backing_file", sysdir, maj, min);
	write_file(path, file);
}

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
rm_sysdir(void)
{
	(void)nftw(sysdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void
test_waves(void)
{
	struct mount_table mt;
	struct freeze_policy pol = { 0 };
	struct freeze_plan *plan;
	struct strlist exc = { 0 };
	char path[PATH_MAX];
	int r;

	backing(7, 1, "/srv/b.img\n");
	backing(7, 0, "/mnt/b/a.img (deleted)\n");
	backing(7, 2, "/tmp/c.img\n");
	backing(7, 5, "/mnt/b/sub/bt.img\n");
	backing(7, 4, "/mnt/e/x.img\n");
	backing(7, 6, "/srv/e.img\n");
	/* A partition of loop3: sysfs links 259:0 into loop3's directory. */
	mkpath("%s/devices/loop3/loop3p1", sysdir);
	mkpath("%s/devices/loop3/loop", sysdir);
	(void)snprintf(
	    path, sizeof path, "%s/devices/loop3/loop/backing_file", sysdir);
	write_file(path, "/srv/p.img\n");
	(void)snprintf(path, sizeof path, "%s/dev/block/259:0", sysdir);
	if (symlink("../../devices/loop3/loop3p1", path) == -1)
		bail("symlink %s: %s", path, strerror(errno));

	load("loops.txt", &mt);
	strlist_add(&exc, "/mnt/e");
	pol.exclude = &exc;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(0, r, "plan of stacked loop filesystems");
	is_int(3, plan->nwaves, "three waves");
	is_order(plan,
	    "/mnt/indep:0 /mnt/x:0 /mnt/p:0 /mnt/bt:0 /mnt/c:0 /mnt/a:0 /:0 "
	    "/mnt/b:1 /srv:2",
	    "what lives on a filesystem freezes before it");
	diag("a and bt on b (a's file deleted), b on srv; p (a loop "
	     "partition) on srv; x on excluded e on srv; c on tmpfs");
	freeze_plan_free(plan);

	/* Without the exclusion e is a target of its own between x and srv. */
	pol.exclude = NULL;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_order(plan,
	    "/mnt/indep:0 /mnt/x:0 /mnt/p:0 /mnt/bt:0 /mnt/c:0 /mnt/a:0 /:0 "
	    "/mnt/e:1 /mnt/b:1 /srv:2",
	    "x before e before srv");
	freeze_plan_free(plan);
	mounts_free(&mt);
	strlist_clear(&exc);

	/* Nothing on sysfs: one wave. */
	freeze_ops.sysfs_root = "/nonexistent";
	load("loops.txt", &mt);
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(1, plan->nwaves, "no sysfs: one wave");
	freeze_plan_free(plan);
	mounts_free(&mt);
	freeze_ops.sysfs_root = sysdir;

	/* a's file on b, b's file on a: no order can work. */
	backing(7, 1, "/mnt/a/b.img\n");
	load("cycle.txt", &mt);
	plan = (struct freeze_plan *)1;
	r = freeze_plan_build(&mt, &pol, &plan);
	is_int(-ELOOP, r, "a dependency cycle is -ELOOP");
	ok(plan == NULL, "and gives no plan");
	ok(fcntl(0, F_GETFD) != -1, "and closes no fd it does not own");
	mounts_free(&mt);

	/* A stack of mounts at one point: the top one holds the file. */
	load("overmount.txt", &mt);
	is_int(3, (long long)freeze_mount_of(&mt, "/mnt/b/x.img"),
	    "the top of a stack holds a path");
	is_int(0, (long long)freeze_mount_of(&mt, "/mnt/bx/x.img"),
	    "whole components only");
	is_int(2, (long long)freeze_mount_of(&mt, "/mnt/b_bind"),
	    "the mount point itself");
	r = freeze_plan_build(&mt, &pol, &plan);
	is_order(plan, "/mnt/b:0 /:0", "over-mounted /mnt/b still planned");
	is_entries(plan, "/mnt/b", "/mnt/b /mnt/b_bind");
	is_str("pseudo filesystem (no block device)",
	    skip_reason(plan, "/mnt/b"), "the tmpfs on top is skipped");
	freeze_plan_free(plan);
	mounts_free(&mt);
}

static void
test_names(void)
{
	is_str("planned", target_state_name(TARGET_PLANNED), "planned");
	is_str("frozen", target_state_name(TARGET_FROZEN), "frozen");
	is_str("unsupported", target_state_name(TARGET_UNSUPPORTED),
	    "unsupported");
	is_str("busy", target_state_name(TARGET_BUSY), "busy");
	is_str("unopened", target_state_name(TARGET_UNOPENED), "unopened");
	is_str("failed", target_state_name(TARGET_FAILED), "failed");
	is_str("thawed", target_state_name(TARGET_THAWED), "thawed");
	is_str("unknown", target_state_name(TARGET_STATE_MAX), "out of range");
}

int
main(void)
{
	if ((srcdir = getenv("top_srcdir")) == NULL)
		srcdir = ".";
	/* fd 0 must be open for the "closes no fd" check. */
	if (fcntl(0, F_GETFD) == -1 && open("/dev/null", O_RDONLY) != 0)
		bail("cannot open fd 0");
	if (mkdtemp(sysdir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	freeze_ops.sysfs_root = sysdir;
	freeze_ops.stat_source = fake_stat_source;
	plan_lazy();
	test_read();
	test_policy();
	test_list();
	test_waves();
	test_names();
	rm_sysdir();
	return tap_done();
}
