/* SPDX-License-Identifier: ISC */
/*
 * Freeze workers: forked processes that make the two calls that can block
 * for long, syncfs() and FIFREEZE, off the loop. The loop passes a worker
 * one call at a time with the target's fd (SCM_RIGHTS over a socketpair)
 * and reads back the errno; the worker closes its copy of the fd after
 * each call, so it never holds a filesystem between calls, and the loop
 * keeps its own fd, the result and the thaw.
 *
 * Workers are kept for WORKER_IDLE seconds after their last call: a freeze
 * syncs every target and then freezes it, and a host may freeze again
 * right after a thaw, and neither should pay for new processes (a fork of
 * the agent costs more than a warm FIFREEZE, and a process exit right
 * before a FIFREEZE makes the kernel wait for an extra RCU grace period).
 * Snapshots minutes apart find no workers and fork new ones.
 */

#include "config.h"

#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fs.h>

#include "agent.h"

struct worker {
	struct worker *next;
	pid_t pid;
	int fd; /* our end of the socketpair */
	ev_io io_w;
	ev_child child_w;
	worker_done_fn *done; /* a call is in flight */
	void *arg;
};

/* The socket's number in the worker. */
#define WORKER_FD 3

/* A call as the loop sends it and the worker reads it: the op and one fd. */
struct worker_msg {
	struct msghdr msg;
	struct iovec iov;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	unsigned char op;
};

static struct {
	struct ev_loop *loop;
	struct worker *all;
	size_t n;
	ev_timer idle_w;
	double idle; /* seconds an idle pool is kept */
} pool = { .idle = WORKER_IDLE };

static void worker_msg_init(struct worker_msg *);
static int worker_main(void *);
static void worker_unlink(struct worker *);
static void worker_destroy(struct worker *);
static void worker_lost(struct worker *);
static struct worker *worker_new(void);
static int worker_read(struct worker *);
static void worker_io_cb(struct ev_loop *, ev_io *, int);
static void worker_child_cb(struct ev_loop *, ev_child *, int);
static void worker_idle_cb(struct ev_loop *, ev_timer *, int);
static void worker_check_idle(void);

static void
worker_msg_init(struct worker_msg *m)
{
	memset(m, 0, sizeof *m);
	m->iov.iov_base = &m->op;
	m->iov.iov_len = sizeof m->op;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	m->msg.msg_control = m->u.buf;
	m->msg.msg_controllen = sizeof m->u.buf;
}

/*
 * The worker process: a forked copy of the agent with its signals set by
 * spawn_worker(). It keeps only its socket (a worker left behind must not
 * hold the host's port, a listening socket or anything else of the agent
 * open) and serves calls until the agent closes the socket or goes away.
 */
static int
worker_main(void *arg)
{
	int sock = *(int *)arg, fd, err;
	struct worker_msg m;
	struct cmsghdr *cm;
	ssize_t n;

	(void)prctl(PR_SET_NAME, "fsfa-worker", 0, 0, 0);
	if (sock != WORKER_FD && dup2(sock, WORKER_FD) == -1)
		return 1;
	sock = WORKER_FD;
#ifdef HAVE_CLOSE_RANGE
	if (close_range(WORKER_FD + 1, ~0U, 0) == -1)
#endif
		for (fd = WORKER_FD + 1; fd < 65536; fd++)
			(void)close(fd);
	for (;;) {
		worker_msg_init(&m);
		n = recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0; /* the agent closed the pool, or is gone */
		fd = -1;
		cm = CMSG_FIRSTHDR(&m.msg);
		if (cm != NULL && cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof fd);
		err = 0;
		if (fd < 0)
			err = EBADF;
		else if (m.op == WORKER_SYNCFS)
			err = syncfs(fd) == -1 ? errno : 0;
		else if (m.op == WORKER_FIFREEZE)
			err = ioctl(fd, FIFREEZE, 0) == -1 ? errno : 0;
		else
			err = EINVAL;
		if (fd >= 0)
			(void)close(fd);
		if (send(sock, &err, sizeof err, MSG_NOSIGNAL) != sizeof err)
			return 0;
	}
}

/* Out of the pool: nothing can pick w for a call any more. */
static void
worker_unlink(struct worker *w)
{
	struct worker **pp;

	for (pp = &pool.all; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			pool.n--;
			return;
		}
}

static void
worker_destroy(struct worker *w)
{
	ev_io_stop(pool.loop, &w->io_w);
	ev_child_stop(pool.loop, &w->child_w);
	(void)safe_close(w->fd);
	free(w);
}

/* w is gone or going: its call (if any) is lost. */
static void
worker_lost(struct worker *w)
{
	worker_done_fn *done = w->done;
	void *arg = w->arg;

	worker_unlink(w);
	worker_destroy(w);
	if (done != NULL)
		done(arg, WORKER_LOST);
}

