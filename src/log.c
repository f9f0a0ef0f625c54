/* SPDX-License-Identifier: ISC */
/*
 * Logging that never blocks. Each line is formatted once, at the call, into
 * a preallocated ring, and sent from there without waiting: to syslog over
 * our own datagram socket, and to stderr. What cannot go now waits for a
 * write watcher or a retry timer; while held (filesystems frozen) nothing is
 * sent at all, because the log daemon may be stuck behind a frozen disk.
 */

#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "agent.h"

/*
 * The ring is static, not malloc'ed: it is there before log_init(), and
 * out of memory (fatal) can still log. It keeps the newest LOG_RING_N
 * lines. A destination that falls that far behind (held across a long
 * freeze, a log daemon nobody reads) loses its oldest lines, counts them,
 * and says "N messages dropped" before the next line it sends. Each
 * destination has its own cursor, so a dead syslog does not starve stderr.
 */
#define LOG_RING_N 256
#define LOG_REC_SIZE 1024
#define LOG_TRUNC "..."
#define LOG_RETRY_MIN 1.0
#define LOG_RETRY_MAX 8.0
#define LOG_DEFAULT_SOCKET "/dev/log"

struct log_rec {
	int pri;
	unsigned short hdr; /* the syslog header's length */
	unsigned short len; /* header + message */
	char line[LOG_REC_SIZE - 2 * sizeof(int)];
};

/* One place lines go to. */
struct log_dest {
	int on;
	int fd;
	int is_sock;	    /* send() with MSG_DONTWAIT, not write() */
	int own_fd;	    /* fd is ours to close */
	int may_block;	    /* fd 2 itself, a pipe or tty: poll() first */
	int waiting;	    /* EAGAIN: its watcher will flush */
	int dead;	    /* stderr reader gone: drop its lines */
	uint64_t seq;	    /* next record to send */
	unsigned long lost; /* lines it lost to the ring's overflow */
	/* A stream's half-written line, kept out of the ring. */
	struct log_rec part;
	size_t part_off;
	int has_part;
	int (*send)(struct log_dest *, const struct log_rec *);
	ev_io w;
};

static int log_send_sys(struct log_dest *, const struct log_rec *);
static int log_send_err(struct log_dest *, const struct log_rec *);
static void log_flush_all(void);
static void log_arm(void);

static struct log_rec log_ring[LOG_RING_N];
static uint64_t log_wseq; /* next record to fill */
static int log_level = LOG_INFO;
static int log_facility = LOG_DAEMON;
static int log_held;
static int log_in_fatal;
static int log_stopped;
static struct ev_loop *log_loop;
static void (*log_fatal_hook)(void);

static struct log_dest log_sys = { .fd = -1, .send = log_send_sys };
static struct log_dest log_err = { .fd = -1, .send = log_send_err };
static double log_retry_at; /* mono_now() of the next connect attempt */
static double log_retry_wait = LOG_RETRY_MIN;
static ev_timer log_retry_w;

