/* SPDX-License-Identifier: ISC */
/*
 * channel.c with a real loop: unix-listen (mode, one client at a time,
 * sessions, replies, a client that never reads), isa-serial over a pty,
 * a virtio-serial port with no host (a FIFO whose writer left), vsock.
 */

#include "../src/channel.c"

#include <sys/resource.h>

#include <pty.h>

#include "tap.h"
#include "evtest.h"
#include "memtest.h"

static char tmpdir[] = "/tmp/t0030-XXXXXX";

struct ctx {
	struct buf in; /* what data_cb got */
	size_t take;   /* data_cb takes at most this much, then pauses ch */
	struct channel *ch;
	int offers; /* data_cb calls */
	int resets;
	int drains;
};
static struct ctx cx;

/* As the agent does: take what it can, hold the rest and pause. */
static size_t
data_cb(void *arg, const char *p, size_t n)
{
	struct ctx *c = arg;
	size_t k = n < c->take ? n : c->take;

	c->offers++;
	(void)buf_add(&c->in, p, k);
	if (k < n && c->ch != NULL)
		channel_pause(c->ch, 1);
	return k;
}

static void
reset_cb(void *arg)
{
	struct ctx *c = arg;

	c->resets++;
}

static void
drain_cb(void *arg)
{
	struct ctx *c = arg;

	c->drains++;
}

static void
ctx_clear(void)
{
	buf_reset(&cx.in);
}

static int
in_is(const char *s)
{
	return buf_used(&cx.in) == strlen(s) &&
	    memcmp(buf_head(&cx.in), s, strlen(s)) == 0;
}

/* Run the loop until *flag reaches want or timeout passes. */
static int
run_until(const int *flag, int want, double timeout)
{
	double end = mono_now() + timeout;

	while (*flag < want && mono_now() < end)
		run_for(0.01);
	return *flag >= want;
}

static int
run_until_in(size_t n, double timeout)
{
	double end = mono_now() + timeout;

	while (buf_used(&cx.in) < n && mono_now() < end)
		run_for(0.01);
	return buf_used(&cx.in) >= n;
}

/* CPU seconds used by running the loop for secs. */
static double
cpu_over(double secs)
{
	double c0 = cpu_secs();

	run_for(secs);
	return cpu_secs() - c0;
}

static int
unix_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path) >=
	    (int)sizeof sun.sun_path)
		bail("path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		bail("connect %s: %s", path, strerror(errno));
	return fd;
}

