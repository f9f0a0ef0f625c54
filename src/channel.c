/* SPDX-License-Identifier: ISC */
/*
 * The channel to the host: a virtio-serial port, a serial tty, or a unix or
 * vsock listening socket serving one client at a time. Reads feed the
 * parser; replies wait in a capped queue written from the loop.
 */

#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#ifdef HAVE_LINUX_VM_SOCKETS_H
#include <linux/vm_sockets.h>
#endif

#include <ev.h>

#include "agent.h"

/*
 * One read takes up to CH_READ_SIZE bytes: large enough that a pipelined
 * host costs few syscalls, small enough that one chunk cannot queue more
 * than a bounded number of requests past the dispatcher's limit.
 */
#define CH_READ_SIZE ((size_t)4 * 1024)
/* Output: hard cap, and the marks between which reading stops. */
#define CH_OUT_CAP ((size_t)1024 * 1024)
#define CH_OUT_HIGH ((size_t)16 * 1024)
#define CH_OUT_LOW ((size_t)4 * 1024)
/* An empty queue keeps at most this much allocated. */
#define CH_OUT_KEEP ((size_t)8 * 1024)
/* How often a port with no host, or a failed accept, is looked at again. */
#define CH_RETRY 1.0
#define CH_BACKLOG 16
#define CH_BAUD B38400

struct channel {
	struct ev_loop *loop;
	enum channel_method method;
	char *path;
	ch_data_fn *data_cb;
	ch_reset_fn *reset_cb;
	void (*drain_cb)(void *);
	void *arg;

	int fd;	       /* the port, the tty or the connected client */
	int lfd;       /* the listening socket */
	int is_sock;   /* fd is a socket: send(MSG_NOSIGNAL) */
	int away;      /* a port with no host behind it */
	int paused;    /* channel_pause() */
	int congested; /* output over the high-water mark */
	int bound;     /* we made the socket file: unlink it at free */
	int async;     /* O_ASYNC is set on fd */
	int eof;       /* the client half-closed: answer, then close */
	int (*busy_cb)(void *);
	unsigned long session;

	struct buf out;
	char *rbuf;
	size_t roff, rlen; /* rbuf[roff, rlen): read, not taken yet */

	ev_io rd_w;
	ev_io wr_w;
	ev_io listen_w;
	ev_timer retry_w;
	ev_signal sigio_w;
	ev_prepare flush_w;
	ev_idle take_w;
};

static void channel_read_cb(struct ev_loop *, ev_io *, int);
static void channel_write_cb(struct ev_loop *, ev_io *, int);
static void channel_listen_cb(struct ev_loop *, ev_io *, int);
static void channel_retry_cb(struct ev_loop *, ev_timer *, int);
static void channel_sigio_cb(struct ev_loop *, ev_signal *, int);
static void channel_flush_cb(struct ev_loop *, ev_prepare *, int);
static void channel_flush(struct channel *);
static void channel_check_eof(struct channel *);

static int
channel_is_port(const struct channel *ch)
{
	return ch->method == CHANNEL_VIRTIO_SERIAL ||
	    ch->method == CHANNEL_ISA_SERIAL;
}

/*
 * rd_w runs exactly when a peer is there, nothing asks us to wait and
 * every byte read so far has been taken; take_w hands over bytes the
 * data callback held back, once it may have them.
 */
static void
channel_update_read(struct channel *ch)
{
	int live = ch->fd >= 0 && !ch->away && !ch->paused && !ch->congested;
	int held = ch->rlen > ch->roff;
	int want = live && !held && !ch->eof;

	if (want && !ev_is_active(&ch->rd_w)) {
		ev_io_set(&ch->rd_w, ch->fd, EV_READ);
		ev_io_start(ch->loop, &ch->rd_w);
	} else if (!want && ev_is_active(&ch->rd_w))
		ev_io_stop(ch->loop, &ch->rd_w);
	if (live && held)
		ev_idle_start(ch->loop, &ch->take_w);
	else
		ev_idle_stop(ch->loop, &ch->take_w);
}