static const char *const log_months[12] = { "Jan", "Feb", "Mar", "Apr", "May",
	"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static const char *
log_socket_path(void)
{
	const char *p = getenv("FSFREEZE_AGENT_LOG_SOCKET");

	return p != NULL && *p != '\0' ? p : LOG_DEFAULT_SOCKET;
}

static int
log_dest_live(const struct log_dest *d)
{
	return d->on && !d->dead;
}

/*
 * stderr must not block, yet O_NONBLOCK on fd 2 would change the file
 * description we share with our parent (a shell, journald). So: a socket
 * (journald's stream) takes send(MSG_DONTWAIT); a pipe, FIFO or tty is
 * reopened through /proc/self/fd/2 (reopen set), which gives a description
 * of our own that may be non-blocking; a regular file never answers EAGAIN
 * and is written as it is. Without the reopen, fd 2 is written only after
 * poll() says it has room.
 */
static void
log_stderr_setup(int reopen)
{
	struct stat st;

	if (log_err.fd >= 0 || log_err.dead)
		return;
	if (fstat(STDERR_FILENO, &st) == -1) {
		log_err.dead = 1;
		return;
	}
	log_err.fd = STDERR_FILENO;
	log_err.is_sock = S_ISSOCK(st.st_mode);
	log_err.own_fd = 0;
	log_err.may_block = S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
	if (reopen && log_err.may_block) {
		int fd = open("/proc/self/fd/2",
		    O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_APPEND);
		if (fd >= 0) {
			log_err.fd = fd;
			log_err.own_fd = 1;
			log_err.may_block = 0;
		}
	}
}

/*
 * The log's watchers never keep a loop running (ev_unref while active):
 * a shutdown that waits for its last watcher must not wait for syslogd.
 */
static void
log_io_start(struct ev_loop *loop, ev_io *w, int fd)
{
	if (ev_is_active(w))
		return;
	ev_io_set(w, fd, EV_WRITE);
	ev_io_start(loop, w);
	ev_unref(loop);
}

static void
log_io_stop(struct ev_loop *loop, ev_io *w)
{
	if (!ev_is_active(w))
		return;
	ev_ref(loop);
	ev_io_stop(loop, w);
}

static void
log_timer_start(struct ev_loop *loop, double after)
{
	if (ev_is_active(&log_retry_w))
		return;
	ev_timer_set(&log_retry_w, after, 0.);
	ev_timer_start(loop, &log_retry_w);
	ev_unref(loop);
}

static void
log_timer_stop(struct ev_loop *loop)
{
	if (!ev_is_active(&log_retry_w))
		return;
	ev_ref(loop);
	ev_timer_stop(loop, &log_retry_w);
}

static void
log_dest_stop(struct log_dest *d)
{
	if (log_loop != NULL)
		log_io_stop(log_loop, &d->w);
	d->waiting = 0;
}

static void
log_sys_close(void)
{
	log_dest_stop(&log_sys);
	log_sys.fd = safe_close(log_sys.fd);
}

/* 0 when connected; a failure makes the next try wait, up to a cap. */
static int
log_sys_connect(void)
{
	struct sockaddr_un sun;
	const char *path;
	double now;
	int fd;

	if (log_sys.fd >= 0)
		return 0;
	now = mono_now();
	if (now < log_retry_at)
		return -EAGAIN;
	path = log_socket_path();
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
		log_sys.fd = fd;
		log_sys.is_sock = 1;
		log_sys.own_fd = 1;
		log_retry_wait = LOG_RETRY_MIN;
		log_retry_at = 0;
		return 0;
	}
	(void)safe_close(fd);
	log_retry_at = now + log_retry_wait;
	log_retry_wait *= 2;
	if (log_retry_wait > LOG_RETRY_MAX)
		log_retry_wait = LOG_RETRY_MAX;
	return -ENOTCONN;
}

static struct log_rec *
log_slot(uint64_t seq)
{
	return &log_ring[seq % LOG_RING_N];
}

static void log_vfill(struct log_rec *, int, const char *, va_list,
    const char *) PRINTFLIKE(3, 0);
static void log_push(int, const char *, va_list, const char *) PRINTFLIKE(2, 0);
static void log_vemit(int, const char *, va_list, const char *)
    PRINTFLIKE(2, 0);

static void
log_vfill(struct log_rec *rec, int pri, const char *fmt, va_list ap,
    const char *suffix)
{
	struct timespec ts;
	struct tm tm;
	size_t room, len;
	int n;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	if (localtime_r(&ts.tv_sec, &tm) == NULL)
		memset(&tm, 0, sizeof tm);
	rec->pri = pri;
	n = snprintf(rec->line, sizeof rec->line,
	    "<%d>%s %2d %02d:%02d:%02d %s[%ld]: ", log_facility | pri,
	    log_months[(unsigned int)tm.tm_mon % 12], tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, AGENT_NAME, (long)getpid());
	len = n > 0 ? (size_t)n : 0;
	rec->hdr = (unsigned short)len;
	room = sizeof rec->line - len;
	/* A clang-tidy 14 false positive: fatalx() did call va_start. */
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized) */
	n = vsnprintf(rec->line + len, room, fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n < room && suffix != NULL) {
		len += (size_t)n;
		room -= (size_t)n;
		n = snprintf(rec->line + len, room, ": %s", suffix);
		if (n < 0)
			n = 0;
	}
	if ((size_t)n >= room) {
		/* Truncated: say so at the end. */
		len = sizeof rec->line - 1;
		memcpy(rec->line + len - strlen(LOG_TRUNC), LOG_TRUNC,
		    strlen(LOG_TRUNC));
	} else
		len += (size_t)n;
	rec->len = (unsigned short)len;
}