/* A new worker, or NULL with errno set. */
static struct worker *
worker_new(void)
{
	struct worker *w;
	int sv[2];
	pid_t pid;

	/* Our end needs no O_NONBLOCK: every call on it is MSG_DONTWAIT. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return NULL;
	pid = spawn_worker(worker_main, &sv[1]);
	(void)close(sv[1]);
	if (pid < 0) {
		(void)close(sv[0]);
		errno = (int)-pid;
		return NULL;
	}
	w = xcalloc(1, sizeof *w);
	w->pid = pid;
	w->fd = sv[0];
	/* Before control returns to the loop: libev reaps every child. */
	ev_child_init(&w->child_w, worker_child_cb, pid, 0);
	ev_child_start(pool.loop, &w->child_w);
	ev_io_init(&w->io_w, worker_io_cb, w->fd, EV_READ);
	w->next = pool.all;
	pool.all = w;
	pool.n++;
	return w;
}

/*
 * Read a result if there is one and deliver it: 1 delivered (w may be
 * gone: done() can do anything), 0 nothing yet, -1 the worker is gone.
 */
static int
worker_read(struct worker *w)
{
	worker_done_fn *done;
	void *arg;
	int err;
	ssize_t n;

	n = recv(w->fd, &err, sizeof err, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n != sizeof err)
		return -1;
	done = w->done;
	arg = w->arg;
	w->done = NULL;
	ev_io_stop(pool.loop, &w->io_w);
	worker_check_idle();
	if (done != NULL)
		done(arg, err);
	return 1;
}

static void
worker_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct worker *wk = container_of(w, struct worker, io_w);

	(void)loop;
	(void)revents;
	if (worker_read(wk) < 0)
		worker_lost(wk);
}

static void
worker_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	struct worker *wk = container_of(w, struct worker, child_w);

	(void)loop;
	(void)revents;
	log_debug("worker %ld: %s 0x%x", (long)wk->pid,
	    wk->done != NULL ? "gone during a call" : "exited",
	    (unsigned int)w->rstatus);
	/*
	 * Out of the pool first: done() below may start calls, and must not
	 * be given this one. A result it sent before it went still counts.
	 */
	worker_unlink(wk);
	if (wk->done != NULL && worker_read(wk) == 1) {
		worker_destroy(wk);
		return;
	}
	worker_lost(wk);
}

static void
worker_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	worker_close_idle();
}

/* No call in flight: (re)start the idle timer; else stop it. */
static void
worker_check_idle(void)
{
	struct worker *w;

	if (pool.loop == NULL)
		return;
	ev_timer_stop(pool.loop, &pool.idle_w);
	for (w = pool.all; w != NULL; w = w->next)
		if (w->done != NULL)
			return;
	if (pool.all != NULL) {
		ev_timer_set(&pool.idle_w, pool.idle, 0.);
		ev_timer_start(pool.loop, &pool.idle_w);
	}
}

int
worker_call(struct ev_loop *loop, enum worker_op op, int fd,
    worker_done_fn *done, void *arg, struct worker **wp)
{
	struct worker_msg m;
	struct cmsghdr *cm;
	struct worker *w;
	int tries;

	if (pool.loop == NULL) {
		pool.loop = loop;
		ev_timer_init(&pool.idle_w, worker_idle_cb, pool.idle, 0.);
	}
	for (tries = 0; tries < 2; tries++) {
		for (w = pool.all; w != NULL; w = w->next)
			if (w->done == NULL)
				break;
		if (w == NULL) {
			if (pool.n >= WORKER_MAX)
				return -EAGAIN;
			if ((w = worker_new()) == NULL)
				return -errno;
		}
		worker_msg_init(&m);
		m.op = (unsigned char)op;
		cm = CMSG_FIRSTHDR(&m.msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		if (sendmsg(w->fd, &m.msg, MSG_NOSIGNAL | MSG_DONTWAIT) ==
		    (ssize_t)sizeof m.op) {
			w->done = done;
			w->arg = arg;
			ev_io_start(pool.loop, &w->io_w);
			ev_timer_stop(pool.loop, &pool.idle_w);
			if (wp != NULL)
				*wp = w;
			return 0;
		}
		/* An idle worker that died unseen: drop it, try a new one. */
		log_debug(
		    "worker %ld: sendmsg: %s", (long)w->pid, strerror(errno));
		worker_lost(w);
	}
	return -EPIPE;
}

/*
 * The caller no longer wants w's result (its plan is being freed): kill
 * it, as a call that has not reached its ioctl then freezes nothing.
 */
void
worker_cancel(struct worker *w)
{
	struct worker *x;

	for (x = pool.all; x != NULL; x = x->next)
		if (x == w)
			break;
	if (x == NULL)
		return;
	w->done = NULL;
	(void)kill(w->pid, SIGKILL);
	worker_unlink(w);
	worker_destroy(w); /* libev reaps it */
	worker_check_idle();
}

/*
 * Close the idle workers' sockets: each exits at EOF and libev reaps it.
 * Busy ones finish their call first.
 */
void
worker_close_idle(void)
{
	struct worker *w, *next;

	for (w = pool.all; w != NULL; w = next) {
		next = w->next;
		if (w->done == NULL) {
			worker_unlink(w);
			worker_destroy(w);
		}
	}
	if (pool.loop != NULL && pool.all == NULL)
		ev_timer_stop(pool.loop, &pool.idle_w);
}

size_t
worker_count(void)
{
	return pool.n;
}

/* For the tests: how long an idle pool is kept, from now on. */
void
worker_set_idle(double secs)
{
	pool.idle = secs;
	worker_check_idle();
}