/* Bytes the old peer sent and nobody took: they go with it. */
static void
channel_drop_input(struct channel *ch)
{
	ch->roff = ch->rlen = 0;
	ev_idle_stop(ch->loop, &ch->take_w);
}

/*
 * Offer the data callback what is read and not taken yet. What it leaves
 * (a request that cannot start now, and everything after it) stays in
 * rbuf, and no more is read until it is taken: the host's bytes wait in
 * the kernel, not in our memory.
 */
static void
channel_take(struct channel *ch)
{
	unsigned long session = ch->session;
	size_t n = ch->rlen - ch->roff, used = n;

	if (ch->data_cb != NULL)
		used = ch->data_cb(ch->arg, ch->rbuf + ch->roff, n);
	if (ch->session != session || ch->fd < 0)
		channel_drop_input(ch); /* the callback ended the session */
	else if (used >= n)
		ch->roff = ch->rlen = 0;
	else
		ch->roff += used;
	channel_update_read(ch);
}

static void
channel_take_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, take_w);

	(void)loop;
	(void)revents;
	channel_take(ch);
}

static void
channel_stop_output(struct channel *ch)
{
	ev_io_stop(ch->loop, &ch->wr_w);
	ev_prepare_stop(ch->loop, &ch->flush_w);
}

/*
 * Forget queued output (the peer that would read it is gone). Whoever
 * stopped executing for congestion may go on: its replies are dropped.
 */
static void
channel_drop_output(struct channel *ch)
{
	int was = ch->congested;

	channel_stop_output(ch);
	buf_reset(&ch->out);
	ch->congested = 0;
	channel_update_read(ch);
	if (was && ch->drain_cb != NULL)
		ch->drain_cb(ch->arg);
}

static void
channel_new_session(struct channel *ch)
{
	ch->session++;
	channel_drop_input(ch);
	if (ch->reset_cb != NULL)
		ch->reset_cb(ch->arg);
}

static int
channel_set_async(struct channel *ch, int on)
{
	int fl;

	if (ch->fd < 0 || ch->async == on)
		return 0;
	if ((fl = fcntl(ch->fd, F_GETFL)) == -1)
		return -errno;
	fl = on ? fl | O_ASYNC : fl & ~O_ASYNC;
	if (fcntl(ch->fd, F_SETFL, fl) == -1)
		return -errno;
	ch->async = on;
	return 0;
}

/*
 * A port whose host went away (read returned 0, or it polls HUP): the
 * session is over. Keep the fd open (libvirt reads a close as an agent
 * restart) but stop both io watchers, which would fire on HUP forever,
 * and wait for SIGIO, which virtio_console sends to the owner when the
 * host opens its side, or for retry_w, whichever comes first.
 */
static void
channel_port_away(struct channel *ch)
{
	int r;

	if (ch->away)
		return;
	log_debug("channel: host left '%s'", ch->path);
	ch->away = 1;
	channel_update_read(ch);
	channel_new_session(ch);
	channel_drop_output(ch);
	if ((r = channel_set_async(ch, 1)) < 0)
		log_debug(
		    "channel: O_ASYNC on '%s': %s", ch->path, strerror(-r));
	if (!ev_is_active(&ch->retry_w)) {
		ev_timer_set(&ch->retry_w, CH_RETRY, CH_RETRY);
		ev_timer_start(ch->loop, &ch->retry_w);
	}
}

static void
channel_port_back(struct channel *ch)
{
	log_debug("channel: host on '%s'", ch->path);
	ch->away = 0;
	ev_timer_stop(ch->loop, &ch->retry_w);
	(void)channel_set_async(ch, 0);
	channel_update_read(ch);
}