/* Read up to size bytes within timeout into b; the byte count. */
static size_t
read_some(int fd, char *b, size_t size, double timeout)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	double end = mono_now() + timeout;
	size_t got = 0;
	ssize_t n;

	while (got < size && mono_now() < end) {
		run_for(0.005);
		if (poll(&pfd, 1, 0) <= 0 || !(pfd.revents & POLLIN))
			continue;
		n = read(fd, b + got, size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* The client side of the congestion test: read when told to. */
static ev_io cl_w;
static size_t cl_got;

static void
cl_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char b[65536];
	ssize_t n;

	(void)loop;
	(void)revents;
	while ((n = read(w->fd, b, sizeof b)) > 0)
		cl_got += (size_t)n;
}

static void
test_unix_open_rules(const char *path)
{
	struct channel *ch, *ch2;
	struct sockaddr_un sun;
	int fd;

	/* A stale socket file (nobody listening) is replaced. */
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path) >=
	    (int)sizeof sun.sun_path)
		bail("path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		bail("bind: %s", strerror(errno));
	(void)close(fd);
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_UNIX_LISTEN, path, data_cb, reset_cb, &cx);
	is_int(0, channel_open(ch), "unix: a stale socket file is replaced");
	channel_free(ch);
	ok(access(path, F_OK) == -1 && errno == ENOENT,
	    "unix: channel_free unlinks the socket");

	/* A live agent's socket: not taken over. */
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_UNIX_LISTEN, path, data_cb, reset_cb, &cx);
	ch2 = channel_new(
	    EV_DEFAULT, CHANNEL_UNIX_LISTEN, path, data_cb, reset_cb, &cx);
	is_int(0, channel_open(ch), "unix: first listener");
	is_int(-EADDRINUSE, channel_open(ch2),
	    "unix: a live agent's socket is not taken over");
	ok(access(path, F_OK) == 0, "unix: ... and is left in place");
	channel_free(ch2);
	channel_free(ch);

	/* Not a socket: left alone. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	(void)close(fd);
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_UNIX_LISTEN, path, data_cb, reset_cb, &cx);
	is_int(
	    -EEXIST, channel_open(ch), "unix: a regular file is not removed");
	channel_free(ch);
	ok(access(path, F_OK) == 0, "unix: the file is still there");
	(void)unlink(path);
}

static void
test_unix(void)
{
	char path[256], b[256];
	struct channel *ch;
	struct stat st;
	int c1, c2, c3, sz, r, rejected;
	size_t n, sent, chunk = 16384;
	char *big;
	double cpu;

	snprintf(path, sizeof path, "%s/agent.sock", tmpdir);
	test_unix_open_rules(path);

	memset(&cx, 0, sizeof cx);
	buf_init(&cx.in, 0);
	cx.take = SIZE_MAX;
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_UNIX_LISTEN, path, data_cb, reset_cb, &cx);
	channel_set_drain_cb(ch, drain_cb);
	is_int(0, channel_open(ch), "unix: open");
	if (stat(path, &st) == -1)
		memset(&st, 0, sizeof st);
	ok(S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0600,
	    "unix: a socket with mode 0600 (%o)", (unsigned)st.st_mode & 07777);
	ok(fcntl(ch->lfd, F_GETFD) & FD_CLOEXEC, "unix: listen fd cloexec");
	is_int(0, channel_session(ch), "session 0 before any client");
	is_int(0, channel_write(ch, "x", 1), "write with no client: 0");
	is_int(0, buf_used(&ch->out), "write with no client: dropped");

	c1 = unix_connect(path);
	ok(run_until(&cx.resets, 1, 2.0), "unix: reset on accept");
	is_int(1, channel_session(ch), "unix: session 1");
	ok(fcntl(ch->fd, F_GETFD) & FD_CLOEXEC &&
		fcntl(ch->fd, F_GETFL) & O_NONBLOCK,
	    "unix: client fd cloexec and non-blocking");
	(void)write(c1, "hello", 5);
	ok(run_until_in(5, 2.0) && in_is("hello"), "unix: data_cb gets bytes");
	ctx_clear();
	is_int(0, channel_write(ch, "reply\n", 6), "unix: channel_write");
	n = read_some(c1, b, 6, 2.0);
	ok(n == 6 && memcmp(b, "reply\n", 6) == 0, "unix: the reply arrives");

	/* One client at a time: the second waits in the backlog. */
	c2 = unix_connect(path);
	(void)write(c2, "second", 6);
	run_for(0.2);
	ok(buf_used(&cx.in) == 0 && cx.resets == 1,
	    "unix: a second client is not served while the first is on");
	(void)close(c1);
	ok(run_until(&cx.resets, 2, 2.0), "unix: the second is accepted");
	is_int(2, channel_session(ch), "unix: session 2");
	ok(run_until_in(6, 2.0) && in_is("second"),
	    "unix: the second client's bytes arrive");
	ctx_clear();
	(void)channel_write(ch, "r2\n", 3);
	n = read_some(c2, b, 3, 2.0);
	ok(n == 3 && memcmp(b, "r2\n", 3) == 0, "unix: reply to the second");

	/* channel_pause stops reading. */
	channel_pause(ch, 1);
	(void)write(c2, "paused", 6);
	run_for(0.1);
	ok(buf_used(&cx.in) == 0 && !ev_is_active(&ch->rd_w),
	    "unix: paused: nothing read");
	channel_pause(ch, 0);
	ok(run_until_in(6, 2.0) && in_is("paused"), "unix: resumed");
	ctx_clear();

	/*
	 * A callback that takes part of a read holds the rest: nothing more
	 * is read, and the rest comes back first once it resumes.
	 */
	cx.ch = ch;
	cx.take = 2;
	(void)write(c2, "abcdef", 6);
	ok(run_until_in(2, 2.0) && in_is("ab"), "hold: the callback took 2");
	(void)write(c2, "gh", 2);
	cx.offers = 0;
	run_for(0.1);
	ok(in_is("ab") && cx.offers == 0 && !ev_is_active(&ch->rd_w) &&
		!ev_is_active(&ch->take_w),
	    "hold: paused, the rest is neither offered nor read past");
	is_int(4, (int)(ch->rlen - ch->roff), "hold: 4 bytes held");
	cx.take = 3;
	channel_pause(ch, 0);
	ok(run_until_in(5, 2.0) && in_is("abcde"),
	    "hold: resumed, the held bytes come first");
	cx.take = SIZE_MAX;
	channel_pause(ch, 0);
	ok(run_until_in(8, 2.0) && in_is("abcdefgh"),
	    "hold: then the rest, then what was read after, in order");
	cx.take = 1;
	(void)write(c2, "xyz", 3);
	ok(run_until_in(9, 2.0) && ch->rlen - ch->roff == 2,
	    "hold: 2 bytes held again");
	channel_peer_gone(ch);
	ok(ch->fd < 0 && ch->rlen == ch->roff && !ev_is_active(&ch->take_w),
	    "hold: the session ends, what it held goes with it");
	cx.take = SIZE_MAX;
	cx.ch = NULL;
	channel_pause(ch, 0);
	run_for(0.1);
	ok(in_is("abcdefghx"), "hold: nothing held reaches anyone later");
	ctx_clear();
	(void)close(c2);
	run_for(0.1);
	ok(ch->fd < 0 && ev_is_active(&ch->listen_w),
	    "unix: EOF closes the client, listening again");

	/* A client that never reads. */
	c3 = unix_connect(path);
	sz = 4096;
	(void)setsockopt(c3, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	ok(run_until(&cx.resets, 3, 2.0) && ch->fd >= 0,
	    "congest: third client accepted");
	big = xmalloc(chunk);
	memset(big, 'y', chunk);
	big[chunk - 1] = '\n';
	sent = 0;
	rejected = 0;
	for (n = 0; n < 4 * 1024 * 1024 / chunk; n++) {
		r = channel_write(ch, big, chunk);
		if (r == 0)
			sent += chunk;
		else if (r == -ENOBUFS)
			rejected++;
		run_for(0.001);
	}
	ok(rejected > 0, "congest: -ENOBUFS over the cap (%d rejected)",
	    rejected);
	ok(buf_used(&ch->out) <= CH_OUT_CAP, "congest: queue within its cap");
	ok(channel_congested(ch), "congest: channel_congested()");
	ok(!ev_is_active(&ch->rd_w), "congest: reading is stopped");
	(void)write(c3, "later", 5);
	cpu = cpu_over(0.5);
	ok(cpu < 0.05,
	    "congest: no spin while the client does not read "
	    "(%.3f s cpu in 0.5 s)",
	    cpu);
	ok(buf_used(&cx.in) == 0, "congest: nothing read meanwhile");
	is_int(0, cx.drains, "congest: no drain yet");

	/* The client reads: everything drains, reading resumes. */
	(void)fcntl(c3, F_SETFL, fcntl(c3, F_GETFL) | O_NONBLOCK);
	ev_io_init(&cl_w, cl_cb, c3, EV_READ);
	ev_io_start(EV_DEFAULT, &cl_w);
	{
		double end = mono_now() + 10.0;

		while (cl_got < sent && mono_now() < end)
			run_for(0.01);
	}
	is_int((long long)sent, (long long)cl_got,
	    "congest: every accepted byte arrives (%zu)", sent);
	ok(!channel_congested(ch) && cx.drains == 1,
	    "congest: drained, drain callback once");
	ok(run_until_in(5, 2.0) && in_is("later"),
	    "congest: reading resumed, the held input arrives");
	ok(!ev_is_active(&ch->wr_w), "congest: wr_w stopped when empty");
	ok(resident_kib(&ch->out) <= CH_OUT_KEEP / 1024,
	    "congest: drained, the queue keeps %zu KiB resident (<= %zu)",
	    resident_kib(&ch->out), CH_OUT_KEEP / 1024);
	ev_io_stop(EV_DEFAULT, &cl_w);
	ctx_clear();

	/* A client leaving with output queued: dropped, others go on. */
	cx.drains = 0;
	for (n = 0; n < 8; n++)
		(void)channel_write(ch, big, chunk);
	(void)close(c3);
	run_for(0.2);
	ok(ch->fd < 0 && buf_used(&ch->out) == 0,
	    "congest: output dropped with its client");
	free(big);

	channel_free(ch);
	ok(access(path, F_OK) == -1, "unix: socket unlinked at free");
	buf_free(&cx.in);
}