static void log_fill(struct log_rec *, int, const char *, ...) PRINTFLIKE(3, 4);

static void
log_fill(struct log_rec *rec, int pri, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vfill(rec, pri, fmt, ap, NULL);
	va_end(ap);
}

/* Make room for one record: who lags a full ring loses its oldest. */
static void
log_make_room(void)
{
	struct log_dest *dv[2] = { &log_sys, &log_err };
	size_t i;

	for (i = 0; i < nitems(dv); i++) {
		if (!log_dest_live(dv[i]))
			continue;
		if (log_wseq - dv[i]->seq >= LOG_RING_N) {
			dv[i]->seq = log_wseq - LOG_RING_N + 1;
			dv[i]->lost++;
		}
	}
}

static void
log_push(int pri, const char *fmt, va_list ap, const char *suffix)
{
	if (!log_dest_live(&log_sys) && !log_dest_live(&log_err))
		return;
	log_make_room();
	log_vfill(log_slot(log_wseq), pri, fmt, ap, suffix);
	log_wseq++;
}

static const char *
log_level_word(int pri)
{
	switch (pri) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
		return "fatal: ";
	case LOG_ERR:
		return "error: ";
	case LOG_WARNING:
		return "warning: ";
	default:
		return "";
	}
}

/* Send one record: 0 when done with it (sent or given up), or -EAGAIN. */
static int
log_send_sys(struct log_dest *d, const struct log_rec *rec)
{
	int reconnected = 0;
	ssize_t n;

	for (;;) {
		if (log_sys_connect() < 0)
			return -EAGAIN;
		n = send(
		    d->fd, rec->line, rec->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		switch (errno) {
		case EINTR:
			continue;
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			d->waiting = 1;
			return -EAGAIN;
		case ENOBUFS:
			/* No poll() event comes for this: the timer looks. */
			log_retry_at = mono_now() + LOG_RETRY_MIN;
			return -EAGAIN;
		case ECONNREFUSED:
		case ECONNRESET:
		case ENOTCONN:
		case EPIPE:
		case ENOENT:
			/* The log daemon restarted: connect afresh, once. */
			log_sys_close();
			if (!reconnected) {
				reconnected = 1;
				log_retry_at = 0;
				continue;
			}
			return -EAGAIN;
		default:
			return 0; /* EMSGSIZE and the like: skip it */
		}
	}
}

/* stderr's rendering: "fsfreeze-agent: [warning: ]message\n". */
static size_t
log_err_iov(const struct log_rec *rec, size_t off, struct iovec *iov)
{
	const char *prefix = AGENT_NAME ": ";
	const char *word = log_level_word(rec->pri);
	size_t i, n = 0;

	iov[0].iov_base = (void *)(uintptr_t)prefix;
	iov[0].iov_len = strlen(prefix);
	iov[1].iov_base = (void *)(uintptr_t)word;
	iov[1].iov_len = strlen(word);
	iov[2].iov_base = (void *)(uintptr_t)(rec->line + rec->hdr);
	iov[2].iov_len = rec->len > rec->hdr ? rec->len - rec->hdr : 0;
	iov[3].iov_base = (void *)(uintptr_t) "\n";
	iov[3].iov_len = 1;
	for (i = 0; i < 4; i++) {
		n += iov[i].iov_len;
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			iov[i].iov_len = 0;
		} else {
			iov[i].iov_base = (char *)iov[i].iov_base + off;
			iov[i].iov_len -= off;
			off = 0;
		}
	}
	return n;
}

