/* SPDX-License-Identifier: ISC */
/* Helpers for the C tests that run the real libev loop. */
#ifndef EVTEST_H
#define EVTEST_H

#include <sys/resource.h>

#include <ev.h>

__attribute__((unused)) static void
evtest_break_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

/* Run the default loop for secs seconds. */
__attribute__((unused)) static void
run_for(double secs)
{
	ev_timer t;

	ev_timer_init(&t, evtest_break_cb, secs, 0.);
	ev_timer_start(EV_DEFAULT, &t);
	ev_run(EV_DEFAULT, 0);
	ev_timer_stop(EV_DEFAULT, &t);
}

/* CPU seconds this process has used, user and system. */
__attribute__((unused)) static double
cpu_secs(void)
{
	struct rusage ru;

	(void)getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

#endif
