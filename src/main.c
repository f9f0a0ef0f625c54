/* SPDX-License-Identifier: ISC */
/* Options, start-up order, signal watchers, the loop and the exit status. */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "agent.h"

#define DEFAULT_CONF SYSCONFDIR "/fsfreeze-agent.conf"

enum { OPT_CHECK = 256, OPT_THAW };

/*
 * The command line, read by main_args() rather than getopt_long(3) but
 * with its grammar: short options bundled (-vV) or with the argument
 * attached (-cFILE), long ones with =VALUE or the next word, "--" ends
 * the options; unlike getopt_long, no abbreviated long options and no
 * options after the first operand (there are no operands). The reason is
 * memory: getopt_long is the one routine the agent would call from a
 * 64 KiB stretch of libc's text that nothing else of ours touches, and
 * the kernel maps such a stretch whole at the first call (fault-around):
 * 30-60 kB of an RSS that issue 2 budgets at 2 MiB.
 */
struct main_opt {
	const char *name;
	int id; /* the short option, or OPT_* */
	int has_arg;
};
static const struct main_opt main_opts[] = {
	{ "config", 'c', 1 },
	{ "method", 'm', 1 },
	{ "path", 'p', 1 },
	{ "verbose", 'v', 0 },
	{ "version", 'V', 0 },
	{ "help", 'h', 0 },
	{ "check", OPT_CHECK, 0 },
	{ "thaw", OPT_THAW, 0 },
};

struct main_args {
	const char *conf_file;
	int conf_required;
	const char *method;
	const char *path;
	int verbose, version, help, check, thaw;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: %s [-c FILE] [-m METHOD] [-p PATH] [-v] [-V] [-h]\n"
	    "       %s [-c FILE] --check\n"
	    "       %s [-c FILE] --thaw\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "  -m, --method NAME   virtio-serial, isa-serial, unix-listen or\n"
	    "                      vsock-listen (default virtio-serial)\n"
	    "  -p, --path PATH     device or socket path (vsock: CID:PORT)\n"
	    "  -v, --verbose       log to stderr too, at debug level\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n"
	    "      --check         check the configuration, show what a "
	    "freeze\n"
	    "                      would freeze and run, and exit\n"
	    "      --thaw          thaw what an agent left frozen (the state\n"
	    "                      file) and run the owed thaw hooks, then "
	    "exit\n",
	    AGENT_NAME, AGENT_NAME, AGENT_NAME, DEFAULT_CONF);
}

/* The channel's path: the configured one, or the method's default. */
static const char *
main_path(const struct agent *a)
{
	return a->conf->path != NULL ? a->conf->path
				     : conf_default_path(a->conf->method);
}

static void
main_arg_set(struct main_args *o, const struct main_opt *opt, const char *v)
{
	switch (opt->id) {
	case 'c':
		o->conf_file = v;
		o->conf_required = 1;
		break;
	case 'm':
		o->method = v;
		break;
	case 'p':
		o->path = v;
		break;
	case 'v':
		o->verbose = 1;
		break;
	case 'V':
		o->version = 1;
		break;
	case 'h':
		o->help = 1;
		break;
	case OPT_CHECK:
		o->check = 1;
		break;
	case OPT_THAW:
		o->thaw = 1;
		break;
	}
}

static const struct main_opt *
main_opt_find(const char *name, size_t len, int id)
{
	size_t k;

	for (k = 0; k < nitems(main_opts); k++) {
		if (name != NULL ? strlen(main_opts[k].name) == len &&
			    strncmp(main_opts[k].name, name, len) == 0
				 : main_opts[k].id == id)
			return &main_opts[k];
	}
	return NULL;
}