static int
log_send_err(struct log_dest *d, const struct log_rec *rec)
{
	struct iovec iov[4];
	struct pollfd pfd;
	struct msghdr mh;
	size_t off = 0, total;
	ssize_t n;

	if (d->has_part) {
		rec = &d->part;
		off = d->part_off;
	}
	for (;;) {
		total = log_err_iov(rec, off, iov);
		if (d->is_sock) {
			memset(&mh, 0, sizeof mh);
			mh.msg_iov = iov;
			mh.msg_iovlen = nitems(iov);
			n = sendmsg(d->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		} else {
			pfd.fd = d->fd;
			pfd.events = POLLOUT;
			pfd.revents = 0;
			if (d->may_block && poll(&pfd, 1, 0) == 0) {
				errno = EAGAIN;
				n = -1;
			} else
				n = writev(d->fd, iov, nitems(iov));
		}
		if (n >= 0 && off + (size_t)n >= total) {
			d->has_part = 0;
			return 0;
		}
		if (n >= 0) {
			/* A short write: keep the rest out of the ring. */
			if (!d->has_part)
				d->part = *rec;
			d->has_part = 1;
			rec = &d->part;
			off += (size_t)n;
			d->part_off = off;
			continue;
		}
		switch (errno) {
		case EINTR:
			continue;
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			d->waiting = 1;
			return d->has_part ? -EINPROGRESS : -EAGAIN;
		case EPIPE:
		case EBADF:
		case ECONNRESET:
			d->dead = 1;
			d->has_part = 0;
			return 0;
		default:
			d->has_part = 0;
			return 0;
		}
	}
}

/* Send what one destination has, in order, until it would block. */
static void
log_flush_dest(struct log_dest *d)
{
	struct log_rec rec;
	int r;

	if (!log_dest_live(d)) {
		d->seq = log_wseq;
		d->lost = 0;
		d->has_part = 0;
		return;
	}
	if (d->waiting && log_loop != NULL)
		return; /* its watcher calls again */
	d->waiting = 0;
	if (d->has_part) {
		/* The rest of a line that was begun: its record is copied. */
		if (d->send(d, &d->part) < 0)
			return;
	}
	while (d->seq < log_wseq || d->lost > 0) {
		if (d->lost > 0) {
			log_fill(
			    &rec, LOG_WARNING, "%lu messages dropped", d->lost);
			r = d->send(d, &rec);
			if (r == -EAGAIN)
				return;
			d->lost = 0;
			if (r < 0)
				return; /* begun: the rest is in part */
			continue;
		}
		r = d->send(d, log_slot(d->seq));
		if (r == -EAGAIN)
			return;
		d->seq++;
		if (r < 0)
			return;
	}
}

static void
log_flush_all(void)
{
	if (!log_held || log_in_fatal) {
		log_flush_dest(&log_sys);
		log_flush_dest(&log_err);
	}
	if (log_stopped)
		log_sys_close();
	log_arm();
}

static void
log_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct log_dest *d = w == &log_sys.w ? &log_sys : &log_err;

	(void)revents;
	log_io_stop(loop, w);
	d->waiting = 0;
	log_flush_all();
}

static void
log_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	/* A one-shot timer is stopped by now: give its reference back. */
	ev_ref(loop);
	log_flush_all();
}

static int
log_dest_pending(const struct log_dest *d)
{
	return log_dest_live(d) &&
	    (d->seq < log_wseq || d->lost > 0 || d->has_part);
}

/* Start the watchers that the queue needs, stop the others. */
static void
log_arm(void)
{
	struct log_dest *dv[2] = { &log_sys, &log_err };
	int want_timer = 0;
	double wait;
	size_t i;

	if (log_loop == NULL)
		return;
	for (i = 0; i < nitems(dv); i++) {
		if (log_held || !log_dest_pending(dv[i])) {
			log_dest_stop(dv[i]);
			continue;
		}
		if (dv[i]->waiting && dv[i]->fd >= 0)
			log_io_start(log_loop, &dv[i]->w, dv[i]->fd);
		else
			want_timer = 1; /* no socket yet, or ENOBUFS */
	}
	if (!want_timer) {
		log_timer_stop(log_loop);
		return;
	}
	wait = log_retry_at - mono_now();
	if (wait < 0.001)
		wait = 0.001;
	log_timer_start(log_loop, wait);
}