static void
test_isa(void)
{
	struct channel *ch;
	struct termios tio;
	char name[64], b[64];
	int m, s;
	size_t n;
	double cpu;

	if (openpty(&m, &s, name, NULL, NULL) == -1) {
		skip(10, "openpty: %s", strerror(errno));
		return;
	}
	(void)fcntl(m, F_SETFD, FD_CLOEXEC);
	memset(&cx, 0, sizeof cx);
	buf_init(&cx.in, 0);
	cx.take = SIZE_MAX;
	/* Garbage from before us: flushed at open. */
	(void)write(m, "garbage", 7);
	run_for(0.05);
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_ISA_SERIAL, name, data_cb, reset_cb, &cx);
	is_int(0, channel_open(ch), "isa: open %s", name);
	(void)close(s);
	ok(tcgetattr(ch->fd, &tio) == 0 &&
		!(tio.c_lflag & (ICANON | ECHO | ISIG)) &&
		!(tio.c_iflag & (ICRNL | IXON | ISTRIP)) &&
		!(tio.c_oflag & OPOST) && tio.c_cc[VMIN] == 1 &&
		tio.c_cc[VTIME] == 0 && cfgetospeed(&tio) == B38400 &&
		cfgetispeed(&tio) == B38400,
	    "isa: raw, VMIN 1, VTIME 0, 38400 baud");
	ok((fcntl(ch->fd, F_GETFL) & O_NONBLOCK) &&
		(fcntl(ch->fd, F_GETFD) & FD_CLOEXEC),
	    "isa: non-blocking, cloexec");
	run_for(0.1);
	ok(buf_used(&cx.in) == 0, "isa: input from before the open is flushed");
	/* The cooked tty echoed that garbage before we opened: drop it. */
	(void)fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
	while (read(m, b, sizeof b) > 0)
		;
	(void)write(m, "ab\r\003\377\n", 6);
	ok(run_until_in(6, 2.0) && in_is("ab\r\003\377\n"),
	    "isa: bytes arrive untranslated (CR, ^C, 0xFF)");
	ctx_clear();
	(void)channel_write(ch, "x\ny\n", 4);
	n = read_some(m, b, 4, 2.0);
	run_for(0.05);
	if (poll(&(struct pollfd){ .fd = m, .events = POLLIN }, 1, 0) > 0)
		n += (size_t)read(m, b + n, sizeof b - n);
	if (!ok(n == 4 && memcmp(b, "x\ny\n", 4) == 0,
		"isa: replies leave untranslated (no CR added)")) {
		size_t i;

		for (i = 0; i < n && i < sizeof b; i++)
			diag("byte %zu: 0x%02x", i, (unsigned char)b[i]);
	}

	/* The other side hangs up: no spin, a new session. */
	(void)close(m);
	ok(run_until(&cx.resets, 1, 2.0), "isa: hang-up resets the session");
	ok(ch->away && !ev_is_active(&ch->rd_w) && ev_is_active(&ch->retry_w),
	    "isa: reading stopped, waiting on retry_w");
	cpu = cpu_over(0.5);
	ok(cpu < 0.05, "isa: no spin while hung up (%.3f s cpu)", cpu);
	channel_free(ch);
	buf_free(&cx.in);
}