/* 0, or -1 after saying on stderr what is wrong. */
static int
main_args(int argc, char **argv, struct main_args *o)
{
	const struct main_opt *opt;
	const char *s, *eq;
	int i;

	for (i = 1; i < argc; i++) {
		s = argv[i];
		if (strcmp(s, "--") == 0) {
			i++;
			break;
		}
		if (s[0] != '-' || s[1] == '\0')
			break; /* an operand */
		if (s[1] == '-') {
			s += 2;
			eq = strchr(s, '=');
			opt = main_opt_find(
			    s, eq != NULL ? (size_t)(eq - s) : strlen(s), 0);
			if (opt == NULL) {
				fprintf(stderr, "%s: unknown option '%s'\n",
				    AGENT_NAME, argv[i]);
				return -1;
			}
			if (!opt->has_arg && eq != NULL) {
				fprintf(stderr,
				    "%s: option '--%s' takes no argument\n",
				    AGENT_NAME, opt->name);
				return -1;
			}
			if (opt->has_arg && eq == NULL && i + 1 == argc) {
				fprintf(stderr,
				    "%s: option '--%s' needs an argument\n",
				    AGENT_NAME, opt->name);
				return -1;
			}
			main_arg_set(o, opt,
			    !opt->has_arg    ? NULL
				: eq != NULL ? eq + 1
					     : argv[++i]);
			continue;
		}
		for (s++; *s != '\0'; s++) {
			if ((opt = main_opt_find(NULL, 0, (unsigned char)*s)) ==
			    NULL) {
				fprintf(stderr, "%s: unknown option '-%c'\n",
				    AGENT_NAME, *s);
				return -1;
			}
			if (!opt->has_arg) {
				main_arg_set(o, opt, NULL);
				continue;
			}
			if (s[1] == '\0' && i + 1 == argc) {
				fprintf(stderr,
				    "%s: option '-%c' needs an argument\n",
				    AGENT_NAME, *s);
				return -1;
			}
			main_arg_set(o, opt, s[1] != '\0' ? s + 1 : argv[++i]);
			break;
		}
	}
	if (i < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", AGENT_NAME,
		    argv[i]);
		return -1;
	}
	return 0;
}

static void
main_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct agent *a = w->data;

	(void)loop;
	(void)revents;
	switch (w->signum) {
	case SIGTERM:
	case SIGINT:
		if (!a->quitting)
			log_info("%s: shutting down",
			    w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
		fsm_shutdown(a);
		break;
	case SIGHUP:
		a->reload = 1;
		main_reload(a);
		break;
	}
}

/* SIGHUP: reload once thawed; a bad file keeps the old configuration. */
void
main_reload(struct agent *a)
{
	struct conf *c;

	if (!a->reload || a->state != FSM_THAWED || a->rq_busy)
		return;
	a->reload = 0;
	if (conf_load(a->conf_file, a->conf_required, &c) < 0) {
		log_warnx("reload: keeping the old configuration");
		return;
	}
	/* The channel is open for good: method and path stay. */
	c->method = a->conf->method;
	free(c->path);
	c->path = a->conf->path != NULL ? xstrdup(a->conf->path) : NULL;
	conf_free(a->conf);
	a->conf = c;
	log_set_facility(c->facility);
	log_set_level(a->verbose ? LOG_DEBUG : c->level);
	log_info("reload: configuration read from %s",
	    c->file != NULL ? c->file : "built-in defaults");
}

static size_t
main_data_cb(void *arg, const char *p, size_t n)
{
	struct agent *a = arg;
	size_t used;

	used = proto_feed(a->proto, p, n);
	a->rq_bytes_since_trim += used;
	return used;
}

static void
main_reset_cb(void *arg)
{
	struct agent *a = arg;

	proto_reset(a->proto);
	cmd_reset(a);
}

static void
main_drain_cb(void *arg)
{
	cmd_kick(arg);
}

static int
main_busy_cb(void *arg)
{
	struct agent *a = arg;

	return a->rq_busy || a->rq_head != NULL;
}

static void
main_msg_cb(void *arg, struct jval *v, const char *desc)
{
	cmd_input(arg, v, desc);
}