/* -errno if the tty cannot be made raw. */
static int
channel_tty_setup(int fd)
{
	struct termios tio;

	if (!isatty(fd))
		return 0; /* a plain file or FIFO standing in for it */
	if (tcgetattr(fd, &tio) == -1)
		return -errno;
	cfmakeraw(&tio);
	tio.c_cflag |= CLOCAL | CREAD;
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 0;
	if (cfsetispeed(&tio, CH_BAUD) == -1 ||
	    cfsetospeed(&tio, CH_BAUD) == -1)
		return -errno;
	/* Whatever waits in the input queue is garbage from before us. */
	(void)tcflush(fd, TCIFLUSH);
	if (tcsetattr(fd, TCSANOW, &tio) == -1)
		return -errno;
	return 0;
}

/* Take over an open port or tty fd; reading is the caller's to start. */
static void
channel_port_attach(struct channel *ch, int fd)
{
	ch->fd = fd;
	ch->is_sock = 0;
	ch->async = 0;
	/* F_SETOWN: SIGIO goes only to an owner. */
	if (fcntl(fd, F_SETOWN, getpid()) == -1)
		log_debug(
		    "channel: F_SETOWN '%s': %s", ch->path, strerror(errno));
}

static int
channel_port_open(struct channel *ch)
{
	int fd, fl, r;

	fl = O_RDWR | O_NONBLOCK | O_CLOEXEC;
	if (ch->method == CHANNEL_ISA_SERIAL)
		fl |= O_NOCTTY;
	if ((fd = open(ch->path, fl)) == -1)
		return -errno;
	if (ch->method == CHANNEL_ISA_SERIAL &&
	    (r = channel_tty_setup(fd)) < 0) {
		(void)safe_close(fd);
		return r;
	}
	channel_port_attach(ch, fd);
	return 0;
}

/*
 * Is the host there? poll() with no wait: virtio_console says POLLHUP
 * while the host side is closed, as does a hung-up tty or a FIFO with no
 * writer.
 */
static int
channel_port_hup(const struct channel *ch)
{
	struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };

	if (poll(&pfd, 1, 0) < 0)
		return 0;
	return (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static void
channel_port_check(struct channel *ch)
{
	if (!ch->away)
		return;
	/*
	 * A hung-up tty stays hung up: only a new open can serve again. A
	 * virtio port is never reopened (libvirt would see a restart).
	 */
	if (ch->method == CHANNEL_ISA_SERIAL &&
	    (ch->fd < 0 || channel_port_hup(ch))) {
		int r;

		(void)channel_set_async(ch, 0);
		ev_io_stop(ch->loop, &ch->rd_w);
		channel_stop_output(ch);
		ch->fd = safe_close(ch->fd);
		if ((r = channel_port_open(ch)) < 0) {
			log_debug(
			    "channel: reopen '%s': %s", ch->path, strerror(-r));
			return;
		}
		if (channel_port_hup(ch)) {
			(void)channel_set_async(ch, 1);
			return;
		}
	}
	if (ch->fd >= 0 && !channel_port_hup(ch))
		channel_port_back(ch);
}

static void
channel_sigio_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, sigio_w);

	(void)loop;
	(void)revents;
	channel_port_check(ch);
}

/* The client is gone: close it and let the next one in. */
static void
channel_client_close(struct channel *ch)
{
	if (ch->fd < 0)
		return;
	log_debug("channel: client closed");
	/* Every watcher off the fd before it closes: its number comes back. */
	ev_io_stop(ch->loop, &ch->rd_w);
	channel_stop_output(ch);
	ch->fd = safe_close(ch->fd);
	ch->eof = 0;
	channel_drop_input(ch);
	channel_drop_output(ch);
	if (ch->lfd >= 0)
		ev_io_start(ch->loop, &ch->listen_w);
}

/* The peer is gone: a client closes, a port waits for its host. */
static void
channel_peer_gone(struct channel *ch)
{
	if (channel_is_port(ch))
		channel_port_away(ch);
	else
		channel_client_close(ch);
}