/*
 * A virtio-serial port with no host polls HUP and reads 0. A FIFO opened
 * for reading only does the same once its writer has gone, and takes
 * O_ASYNC, so it stands in for the port.
 */
static int retries;

static void
count_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	retries++;
	channel_retry_cb(loop, w, revents);
}

static void
test_virtio_fifo(void)
{
	struct channel *ch;
	char path[256];
	int fd, w, back;
	double cpu, t0;

	snprintf(path, sizeof path, "%s/port", tmpdir);
	if (mkfifo(path, 0600) == -1)
		bail("mkfifo: %s", strerror(errno));
	memset(&cx, 0, sizeof cx);
	buf_init(&cx.in, 0);
	cx.take = SIZE_MAX;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_VIRTIO_SERIAL, path, data_cb, reset_cb, &cx);
	ev_set_cb(&ch->retry_w, count_retry_cb);
	ev_signal_start(ch->loop, &ch->sigio_w);
	channel_port_attach(ch, fd);
	channel_update_read(ch);

	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	(void)write(w, "ping1", 5);
	ok(run_until_in(5, 2.0) && in_is("ping1"), "virtio: data arrives");
	ctx_clear();

	/* The host goes away: read returns 0. */
	(void)close(w);
	ok(run_until(&cx.resets, 1, 2.0), "virtio: host away resets");
	is_int(1, channel_session(ch), "virtio: session bumped");
	ok(ch->away && !ev_is_active(&ch->rd_w) && !ev_is_active(&ch->wr_w),
	    "virtio: both io watchers stopped");
	ok(ch->fd == fd, "virtio: the port stays open");
	ok(fcntl(fd, F_GETFL) & O_ASYNC, "virtio: O_ASYNC while away");
	is_int(0, channel_write(ch, "x", 1), "virtio: write while away: 0");
	is_int(0, buf_used(&ch->out), "virtio: ... dropped");
	retries = 0;
	cpu = cpu_over(2.1);
	ok(cpu < 0.05, "virtio: no spin while away (%.3f s cpu in 2.1 s)", cpu);
	ok(retries >= 1 && retries <= 3,
	    "virtio: at most one look per second (%d in 2.1 s)", retries);
	is_int(1, cx.resets, "virtio: one reset for one departure");

	/* The host is back and writes: SIGIO wakes us at once. */
	t0 = mono_now();
	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	(void)write(w, "ping2", 5);
	ok(run_until_in(5, 2.0) && in_is("ping2"),
	    "virtio: serving again after %.3f s", mono_now() - t0);
	ok(!ch->away && !(fcntl(fd, F_GETFL) & O_ASYNC) &&
		!ev_is_active(&ch->retry_w),
	    "virtio: O_ASYNC and retry_w off while the host is there");
	ctx_clear();

	/* Again, with no SIGIO at all: retry_w alone brings it back. */
	(void)close(w);
	ok(run_until(&cx.resets, 2, 2.0), "virtio: away again");
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_ASYNC);
	ch->async = 0;
	run_for(0.2);
	t0 = mono_now();
	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	back = 0;
	while (mono_now() - t0 < 2.0 && !(back = !ch->away))
		run_for(0.01);
	ok(back && mono_now() - t0 <= 1.2,
	    "virtio: without SIGIO, back within 1 s (%.3f s)", mono_now() - t0);
	(void)write(w, "ping3", 5);
	ok(run_until_in(5, 2.0) && in_is("ping3"), "virtio: data again");
	(void)close(w);
	ok(run_until(&cx.resets, 3, 2.0), "virtio: away a third time");
	channel_free(ch);
	ok(fcntl(fd, F_GETFD) == -1, "virtio: channel_free closes the port");
	(void)unlink(path);
	buf_free(&cx.in);
}