int
main(int argc, char **argv)
{
	struct agent agent, *a = &agent;
	struct sigaction sa;
	struct proto_limits lim = { PROTO_MAX_SIZE, PROTO_MAX_DEPTH };
	ev_signal sigterm_w, sigint_w, sighup_w;
	struct main_args o = { .conf_file = DEFAULT_CONF };
	enum channel_method m;
	int r;

	memset(a, 0, sizeof *a);
	if (main_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	if (o.help) {
		usage(stdout);
		return 0;
	}
	if (o.version) {
		printf("%s %s\n", AGENT_NAME, PACKAGE_VERSION);
		return 0;
	}
	a->conf_file = o.conf_file;
	a->conf_required = o.conf_required;
	a->verbose = o.verbose;

	/* Before any descriptor exists: a write to a gone peer is EPIPE. */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);

	log_init(LOG_TO_STDERR | ((o.check || o.thaw) ? 0 : LOG_TO_SYSLOG),
	    LOG_DAEMON, a->verbose ? LOG_DEBUG : LOG_INFO);
	if (conf_load(a->conf_file, a->conf_required, &a->conf) < 0)
		return 2;
	if (o.method != NULL) {
		if (conf_method_parse(o.method, &m) < 0) {
			log_errx("unknown method '%s' (virtio-serial, "
				 "isa-serial, unix-listen, vsock-listen)",
			    o.method);
			conf_free(a->conf);
			return 2;
		}
		if (m != a->conf->method) {
			free(a->conf->path);
			a->conf->path = NULL;
		}
		a->conf->method = m;
	}
	if (o.path != NULL) {
		free(a->conf->path);
		a->conf->path = xstrdup(o.path);
	}
	log_set_facility(a->conf->facility);
	log_set_level(a->verbose ? LOG_DEBUG : a->conf->level);
	if (o.check) {
		r = fsm_check(a->conf);
		conf_free(a->conf);
		return r;
	}
	if (o.thaw) {
		r = fsm_thaw_offline(a->conf);
		conf_free(a->conf);
		return r;
	}
	a->loop = ev_default_loop(EVFLAG_AUTO);
	a->rq_tail = &a->rq_head;
	log_start(a->loop);
	fsm_init(a);
	a->proto = proto_new(&lim, main_msg_cb, a);
	a->ch = channel_new(a->loop, a->conf->method, main_path(a),
	    main_data_cb, main_reset_cb, a);
	channel_set_drain_cb(a->ch, main_drain_cb);
	channel_set_busy_cb(a->ch, main_busy_cb);

	ev_signal_init(&sigterm_w, main_signal_cb, SIGTERM);
	ev_signal_init(&sigint_w, main_signal_cb, SIGINT);
	ev_signal_init(&sighup_w, main_signal_cb, SIGHUP);
	sigterm_w.data = sigint_w.data = sighup_w.data = a;
	ev_signal_start(a->loop, &sigterm_w);
	ev_signal_start(a->loop, &sigint_w);
	ev_signal_start(a->loop, &sighup_w);

	/* A state file left by an earlier agent: it froze, we thaw. */
	(void)fsm_adopt(a);

	if ((r = channel_open(a->ch)) < 0) {
		log_errx("cannot open %s channel '%s': %s",
		    conf_method_name(a->conf->method), main_path(a),
		    strerror(-r));
		/*
		 * Never exit frozen: thaw what we adopted first. (ev_run()
		 * clears an earlier ev_break, so run it only with work to do.)
		 */
		if (a->state != FSM_THAWED) {
			fsm_shutdown(a);
			ev_run(a->loop, 0);
		}
		r = 1;
	} else {
		/*
		 * Under a service manager stderr is the journal, which also
		 * gets syslog: from here on keep stderr for -v and for a
		 * terminal. Start-up errors above went to both.
		 */
		if (!a->verbose && !isatty(STDERR_FILENO))
			log_init(
			    LOG_TO_SYSLOG, a->conf->facility, a->conf->level);
		log_info("%s %s: serving on %s '%s'", AGENT_NAME,
		    PACKAGE_VERSION, conf_method_name(a->conf->method),
		    main_path(a));
		ev_run(a->loop, 0);
		log_info("exiting");
		r = 0;
	}

	ev_signal_stop(a->loop, &sigterm_w);
	ev_signal_stop(a->loop, &sigint_w);
	ev_signal_stop(a->loop, &sighup_w);
	channel_free(a->ch);
	cmd_free_queue(a);
	proto_free(a->proto);
	fsm_free(a);
	/* Kept freeze workers exit at EOF on their sockets. */
	worker_close_idle();
	log_stop();
	conf_free(a->conf);
	ev_loop_destroy(a->loop);
	return r;
}