static void
channel_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, rd_w);
	ssize_t n;

	(void)loop;
	(void)revents;
	n = read(ch->fd, ch->rbuf, CH_READ_SIZE);
	if (n > 0) {
		ch->roff = 0;
		ch->rlen = (size_t)n;
		channel_take(ch);
		return;
	}
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0)
		log_debug("channel: read: %s", strerror(errno));
	/*
	 * A socket client that shuts down its sending side (socat, nc -N)
	 * still waits for the replies to what it sent: stop reading, answer,
	 * then close.
	 */
	if (n == 0 && !channel_is_port(ch)) {
		ch->eof = 1;
		channel_update_read(ch);
		channel_check_eof(ch);
		return;
	}
	/* 0 is EOF, or a port with no host; an error ends the peer too. */
	channel_peer_gone(ch);
}

/* Close a half-closed client once everything it asked for is answered. */
static void
channel_check_eof(struct channel *ch)
{
	if (!ch->eof || ch->fd < 0 || buf_used(&ch->out) > 0)
		return;
	if (ch->busy_cb != NULL && ch->busy_cb(ch->arg))
		return;
	channel_client_close(ch);
}

void
channel_idle(struct channel *ch)
{
	channel_check_eof(ch);
}

void
channel_set_busy_cb(struct channel *ch, int (*fn)(void *))
{
	ch->busy_cb = fn;
}

static void
channel_check_drain(struct channel *ch)
{
	if (!ch->congested || buf_used(&ch->out) > CH_OUT_LOW)
		return;
	ch->congested = 0;
	channel_update_read(ch);
	if (ch->drain_cb != NULL)
		ch->drain_cb(ch->arg);
}

/* Write until the queue is empty or the fd would block; never wait. */
static void
channel_flush(struct channel *ch)
{
	ssize_t n;

again:
	ev_prepare_stop(ch->loop, &ch->flush_w);
	while (buf_used(&ch->out) > 0 && ch->fd >= 0) {
		if (ch->is_sock)
			n = send(ch->fd, buf_head(&ch->out), buf_used(&ch->out),
			    MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			n = write(
			    ch->fd, buf_head(&ch->out), buf_used(&ch->out));
		if (n > 0) {
			buf_consume(&ch->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/*
			 * A port with no host takes no writes and polls HUP,
			 * which would wake wr_w forever: that is the host
			 * leaving, not a full queue.
			 */
			if (channel_is_port(ch) && channel_port_hup(ch)) {
				channel_port_away(ch);
				return;
			}
			if (!ev_is_active(&ch->wr_w)) {
				ev_io_set(&ch->wr_w, ch->fd, EV_WRITE);
				ev_io_start(ch->loop, &ch->wr_w);
			}
			return;
		}
		log_debug("channel: write: %s",
		    n < 0 ? strerror(errno) : "wrote nothing");
		channel_peer_gone(ch);
		return;
	}
	ev_io_stop(ch->loop, &ch->wr_w);
	/* A burst grew the queue: give the memory back once it is empty. */
	buf_shrink(&ch->out, CH_OUT_KEEP);
	channel_check_drain(ch);
	/*
	 * The drain callback may have run requests whose replies are queued
	 * now: write them here. A prepare watcher started from inside this
	 * prepare callback would only run after the loop has blocked.
	 */
	if (buf_used(&ch->out) > 0 && ch->fd >= 0)
		goto again;
	channel_check_eof(ch);
}

static void
channel_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, wr_w);

	(void)loop;
	(void)revents;
	channel_flush(ch);
}

static void
channel_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, flush_w);

	(void)loop;
	(void)revents;
	channel_flush(ch);
}

static void
channel_listen_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, listen_w);
	int fd;

	(void)revents;
	if (ch->fd >= 0) {
		ev_io_stop(loop, w);
		return;
	}
	fd = accept4(ch->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
		    errno == ECONNABORTED)
			return;
		/*
		 * EMFILE and friends leave the client in the backlog, so the
		 * listen watcher would fire at once again: look later.
		 */
		log_debug("channel: accept: %s", strerror(errno));
		ev_io_stop(loop, w);
		ev_timer_set(&ch->retry_w, CH_RETRY, 0.);
		ev_timer_start(loop, &ch->retry_w);
		return;
	}
	ev_io_stop(loop, w);
	ch->fd = fd;
	ch->is_sock = 1;
	log_debug("channel: client connected");
	channel_new_session(ch);
	channel_update_read(ch);
}