void
log_init(int to, int facility, int level)
{
	static int once;

	if (!once) {
		tzset();
		ev_io_init(&log_sys.w, log_io_cb, -1, EV_WRITE);
		ev_io_init(&log_err.w, log_io_cb, -1, EV_WRITE);
		ev_timer_init(&log_retry_w, log_retry_cb, LOG_RETRY_MIN, 0.);
		once = 1;
	}
	/* A destination turned on starts with the next line. */
	if ((to & LOG_TO_SYSLOG) && !log_sys.on) {
		log_sys.seq = log_wseq;
		log_sys.lost = 0;
	}
	if (((to & LOG_TO_STDERR) != 0) != (log_err.on != 0)) {
		/* fd 2 may be another file by now: look at it afresh. */
		log_dest_stop(&log_err);
		if (log_err.own_fd)
			(void)safe_close(log_err.fd);
		log_err.fd = -1;
		log_err.own_fd = log_err.dead = log_err.has_part = 0;
		log_err.seq = log_wseq;
		log_err.lost = 0;
		if (to & LOG_TO_STDERR)
			log_stderr_setup(!log_stopped);
	}
	log_sys.on = (to & LOG_TO_SYSLOG) != 0;
	log_err.on = (to & LOG_TO_STDERR) != 0;
	log_facility = facility & LOG_FACMASK;
	log_level = level;
	if (!log_sys.on)
		log_sys_close();
}

void
log_set_level(int level)
{
	log_level = level;
}

void
log_set_facility(int facility)
{
	log_facility = facility & LOG_FACMASK;
}

int
log_get_level(void)
{
	return log_level;
}

void
log_start(struct ev_loop *loop)
{
	log_loop = loop;
	log_stopped = 0;
	log_sys.waiting = log_err.waiting = 0;
	log_flush_all();
}

/*
 * After the last flush nothing stays open: later lines (the exit status)
 * go out through a socket opened and closed for each, and fd 2 itself.
 */
void
log_stop(void)
{
	struct ev_loop *loop = log_loop;

	if (loop != NULL) {
		log_sys.waiting = log_err.waiting = 0;
		log_loop = NULL;
		log_flush_all();
		log_io_stop(loop, &log_sys.w);
		log_io_stop(loop, &log_err.w);
		log_timer_stop(loop);
	}
	log_stopped = 1;
	log_sys_close();
	if (log_err.own_fd) {
		log_err.fd = safe_close(log_err.fd);
		log_err.own_fd = 0;
		log_stderr_setup(0);
	}
}

void
log_hold(int on)
{
	log_held = on != 0;
	if (!log_held)
		log_sys.waiting = log_err.waiting = 0;
	log_flush_all();
}

void
log_flush(void)
{
	log_flush_all();
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
	log_push(pri, fmt, ap, suffix);
	log_flush_all();
}

#define LOG_FN(fn, pri) \
	void fn(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_vemit(pri, fmt, ap, NULL); \
		va_end(ap); \
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
	log_vemit(LOG_WARNING, fmt, ap, strerror(r < 0 ? -r : r));
	va_end(ap);
}

/*
 * The reason is formatted by fatal()/fatalx() into its own record. Queue
 * it, thaw (the hook), then send what goes without waiting, hold or no
 * hold: this is the last chance.
 */
static struct log_rec log_fatal_rec;

static void NORETURN
log_fatal_finish(void)
{
	if (log_in_fatal)
		_exit(1); /* fatal again, inside the hook */
	log_in_fatal = 1;
	if (!log_sys.on && !log_err.on)
		log_init(LOG_TO_STDERR, log_facility, log_level);
	log_make_room();
	*log_slot(log_wseq) = log_fatal_rec;
	log_wseq++;
	if (log_fatal_hook != NULL)
		log_fatal_hook();
	log_loop = NULL; /* no watchers: one pass and out */
	log_sys.waiting = log_err.waiting = 0;
	log_retry_at = 0;
	log_flush_all();
	log_sys_close();
	if (log_err.own_fd)
		log_err.fd = safe_close(log_err.fd);
	exit(1);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_vfill(&log_fatal_rec, LOG_CRIT, fmt, ap, e);
	va_end(ap);
	log_fatal_finish();
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vfill(&log_fatal_rec, LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	log_fatal_finish();
}