static void
test_vsock(void)
{
#ifdef HAVE_LINUX_VM_SOCKETS_H
	struct sockaddr_vm svm;
	socklen_t len = sizeof svm;
	unsigned int cid, port;
	struct channel *ch;
	char spec[32];
	int fd, r, c;

	is_int(0, channel_vsock_parse("2:5000", &cid, &port), "vsock: parse");
	ok(cid == 2 && port == 5000, "vsock: 2:5000");
	is_int(
	    0, channel_vsock_parse("-1:1234", &cid, &port), "vsock: -1:1234");
	ok(cid == VMADDR_CID_ANY && port == 1234, "vsock: -1 is any CID");
	is_int(-EINVAL, channel_vsock_parse("x:1", &cid, &port), "vsock: x:1");
	is_int(-EINVAL, channel_vsock_parse("3:", &cid, &port), "vsock: 3:");
	is_int(-EINVAL, channel_vsock_parse("3", &cid, &port), "vsock: 3");
	is_int(-EINVAL, channel_vsock_parse("3:99999999999", &cid, &port),
	    "vsock: port out of range");

	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		skip(3, "socket(AF_VSOCK): %s", strerror(errno));
		return;
	}
	(void)close(fd);
	port = 20000 + (unsigned)getpid() % 20000;
	snprintf(spec, sizeof spec, "-1:%u", port);
	memset(&cx, 0, sizeof cx);
	buf_init(&cx.in, 0);
	cx.take = SIZE_MAX;
	ch = channel_new(
	    EV_DEFAULT, CHANNEL_VSOCK_LISTEN, spec, data_cb, reset_cb, &cx);
	r = channel_open(ch);
	is_int(0, r, "vsock: listen on %s", spec);
	ok(r == 0 && getsockname(ch->lfd, (struct sockaddr *)&svm, &len) == 0 &&
		svm.svm_port == port && svm.svm_cid == VMADDR_CID_ANY,
	    "vsock: bound to any CID, port %u", port);
	/* A client needs a loopback transport (vsock_loopback). */
	memset(&svm, 0, sizeof svm);
	svm.svm_family = AF_VSOCK;
	svm.svm_cid = VMADDR_CID_LOCAL;
	svm.svm_port = port;
	c = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	r = c < 0 ? -1 : connect(c, (struct sockaddr *)&svm, sizeof svm);
	if (r == -1 && errno == EINPROGRESS) {
		struct pollfd pfd = { .fd = c, .events = POLLOUT };
		int err = 0;
		socklen_t el = sizeof err;
		double end = mono_now() + 1.0;

		while (mono_now() < end) {
			run_for(0.01);
			if (poll(&pfd, 1, 0) > 0)
				break;
		}
		if (pfd.revents & POLLOUT &&
		    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
		    err == 0)
			r = 0;
	}
	if (r == 0) {
		(void)write(c, "vs", 2);
		ok(run_until_in(2, 2.0) && in_is("vs") && cx.resets == 1,
		    "vsock: a client is served");
	} else
		skip(1, "no vsock loopback transport (vsock_loopback) here");
	if (c >= 0)
		(void)close(c);
	channel_free(ch);
	buf_free(&cx.in);
#else
	skip_all("no linux/vm_sockets.h");
#endif
}

int
main(void)
{
	struct sigaction sa;

	plan_lazy();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	if (mkdtemp(tmpdir) == NULL)
		bail("mkdtemp: %s", strerror(errno));
	(void)EV_DEFAULT;
	test_unix();
	test_isa();
	test_virtio_fifo();
	test_vsock();
	(void)rmdir(tmpdir);
	ev_loop_destroy(EV_DEFAULT);
	return tap_done();
}