static void
channel_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct channel *ch = container_of(w, struct channel, retry_w);

	(void)revents;
	if (channel_is_port(ch)) {
		channel_port_check(ch);
		return;
	}
	ev_timer_stop(loop, w);
	if (ch->fd < 0 && ch->lfd >= 0)
		ev_io_start(loop, &ch->listen_w);
}

static int
channel_unix_open(struct channel *ch)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, r;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(ch->path) >= sizeof sun.sun_path)
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, ch->path, strlen(ch->path));
	if ((fd = socket(
		 AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1)
		return -errno;
	/*
	 * A socket file left by a dead agent is removed; a live agent's
	 * (connect succeeds) or anything that is not a socket is kept.
	 */
	if (lstat(ch->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			r = -EEXIST;
			goto fail;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ||
		    errno == EAGAIN) {
			r = -EADDRINUSE;
			goto fail;
		}
		(void)close(fd);
		if (unlink(ch->path) == -1 && errno != ENOENT)
			return -errno;
		if ((fd = socket(AF_UNIX,
			 SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1)
			return -errno;
	}
	/* The umask keeps the file from being wider than 0600, ever. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1 ? -errno : 0;
	(void)umask(old);
	if (r < 0)
		goto fail;
	ch->bound = 1;
	if (chmod(ch->path, 0600) == -1 || listen(fd, CH_BACKLOG) == -1) {
		r = -errno;
		goto fail;
	}
	return fd;
fail:
	(void)safe_close(fd);
	return r;
}

#ifdef HAVE_LINUX_VM_SOCKETS_H
/* "CID:PORT", CID -1 meaning any, as qemu-ga takes it. */
static int
channel_vsock_parse(const char *s, unsigned int *cid, unsigned int *port)
{
	unsigned long long v;
	char *end;

	if (strncmp(s, "-1:", 3) == 0) {
		*cid = VMADDR_CID_ANY;
		s += 3;
	} else {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		errno = 0;
		v = strtoull(s, &end, 10);
		if (errno != 0 || *end != ':' || v > UINT_MAX)
			return -EINVAL;
		*cid = (unsigned int)v;
		s = end + 1;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > UINT_MAX)
		return -EINVAL;
	*port = (unsigned int)v;
	return 0;
}

static int
channel_vsock_open(struct channel *ch)
{
	struct sockaddr_vm svm;
	unsigned int cid, port;
	int fd, r;

	if ((r = channel_vsock_parse(ch->path, &cid, &port)) < 0)
		return r;
	memset(&svm, 0, sizeof svm);
	svm.svm_family = AF_VSOCK;
	svm.svm_cid = cid;
	svm.svm_port = port;
	if ((fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		 0)) == -1)
		return -errno;
	if (bind(fd, (struct sockaddr *)&svm, sizeof svm) == -1 ||
	    listen(fd, CH_BACKLOG) == -1) {
		r = -errno;
		(void)safe_close(fd);
		return r;
	}
	return fd;
}
#endif

struct channel *
channel_new(struct ev_loop *loop, enum channel_method method, const char *path,
    ch_data_fn *data_cb, ch_reset_fn *reset_cb, void *arg)
{
	struct channel *ch;

	ch = xcalloc(1, sizeof *ch);
	ch->loop = loop;
	ch->method = method;
	ch->path = xstrdup(path != NULL ? path : "");
	ch->data_cb = data_cb;
	ch->reset_cb = reset_cb;
	ch->arg = arg;
	ch->fd = ch->lfd = -1;
	buf_init_mapped(&ch->out, CH_OUT_CAP);
	ch->rbuf = xmalloc(CH_READ_SIZE);
	ev_io_init(&ch->rd_w, channel_read_cb, -1, EV_READ);
	ev_io_init(&ch->wr_w, channel_write_cb, -1, EV_WRITE);
	ev_io_init(&ch->listen_w, channel_listen_cb, -1, EV_READ);
	ev_timer_init(&ch->retry_w, channel_retry_cb, CH_RETRY, CH_RETRY);
	ev_signal_init(&ch->sigio_w, channel_sigio_cb, SIGIO);
	ev_prepare_init(&ch->flush_w, channel_flush_cb);
	ev_idle_init(&ch->take_w, channel_take_cb);
	return ch;
}

int
channel_open(struct channel *ch)
{
	int fd, r;

	if (ch->fd >= 0 || ch->lfd >= 0)
		return -EALREADY;
	if (*ch->path == '\0')
		return -EINVAL;
	switch (ch->method) {
	case CHANNEL_VIRTIO_SERIAL:
	case CHANNEL_ISA_SERIAL:
		/* The handler must be in place before O_ASYNC can be set. */
		ev_signal_start(ch->loop, &ch->sigio_w);
		if ((r = channel_port_open(ch)) < 0) {
			ev_signal_stop(ch->loop, &ch->sigio_w);
			return r;
		}
		channel_update_read(ch);
		return 0;
	case CHANNEL_UNIX_LISTEN:
		fd = channel_unix_open(ch);
		break;
	case CHANNEL_VSOCK_LISTEN:
#ifdef HAVE_LINUX_VM_SOCKETS_H
		fd = channel_vsock_open(ch);
		break;
#else
		return -EAFNOSUPPORT;
#endif
	default:
		return -EINVAL;
	}
	if (fd < 0)
		return fd;
	ch->lfd = fd;
	ev_io_set(&ch->listen_w, fd, EV_READ);
	ev_io_start(ch->loop, &ch->listen_w);
	return 0;
}

void
channel_free(struct channel *ch)
{
	if (ch == NULL)
		return;
	ev_io_stop(ch->loop, &ch->rd_w);
	ev_io_stop(ch->loop, &ch->listen_w);
	ev_timer_stop(ch->loop, &ch->retry_w);
	ev_idle_stop(ch->loop, &ch->take_w);
	channel_stop_output(ch);
	/* No O_ASYNC may outlive the SIGIO handler: SIGIO kills. */
	(void)channel_set_async(ch, 0);
	ev_signal_stop(ch->loop, &ch->sigio_w);
	(void)safe_close(ch->fd);
	(void)safe_close(ch->lfd);
	if (ch->bound)
		(void)unlink(ch->path);
	buf_free(&ch->out);
	free(ch->rbuf);
	free(ch->path);
	free(ch);
}

int
channel_write(struct channel *ch, const void *p, size_t n)
{
	int r;

	if (ch->fd < 0 || ch->away || n == 0)
		return 0;
	if ((r = buf_add(&ch->out, p, n)) < 0)
		return r;
	if (buf_used(&ch->out) > CH_OUT_HIGH && !ch->congested) {
		ch->congested = 1;
		channel_update_read(ch);
	}
	/*
	 * Not written from here but once per loop iteration, before the loop
	 * waits: the replies to a whole read go in one write, and a write
	 * error cannot fire the reset and drain callbacks inside the
	 * caller's own call.
	 */
	if (!ev_is_active(&ch->wr_w))
		ev_prepare_start(ch->loop, &ch->flush_w);
	return 0;
}

int
channel_congested(const struct channel *ch)
{
	return ch->congested;
}

void
channel_pause(struct channel *ch, int on)
{
	ch->paused = on != 0;
	channel_update_read(ch);
}

unsigned long
channel_session(const struct channel *ch)
{
	return ch->session;
}

void
channel_set_drain_cb(struct channel *ch, void (*fn)(void *))
{
	ch->drain_cb = fn;
}
