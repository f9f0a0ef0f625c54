/* SPDX-License-Identifier: ISC */
/* Small descriptor and clock helpers. */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

int
fd_set_nonblock(int fd)
{
	int fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -errno;
	return 0;
}

int
fd_set_cloexec(int fd)
{
	int fl;

	if ((fl = fcntl(fd, F_GETFD)) == -1)
		return -errno;
	if (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) == -1)
		return -errno;
	return 0;
}

int
safe_close(int fd)
{
	int saved = errno;

	if (fd >= 0)
		(void)close(fd);
	errno = saved;
	return -1;
}

double
mono_now(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
