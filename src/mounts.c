/* SPDX-License-Identifier: ISC */
/* The mount table: /proc/self/mountinfo read and split into its fields. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* A mount table far larger than any real one; past it we refuse. */
#define MOUNTS_MAX_SIZE ((size_t)64 << 20)

static int mounts_slurp(const char *, struct buf *);
static int mounts_has_opt(const char *, const char *);
static int mounts_parse_line(char *, struct mount *);

/* Read the whole file: /proc files must be read in one go to be coherent. */
static int
mounts_slurp(const char *path, struct buf *b)
{
	char chunk[8192];
	ssize_t n;
	int fd, r = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return -errno;
	for (;;) {
		n = read(fd, chunk, sizeof chunk);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if ((r = buf_add(b, chunk, (size_t)n)) < 0)
			break;
	}
	(void)safe_close(fd);
	if (r == 0)
		r = buf_addc(b, '\0');
	return r;
}

/*
 * The kernel writes space, tab, newline and backslash in mountinfo as
 * \040, \011, \012 and \134 (seq_escape); anything else passes as is.
 */
char *
mounts_unescape(const char *s)
{
	char *out, *o;

	out = o = xmalloc(strlen(s) + 1);
	while (*s != '\0') {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
		    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
			    (s[3] - '0'));
			s += 4;
		} else
			*o++ = *s++;
	}
	*o = '\0';
	return out;
}

/* Whether the comma-separated list opts holds exactly the option opt. */
static int
mounts_has_opt(const char *opts, const char *opt)
{
	size_t len = strlen(opt), n;

	while (*opts != '\0') {
		n = strcspn(opts, ",");
		if (n == len && strncmp(opts, opt, len) == 0)
			return 1;
		opts += n;
		if (*opts == ',')
			opts++;
	}
	return 0;
}

/*
 * One line: ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - TYPE SOURCE
 * SUPER_OPTS. The optional fields are of any number and end at a lone "-".
 */
static int
mounts_parse_line(char *line, struct mount *m)
{
	char *f[64], *p, *end;
	size_t nf = 0, sep;
	long v;

	for (p = line; nf < nitems(f);) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		f[nf++] = p;
		p += strcspn(p, " ");
		if (*p != '\0')
			*p++ = '\0';
	}
	for (sep = 6; sep < nf; sep++)
		if (strcmp(f[sep], "-") == 0)
			break;
	/* TYPE and SOURCE must follow "-"; old kernels may omit SUPER_OPTS. */
	if (sep + 2 >= nf)
		return -EINVAL;
	memset(m, 0, sizeof *m);
	errno = 0;
	v = strtol(f[0], &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > INT32_MAX)
		return -EINVAL;
	m->id = (int)v;
	v = strtol(f[1], &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > INT32_MAX)
		return -EINVAL;
	m->parent = (int)v;
	if (f[2][0] < '0' || f[2][0] > '9')
		return -EINVAL;
	v = strtol(f[2], &end, 10);
	if (errno != 0 || *end != ':' || v < 0 || v > 0xfff)
		return -EINVAL;
	m->major = (unsigned int)v;
	p = end + 1;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	v = strtol(p, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 0xfffff)
		return -EINVAL;
	m->minor = (unsigned int)v;
	m->root = mounts_unescape(f[3]);
	m->point = mounts_unescape(f[4]);
	m->opts = mounts_unescape(f[5]);
	m->fstype = mounts_unescape(f[sep + 1]);
	m->source = mounts_unescape(f[sep + 2]);
	m->super_opts = mounts_unescape(sep + 3 < nf ? f[sep + 3] : "");
	m->readonly = mounts_has_opt(m->opts, "ro") ||
	    mounts_has_opt(m->super_opts, "ro");
	return 0;
}

int
mounts_read(const char *path, struct mount_table *mt)
{
	struct buf b;
	struct mount m;
	char *line, *nl;
	size_t size = 0;
	int r;

	memset(mt, 0, sizeof *mt);
	buf_init(&b, MOUNTS_MAX_SIZE);
	if (path == NULL)
		path = "/proc/self/mountinfo";
	if ((r = mounts_slurp(path, &b)) < 0)
		goto out;
	for (line = b.data + b.off; *line != '\0'; line = nl) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl++ = '\0';
		else
			nl = line + strlen(line);
		if (*line == '\0')
			continue;
		if ((r = mounts_parse_line(line, &m)) < 0) {
			log_debug("%s: %s: malformed line", __func__, path);
			goto out;
		}
		if (mt->n == size) {
			size = size == 0 ? 64 : size * 2;
			mt->v = xreallocarray(mt->v, size, sizeof *mt->v);
		}
		mt->v[mt->n++] = m;
	}
	r = 0;
out:
	buf_free(&b);
	if (r < 0)
		mounts_free(mt);
	return r;
}

void
mounts_free(struct mount_table *mt)
{
	size_t i;

	for (i = 0; i < mt->n; i++) {
		free(mt->v[i].root);
		free(mt->v[i].point);
		free(mt->v[i].opts);
		free(mt->v[i].fstype);
		free(mt->v[i].source);
		free(mt->v[i].super_opts);
	}
	free(mt->v);
	mt->v = NULL;
	mt->n = 0;
}
