/* SPDX-License-Identifier: ISC */
/*
 * A tiny TAP library for the C unit tests, after rra/c-tap-harness: plan,
 * ok, is_int, is_str, diag, skip_all, bail. Failures are "not ok" lines; the
 * exit status stays 0 unless the test bails out, so each failure counts once.
 */
#ifndef TAP_H
#define TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n;
static int tap_planned;

__attribute__((unused)) static void
plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

__attribute__((unused)) static void
plan_lazy(void)
{
	tap_planned = -1;
}

__attribute__((unused, noreturn)) static void
skip_all(const char *why)
{
	printf("1..0 # SKIP %s\n", why);
	fflush(stdout);
	exit(0);
}

__attribute__((unused, format(printf, 1, 2))) static void
diag(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

__attribute__((unused, noreturn, format(printf, 1, 2))) static void
bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(255);
}

__attribute__((unused, format(printf, 2, 3))) static int
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return cond;
}

__attribute__((unused, format(printf, 2, 3))) static void
skip(int n, const char *fmt, ...)
{
	va_list ap;
	int i;

	for (i = 0; i < n; i++) {
		printf("ok %d # SKIP ", ++tap_n);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	fflush(stdout);
}

__attribute__((unused, format(printf, 3, 4))) static int
is_int(long long want, long long got, const char *fmt, ...)
{
	va_list ap;
	int cond = want == got;

	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		diag("wanted %lld, got %lld", want, got);
	fflush(stdout);
	return cond;
}

__attribute__((unused, format(printf, 3, 4))) static int
is_str(const char *want, const char *got, const char *fmt, ...)
{
	va_list ap;
	int cond;

	cond = (want == NULL && got == NULL) ||
	    (want != NULL && got != NULL && strcmp(want, got) == 0);
	printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		diag("wanted: %s", want ? want : "(null)");
		diag("   got: %s", got ? got : "(null)");
	}
	fflush(stdout);
	return cond;
}

/* Call at the end; prints the plan when plan_lazy() was used. */
__attribute__((unused)) static int
tap_done(void)
{
	if (tap_planned < 0 || tap_planned == 0)
		printf("1..%d\n", tap_n);
	else if (tap_planned != tap_n)
		printf("# planned %d tests but ran %d\n", tap_planned, tap_n);
	fflush(stdout);
	return 0;
}

#endif
