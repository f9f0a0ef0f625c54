/* SPDX-License-Identifier: ISC */
/* Logging. PLACEHOLDER: stderr only, blocking; replaced by the real one. */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "agent.h"

static int log_level = LOG_INFO;
static void (*log_fatal_hook)(void);

void
log_init(int to, int facility, int level)
{
	(void)to;
	(void)facility;
	log_level = level;
}

void
log_set_level(int level)
{
	log_level = level;
}

void
log_set_facility(int facility)
{
	(void)facility;
}

int
log_get_level(void)
{
	return log_level;
}

void
log_start(struct ev_loop *loop)
{
	(void)loop;
}

void
log_stop(void)
{
}

void
log_hold(int on)
{
	(void)on;
}

void
log_flush(void)
{
}

void
log_set_fatal_hook(void (*fn)(void))
{
	log_fatal_hook = fn;
}

static void
log_vemit(int pri, const char *fmt, va_list ap, const char *suffix)
{
	if (pri > log_level)
		return;
	fprintf(stderr, "%s: ", AGENT_NAME);
	vfprintf(stderr, fmt, ap);
	if (suffix != NULL)
		fprintf(stderr, ": %s", suffix);
	fputc('\n', stderr);
}

#define LOG_FN(fn, pri)                            \
	void fn(const char *fmt, ...)              \
	{                                          \
		va_list ap;                        \
		va_start(ap, fmt);                 \
		log_vemit(pri, fmt, ap, NULL);     \
		va_end(ap);                        \
	}
LOG_FN(log_warnx, LOG_WARNING)
LOG_FN(log_notice, LOG_NOTICE)
LOG_FN(log_info, LOG_INFO)
LOG_FN(log_debug, LOG_DEBUG)
LOG_FN(log_errx, LOG_ERR)

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_vemit(LOG_WARNING, fmt, ap, e);
	va_end(ap);
}

void
log_warnr(int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_WARNING, fmt, ap, strerror(-r));
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, fmt, ap, e);
	va_end(ap);
	if (log_fatal_hook != NULL)
		log_fatal_hook();
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	if (log_fatal_hook != NULL)
		log_fatal_hook();
	exit(1);
}
