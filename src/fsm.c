/* SPDX-License-Identifier: ISC */
/*
 * The freeze state machine: thawed -> hooks-freezing -> fs-freezing -> frozen
 * -> fs-thawing -> hooks-thawing -> thawed. Entry actions start work and
 * return; completions (a hook phase, the freeze workers, a timer) call
 * fsm_transition() again, through a 0 s timer so transitions never nest.
 * Every failure returns through fs-thawing and hooks-thawing and undoes
 * exactly what was done.
 */

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "agent.h"

enum fsm_op {
	OP_NONE,
	OP_FREEZE,
	OP_THAW,
	OP_AUTOTHAW,
	OP_SHUTDOWN,
	OP_ADOPT,
};

static const char *const fsm_op_name[] = {
	[OP_NONE] = "none",
	[OP_FREEZE] = "freeze",
	[OP_THAW] = "thaw",
	[OP_AUTOTHAW] = "auto-thaw",
	[OP_SHUTDOWN] = "shutdown",
	[OP_ADOPT] = "adopt",
};

static const char *const fsm_names[FSM_STATE_MAX] = {
	[FSM_THAWED] = "thawed",
	[FSM_HOOKS_FREEZING] = "hooks-freezing",
	[FSM_FS_FREEZING] = "fs-freezing",
	[FSM_FROZEN] = "frozen",
	[FSM_FS_THAWING] = "fs-thawing",
	[FSM_HOOKS_THAWING] = "hooks-thawing",
};

/* thawed -> frozen is the adoption of a state file at start. */
static const unsigned int fsm_edges[FSM_STATE_MAX] = {
	[FSM_THAWED] = FSM_BIT(FSM_HOOKS_FREEZING) | FSM_BIT(FSM_FROZEN),
	[FSM_HOOKS_FREEZING] =
	    FSM_BIT(FSM_FS_FREEZING) | FSM_BIT(FSM_HOOKS_THAWING),
	[FSM_FS_FREEZING] = FSM_BIT(FSM_FROZEN) | FSM_BIT(FSM_FS_THAWING),
	[FSM_FROZEN] = FSM_BIT(FSM_FS_THAWING),
	[FSM_FS_THAWING] = FSM_BIT(FSM_HOOKS_THAWING),
	[FSM_HOOKS_THAWING] = FSM_BIT(FSM_THAWED),
};

struct fsm {
	struct agent *a;
	enum fsm_op op;
	struct request *rq; /* the request being served, or NULL */
	const char *source; /* the command, for the log */
	struct freeze_plan *plan;
	struct hook_set hooks;
	size_t hooks_frozen; /* hooks that completed freeze */
	char *error;	     /* answer this once thawed */
	char *undo_why;
	size_t nfrozen;
	size_t nthawed;
	double t_op;	 /* mono_now() at the start of the operation */
	double t_frozen; /* mono_now() at the first FIFREEZE */
	time_t wall_frozen;
	double frozen_secs;
	int quit;
	int autothawed; /* the next thaw says the guest thawed itself */
	double autothaw_secs;
	enum fsm_state step_to;
	ev_timer step_w;
	ev_timer autothaw_w;
	/* the report of the last operation */
	struct buf rep_hooks;
	struct buf rep_fs;
	char *rep_op;
	char *rep_result;
	double rep_started; /* wall clock */
	double rep_secs;
	double rep_frozen_secs;
	int rep_autothawed;
};

static void fsm_transition(struct fsm *, enum fsm_state);
static void fsm_state_write(struct fsm *, int);

const char *
fsm_state_name(enum fsm_state s)
{
	if (s >= FSM_STATE_MAX)
		return "?";
	return fsm_names[s];
}

int
fsm_frozen(const struct agent *a)
{
	/*
	 * Requests run only at rest, and the first FIFREEZE and the last
	 * FITHAW are issued inside fs-freezing and fs-thawing, so at rest
	 * "frozen" is exactly the frozen state.
	 */
	return a->state == FSM_FROZEN;
}

static void
fsm_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fsm *f = container_of(w, struct fsm, step_w);

	(void)loop;
	(void)revents;
	ev_timer_stop(f->a->loop, &f->step_w);
	fsm_transition(f, f->step_to);
}

/* Go to next from the loop, never from inside the current transition. */
static void
fsm_step(struct fsm *f, enum fsm_state next)
{
	f->step_to = next;
	ev_timer_set(&f->step_w, 0., 0.);
	ev_timer_start(f->a->loop, &f->step_w);
}

static void fsm_set_error(struct fsm *f, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
fsm_set_error(struct fsm *f, const char *fmt, ...)
{
	va_list ap;

	if (f->error != NULL)
		return; /* the first error is the one the host gets */
	va_start(ap, fmt);
	(void)xvasprintf(&f->error, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ report */

static void
fsm_report_begin(struct fsm *f, const char *op)
{
	struct timespec ts;

	buf_reset(&f->rep_hooks);
	buf_reset(&f->rep_fs);
	free(f->rep_op);
	free(f->rep_result);
	f->rep_op = xstrdup(op);
	f->rep_result = NULL;
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	f->rep_started = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	f->rep_secs = 0;
	f->rep_frozen_secs = 0;
	f->rep_autothawed = 0;
}

static void
fsm_report_hooks(struct fsm *f, const struct hook_phase_result *res)
{
	const struct hook_outcome *o;
	char how[128];
	size_t i;

	for (i = 0; i < res->noutcomes; i++) {
		o = &res->outcomes[i];
		hook_outcome_str(o, how, sizeof how);
		if (buf_used(&f->rep_hooks) > 0)
			(void)buf_adds(&f->rep_hooks, ", ");
		(void)buf_adds(&f->rep_hooks, "{\"name\": ");
		json_put_cstr(&f->rep_hooks, o->name);
		(void)buf_adds(&f->rep_hooks, ", \"path\": ");
		json_put_cstr(&f->rep_hooks, o->path);
		(void)buf_addf(&f->rep_hooks, ", \"phase\": \"%s\", ",
		    hook_phase_name(o->phase));
		(void)buf_adds(&f->rep_hooks, "\"result\": ");
		json_put_cstr(&f->rep_hooks, how);
		(void)buf_addf(&f->rep_hooks, ", \"ok\": %s, \"seconds\": %.3f",
		    (!o->timed_out && o->spawn_err == 0 &&
			WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0)
			? "true"
			: "false",
		    o->secs);
		(void)buf_adds(&f->rep_hooks, ", \"output\": ");
		json_put_cstr(&f->rep_hooks, o->tail != NULL ? o->tail : "");
		(void)buf_addc(&f->rep_hooks, '}');
	}
}

static void
fsm_report_fs(struct fsm *f, const char *phase)
{
	const struct freeze_target *t;
	size_t i;

	if (f->plan == NULL)
		return;
	for (i = 0; i < f->plan->n; i++) {
		t = &f->plan->t[i];
		if (buf_used(&f->rep_fs) > 0)
			(void)buf_adds(&f->rep_fs, ", ");
		(void)buf_adds(&f->rep_fs, "{\"mountpoint\": ");
		json_put_cstr(&f->rep_fs, t->point);
		(void)buf_adds(&f->rep_fs, ", \"type\": ");
		json_put_cstr(&f->rep_fs, t->fstype != NULL ? t->fstype : "");
		(void)buf_addf(&f->rep_fs,
		    ", \"phase\": \"%s\", \"result\": \"%s\"", phase,
		    target_state_name(t->state));
		if (t->err != 0) {
			(void)buf_adds(&f->rep_fs, ", \"error\": ");
			json_put_cstr(&f->rep_fs, strerror(t->err));
		}
		(void)buf_addc(&f->rep_fs, '}');
	}
}

void
fsm_report(struct agent *a, struct buf *b)
{
	struct fsm *f = a->fsm;

	(void)buf_addf(b, "{\"state\": \"%s\", \"status\": \"%s\"",
	    fsm_state_name(a->state), fsm_frozen(a) ? "frozen" : "thawed");
	if (a->state == FSM_FROZEN)
		(void)buf_addf(
		    b, ", \"frozen_seconds\": %.3f", mono_now() - f->t_frozen);
	(void)buf_addf(b, ", \"max_frozen\": %.3f", a->conf->max_frozen);
	if (f->rep_op == NULL) {
		(void)buf_adds(b, ", \"last\": null}");
		return;
	}
	(void)buf_adds(b, ", \"last\": {\"operation\": ");
	json_put_cstr(b, f->rep_op);
	(void)buf_addf(b, ", \"started\": %.3f", f->rep_started);
	(void)buf_adds(b, ", \"result\": ");
	if (f->rep_result != NULL)
		json_put_cstr(b, f->rep_result);
	else
		(void)buf_adds(b, "null");
	(void)buf_addf(b,
	    ", \"seconds\": %.3f, \"frozen_seconds\": %.3f, "
	    "\"auto_thawed\": %s, \"hooks\": [",
	    f->rep_secs, f->rep_frozen_secs,
	    f->rep_autothawed ? "true" : "false");
	(void)buf_add(b, buf_head(&f->rep_hooks), buf_used(&f->rep_hooks));
	(void)buf_adds(b, "], \"filesystems\": [");
	(void)buf_add(b, buf_head(&f->rep_fs), buf_used(&f->rep_fs));
	(void)buf_adds(b, "]}}");
}

/* ------------------------------------------------------------ hooks */

static void
fsm_hooks_frozen_cb(void *arg, const struct hook_phase_result *res)
{
	struct fsm *f = arg;

	fsm_report_hooks(f, res);
	f->hooks_frozen = res->ncompleted;
	if (res->nfailed > 0) {
		log_warnx("freeze: aborted: %s", res->desc);
		fsm_set_error(f, "%s", res->desc);
		free(f->undo_why);
		f->undo_why = xstrdup(res->desc);
		fsm_step(f, FSM_HOOKS_THAWING);
		return;
	}
	if (f->quit) {
		fsm_set_error(f, "freeze aborted: the agent is shutting down");
		f->undo_why = xstrdup("the agent is shutting down");
		fsm_step(f, FSM_HOOKS_THAWING);
		return;
	}
	if (res->noutcomes > 0)
		log_info("freeze: %zu hooks done in %.2f s", res->ncompleted,
		    mono_now() - f->t_op);
	fsm_step(f, FSM_FS_FREEZING);
}

static void
fsm_hooks_thawed_cb(void *arg, const struct hook_phase_result *res)
{
	struct fsm *f = arg;
	size_t i, stuck = 0;
	int r;

	fsm_report_hooks(f, res);
	if (res->nfailed > 0)
		log_warnx("thaw: %zu of %zu thaw hooks failed; first: %s",
		    res->nfailed, res->noutcomes, res->desc);
	f->hooks_frozen = 0;
	for (i = 0; f->plan != NULL && i < f->plan->n; i++) {
		if (f->plan->t[i].state == TARGET_FROZEN)
			stuck++;
	}
	if (stuck > 0) {
		/*
		 * A FITHAW failed: never forget a filesystem that may still
		 * be frozen. The state file keeps exactly those, for a
		 * restarted agent or `fsfreeze-agent --thaw`.
		 */
		log_warnx("thaw: %zu filesystems may still be frozen; %s keeps "
			  "them for 'fsfreeze-agent --thaw'",
		    stuck, state_path(f->a->conf->state_dir));
		fsm_state_write(f, 1);
	} else if ((r = state_remove(f->a->conf->state_dir)) < 0 &&
	    r != -ENOENT)
		log_warnr(r, "thaw: cannot remove %s",
		    state_path(f->a->conf->state_dir));
	fsm_transition(f, FSM_THAWED);
}

/* ------------------------------------------------------------ filesystems */

static void
fsm_state_write(struct fsm *f, int complete)
{
	struct state_info si;
	int r;

	si.frozen_at = f->wall_frozen;
	si.deadline = f->a->conf->max_frozen > 0
	    ? f->wall_frozen + (time_t)(f->a->conf->max_frozen + 0.999)
	    : 0;
	si.complete = complete;
	if ((r = state_write(f->a->conf->state_dir, f->plan, &f->hooks,
		 f->hooks_frozen, &si)) < 0)
		log_warnr(r, "freeze: cannot write %s",
		    state_path(f->a->conf->state_dir));
}

static void
fsm_frozen_cb(void *arg, int r)
{
	struct fsm *f = arg;
	const struct freeze_target *t;
	size_t i;

	f->nfrozen = freeze_count(f->plan);
	for (i = 0; i < f->plan->n; i++) {
		t = &f->plan->t[i];
		switch (t->state) {
		case TARGET_FROZEN:
			log_info("freeze: '%s' (%s) frozen in %.0f ms",
			    t->point, t->fstype, t->secs * 1000);
			break;
		case TARGET_UNSUPPORTED:
			log_info("freeze: '%s' (%s) skipped: cannot be frozen "
				 "(EOPNOTSUPP)",
			    t->point, t->fstype);
			break;
		case TARGET_BUSY:
			log_warnx("freeze: '%s' skipped: frozen by someone "
				  "else (EBUSY); we will not thaw it",
			    t->point);
			break;
		case TARGET_FAILED:
			log_warnx("freeze: '%s' failed: %s", t->point,
			    strerror(t->err));
			break;
		default:
			break;
		}
	}
	if (r < 0) {
		t = freeze_failed(f->plan);
		fsm_set_error(f, "failed to freeze %s: %s",
		    t != NULL ? t->point : "?", strerror(-r));
		f->undo_why = xstrdup(f->error);
		fsm_step(f, FSM_FS_THAWING);
		return;
	}
	if (f->nfrozen == 0 || f->quit) {
		if (f->quit)
			fsm_set_error(f,
			    "freeze aborted: the agent is "
			    "shutting down");
		else
			log_info("freeze: nothing was frozen; undoing the "
				 "freeze hooks");
		free(f->undo_why);
		f->undo_why = xstrdup(f->quit ? "the agent is shutting down"
					      : "no filesystem was frozen");
		fsm_step(f, FSM_FS_THAWING);
		return;
	}
	fsm_step(f, FSM_FROZEN);
}

static void
fsm_autothaw_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fsm *f = container_of(w, struct fsm, autothaw_w);

	(void)loop;
	(void)revents;
	ev_timer_stop(f->a->loop, &f->autothaw_w);
	if (f->a->state != FSM_FROZEN || f->op != OP_NONE)
		return;
	f->op = OP_AUTOTHAW;
	f->rq = NULL;
	f->t_op = mono_now();
	fsm_report_begin(f, "auto-thaw");
	log_warnx("auto-thaw: frozen for %.1f s, longer than max_frozen "
		  "(%.0f s); thawing on our own",
	    mono_now() - f->t_frozen, f->a->conf->max_frozen);
	fsm_transition(f, FSM_FS_THAWING);
}

/* ------------------------------------------------------------ transitions */

static void
fsm_finish(struct fsm *f)
{
	struct agent *a = f->a;
	struct request *rq = f->rq;
	char num[32];

	f->rep_secs = mono_now() - f->t_op;
	free(f->rep_result);
	if (f->error != NULL)
		f->rep_result = xstrdup(f->error);
	else
		(void)xasprintf(&f->rep_result, "%zu",
		    f->op == OP_FREEZE ? f->nfrozen : f->nthawed);
	if (rq != NULL) {
		if (f->error != NULL)
			cmd_reply_error(a, rq, "GenericError", "%s", f->error);
		else {
			(void)snprintf(num, sizeof num, "%zu",
			    f->op == OP_FREEZE ? f->nfrozen : f->nthawed);
			cmd_reply_return(a, rq, num);
		}
	}
	free(f->error);
	f->error = NULL;
	free(f->undo_why);
	f->undo_why = NULL;
	f->rq = NULL;
	f->op = OP_NONE;
	if (rq != NULL)
		cmd_done(a, rq);
	if (f->quit) {
		ev_break(a->loop, EVBREAK_ALL);
		return;
	}
	main_reload(a);
	cmd_kick(a);
}

static void
fsm_transition(struct fsm *f, enum fsm_state next)
{
	struct agent *a = f->a;
	enum fsm_state prev = a->state;
	const struct freeze_target *t;
	double left;
	size_t i;

	if (!(fsm_edges[prev] & FSM_BIT(next)))
		fatalx("invalid transition %s -> %s", fsm_state_name(prev),
		    fsm_state_name(next));
	a->state = next;
	log_info("state %s -> %s", fsm_state_name(prev), fsm_state_name(next));

	switch (next) {
	case FSM_HOOKS_FREEZING:
		if (hook_phase_start(a->loop, &f->hooks, HOOK_FREEZE,
			f->hooks.n, NULL, a->conf->hook_timeout,
			a->conf->hook_kill_grace, fsm_hooks_frozen_cb,
			f) == NULL)
			fatalx("cannot start the freeze hooks");
		break;
	case FSM_FS_FREEZING:
		/*
		 * From here until the last FITHAW nothing may write to a disk
		 * that can freeze: log lines wait in memory, the state file
		 * lives in a tmpfs.
		 */
		f->wall_frozen = time(NULL);
		fsm_state_write(f, 0);
		log_hold(1);
		if (freeze_start(a->loop, f->plan, fsm_frozen_cb, f) < 0) {
			fsm_set_error(f, "cannot start the freeze");
			fsm_step(f, FSM_FS_THAWING);
		}
		break;
	case FSM_FROZEN:
		f->t_frozen =
		    f->plan->t_frozen > 0 ? f->plan->t_frozen : mono_now();
		if (f->op != OP_ADOPT) {
			fsm_state_write(f, 1);
			log_info(
			    "freeze: %zu filesystems frozen in %.0f ms (%s)",
			    f->nfrozen, (mono_now() - f->t_frozen) * 1000,
			    f->source);
			fsm_report_fs(f, "freeze");
		}
		if (a->conf->max_frozen > 0) {
			left = a->conf->max_frozen - (mono_now() - f->t_frozen);
			ev_timer_set(&f->autothaw_w, left > 0 ? left : 0., 0.);
			ev_timer_start(a->loop, &f->autothaw_w);
		}
		if (f->quit) {
			/*
			 * SIGTERM arrived after the freeze was done but before
			 * this step ran: the host must not be told "frozen".
			 */
			fsm_set_error(f,
			    "freeze aborted: the agent is "
			    "shutting down");
			free(f->undo_why);
			f->undo_why = xstrdup("the agent is shutting down");
			fsm_step(f, FSM_FS_THAWING);
			break;
		}
		fsm_finish(f);
		break;
	case FSM_FS_THAWING:
		ev_timer_stop(a->loop, &f->autothaw_w);
		f->nthawed = f->plan != NULL ? freeze_thaw(f->plan) : 0;
		if (f->plan != NULL && f->plan->t_frozen > 0)
			f->frozen_secs = mono_now() - f->plan->t_frozen;
		log_hold(0);
		for (i = 0; f->plan != NULL && i < f->plan->n; i++) {
			t = &f->plan->t[i];
			if (t->state == TARGET_THAWED && t->err == EINVAL)
				log_warnx("thaw: '%s' was already thawed by "
					  "someone else",
				    t->point);
			else if (t->state == TARGET_FROZEN)
				log_warnx("thaw: '%s' failed to thaw: %s",
				    t->point, strerror(t->err));
		}
		if (f->nthawed > 0 || f->op != OP_FREEZE)
			log_info("thaw: %zu filesystems thawed after %.2f s "
				 "frozen (%s)",
			    f->nthawed, f->frozen_secs, fsm_op_name[f->op]);
		fsm_report_fs(f, "thaw");
		f->rep_frozen_secs = f->frozen_secs;
		fsm_step(f, FSM_HOOKS_THAWING);
		break;
	case FSM_HOOKS_THAWING:
		if (hook_phase_start(a->loop, &f->hooks, HOOK_THAW,
			f->hooks_frozen, f->undo_why, a->conf->hook_timeout,
			a->conf->hook_kill_grace, fsm_hooks_thawed_cb,
			f) == NULL)
			fatalx("cannot start the thaw hooks");
		break;
	case FSM_THAWED:
		if (f->op == OP_AUTOTHAW) {
			f->autothawed = 1;
			f->autothaw_secs = f->frozen_secs;
			f->rep_autothawed = 1;
			log_warnx("auto-thaw: done; the host's next thaw will "
				  "be told that a snapshot taken since the "
				  "freeze may not be consistent");
		}
		freeze_plan_free(f->plan);
		f->plan = NULL;
		hook_set_clear(&f->hooks);
		fsm_finish(f);
		break;
	case FSM_STATE_MAX:
		break;
	}
}

/* ------------------------------------------------------------ requests */

/* fatal() has no agent to hand; there is only ever one. */
static struct agent *fsm_agent;

static void
fsm_emergency_thaw(void)
{
	struct fsm *f;

	if (fsm_agent == NULL || (f = fsm_agent->fsm) == NULL ||
	    f->plan == NULL)
		return;
	freeze_emergency_thaw(f->plan);
}

void
fsm_init(struct agent *a)
{
	struct fsm *f;

	f = xcalloc(1, sizeof *f);
	f->a = a;
	buf_init(&f->rep_hooks, 0);
	buf_init(&f->rep_fs, 0);
	ev_init(&f->step_w, fsm_step_cb);
	ev_init(&f->autothaw_w, fsm_autothaw_cb);
	a->fsm = f;
	a->state = FSM_THAWED;
	fsm_agent = a;
	log_set_fatal_hook(fsm_emergency_thaw);
}

void
fsm_free(struct agent *a)
{
	struct fsm *f = a->fsm;

	if (f == NULL)
		return;
	ev_timer_stop(a->loop, &f->step_w);
	ev_timer_stop(a->loop, &f->autothaw_w);
	freeze_plan_free(f->plan);
	hook_set_clear(&f->hooks);
	buf_free(&f->rep_hooks);
	buf_free(&f->rep_fs);
	free(f->rep_op);
	free(f->rep_result);
	free(f->error);
	free(f->undo_why);
	free(f);
	a->fsm = NULL;
	fsm_agent = NULL;
}

static void
fsm_log_skips(const struct freeze_plan *plan)
{
	size_t i;

	/*
	 * Pseudo filesystems and the like are skipped on every freeze: debug.
	 * What was found while opening (an over-mount, a stale mount point)
	 * is worth a warning.
	 */
	for (i = 0; i < plan->nskip; i++) {
		if (plan->skip[i].warn)
			log_warnx("freeze: '%s' (%s) skipped: %s",
			    plan->skip[i].point, plan->skip[i].fstype,
			    plan->skip[i].reason);
		else
			log_debug("freeze: '%s' (%s) skipped: %s",
			    plan->skip[i].point, plan->skip[i].fstype,
			    plan->skip[i].reason);
	}
	for (i = 0; i < plan->unmatched.n; i++)
		log_warnx("freeze: '%s' from the list matches no mount point",
		    plan->unmatched.v[i]);
}

/* The plan of what a freeze would freeze now; -errno with a log line. */
static int
fsm_plan(struct agent *a, const struct strlist *list, int has_list,
    struct freeze_plan **planp)
{
	struct mount_table mt = { 0 };
	struct freeze_policy pol;
	int r;

	pol.include = &a->conf->include;
	pol.exclude = &a->conf->exclude;
	pol.exclude_type = &a->conf->exclude_type;
	pol.list = list;
	pol.has_list = has_list;
	if ((r = mounts_read(NULL, &mt)) < 0) {
		log_warnr(r, "freeze: cannot read the mount table");
		return r;
	}
	r = freeze_plan_build(&mt, &pol, planp);
	mounts_free(&mt);
	if (r < 0)
		log_warnr(r, "freeze: cannot plan the freeze");
	return r;
}

void
fsm_freeze(struct agent *a, struct request *rq, const struct strlist *list,
    int has_list)
{
	struct fsm *f = a->fsm;
	dev_t sdev;
	size_t i;
	int r;

	f->op = OP_FREEZE;
	f->rq = rq;
	f->source = rq->cmd->name;
	f->t_op = mono_now();
	f->nfrozen = f->nthawed = 0;
	f->frozen_secs = 0;
	f->autothawed = 0;
	fsm_report_begin(f, rq->cmd->name);
	if ((r = fsm_plan(a, list, has_list, &f->plan)) < 0) {
		fsm_set_error(
		    f, "failed to read the mount table: %s", strerror(-r));
		fsm_finish(f);
		return;
	}
	if ((r = freeze_plan_open(f->plan)) < 0) {
		fsm_set_error(
		    f, "failed to open the filesystems: %s", strerror(-r));
		freeze_plan_free(f->plan);
		f->plan = NULL;
		fsm_finish(f);
		return;
	}
	fsm_log_skips(f->plan);
	for (i = 0; i < f->plan->n; i++) {
		if (f->plan->t[i].state == TARGET_PLANNED)
			break;
	}
	if (i == f->plan->n) {
		/* Nothing to freeze: no hook runs (none would be undone). */
		log_info("freeze: requested by %s: no filesystem to freeze",
		    f->source);
		freeze_plan_free(f->plan);
		f->plan = NULL;
		fsm_finish(f);
		return;
	}
	if ((r = state_dir_dev(a->conf->state_dir, &sdev)) < 0) {
		fsm_set_error(f, "cannot use state_dir '%s': %s",
		    a->conf->state_dir, strerror(-r));
		goto fail;
	}
	for (i = 0; i < f->plan->n; i++) {
		/* The state file is written while frozen: never freeze it. */
		if (f->plan->t[i].state == TARGET_PLANNED &&
		    f->plan->t[i].dev == sdev) {
			fsm_set_error(f,
			    "state_dir '%s' is on '%s', which "
			    "would be frozen: put it on a tmpfs "
			    "or exclude that filesystem",
			    a->conf->state_dir, f->plan->t[i].point);
			log_warnx("freeze: %s", f->error);
			goto fail;
		}
	}
	if ((r = hook_scan(&a->conf->hook_dirs, &f->hooks)) < 0) {
		fsm_set_error(
		    f, "cannot read the hook directories: %s", strerror(-r));
		goto fail;
	}
	for (i = 0; i < f->hooks.nskip; i++) {
		if (f->hooks.skip[i].refused) {
			log_warnx("freeze: hook '%s' refused: %s",
			    f->hooks.skip[i].path, f->hooks.skip[i].reason);
			fsm_set_error(f, "fsfreeze hook '%s' refused: %s",
			    f->hooks.skip[i].path, f->hooks.skip[i].reason);
		} else
			log_debug("freeze: '%s' skipped: %s",
			    f->hooks.skip[i].path, f->hooks.skip[i].reason);
	}
	if (f->error != NULL)
		goto fail;
	log_info("freeze: requested by %s: %zu filesystems, %zu hooks",
	    f->source, f->plan->n, f->hooks.n);
	fsm_transition(f, FSM_HOOKS_FREEZING);
	return;
fail:
	hook_set_clear(&f->hooks);
	freeze_plan_free(f->plan);
	f->plan = NULL;
	fsm_finish(f);
}

void
fsm_thaw(struct agent *a, struct request *rq)
{
	struct fsm *f = a->fsm;

	if (a->state == FSM_THAWED) {
		if (f->autothawed) {
			f->autothawed = 0;
			log_info("thaw: requested by %s: already thawed by "
				 "auto-thaw",
			    rq->cmd->name);
			cmd_reply_error(a, rq, "GenericError",
			    "the guest thawed itself %.0f s after freezing "
			    "(max_frozen); a snapshot taken since the freeze "
			    "may not be consistent",
			    f->autothaw_secs);
		} else {
			log_debug("thaw: requested by %s: nothing frozen",
			    rq->cmd->name);
			cmd_reply_return(a, rq, "0");
		}
		cmd_done(a, rq);
		return;
	}
	f->op = OP_THAW;
	f->rq = rq;
	f->source = rq->cmd->name;
	f->t_op = mono_now();
	f->nthawed = 0;
	fsm_report_begin(f, rq->cmd->name);
	log_info("thaw: requested by %s", rq->cmd->name);
	fsm_transition(f, FSM_FS_THAWING);
}

void
fsm_shutdown(struct agent *a)
{
	struct fsm *f = a->fsm;

	a->quitting = 1;
	f->quit = 1;
	if (f->op != OP_NONE) {
		log_info("shutdown: waiting for the %s in progress (%s)",
		    fsm_op_name[f->op], fsm_state_name(a->state));
		return;
	}
	if (a->state == FSM_FROZEN) {
		log_notice("shutdown: thawing what we froze first");
		f->op = OP_SHUTDOWN;
		f->t_op = mono_now();
		fsm_report_begin(f, "shutdown");
		fsm_transition(f, FSM_FS_THAWING);
		return;
	}
	ev_break(a->loop, EVBREAK_ALL);
}

int
fsm_adopt(struct agent *a)
{
	struct fsm *f = a->fsm;
	struct state_info si;
	size_t i, n = 0;
	time_t now;
	int r;

	if ((r = state_load(a->conf->state_dir, &f->plan, &f->hooks, &si)) <=
	    0) {
		if (r < 0)
			log_warnr(r, "cannot read %s",
			    state_path(a->conf->state_dir));
		return r;
	}
	for (i = 0; i < f->plan->n; i++) {
		if (f->plan->t[i].state == TARGET_FROZEN)
			n++;
		else
			log_warnx("adopt: '%s' is no longer reachable; "
				  "'fsfreeze-agent --thaw' cannot reach it "
				  "either",
			    f->plan->t[i].point);
	}
	f->hooks_frozen = f->hooks.n;
	now = time(NULL);
	f->wall_frozen = si.frozen_at;
	f->t_frozen = mono_now() - difftime(now, si.frozen_at);
	f->plan->t_frozen = f->t_frozen;
	f->nfrozen = n;
	f->op = OP_ADOPT;
	fsm_report_begin(f, "adopt");
	/* Frozen disks may hold up the log daemon: hold lines until thawed. */
	log_hold(1);
	log_warnx("adopt: an earlier agent left %zu filesystems frozen %.0f s "
		  "ago (%s); only the thaw and the safe commands are enabled",
	    n, difftime(now, si.frozen_at), state_path(a->conf->state_dir));
	fsm_transition(f, FSM_FROZEN);
	if (si.deadline > 0 && a->conf->max_frozen > 0) {
		/* The recorded wall-clock deadline still holds. */
		ev_timer_stop(a->loop, &f->autothaw_w);
		ev_timer_set(&f->autothaw_w,
		    difftime(si.deadline, now) > 0 ? difftime(si.deadline, now)
						   : 0.,
		    0.);
		ev_timer_start(a->loop, &f->autothaw_w);
	}
	return 1;
}

/* ------------------------------------------------------------ --thaw */

struct offline {
	int done;
	size_t nfailed;
};

static void
fsm_offline_hooks_cb(void *arg, const struct hook_phase_result *res)
{
	struct offline *o = arg;

	o->done = 1;
	o->nfailed = res->nfailed;
	ev_break(EV_DEFAULT, EVBREAK_ALL);
}

int
fsm_thaw_offline(struct conf *conf)
{
	struct freeze_plan *plan = NULL;
	struct hook_set hooks = { 0 };
	struct state_info si;
	struct offline o = { 0 };
	const struct freeze_target *t;
	size_t i, n, stuck = 0;
	int r;

	if ((r = state_load(conf->state_dir, &plan, &hooks, &si)) < 0) {
		log_errx("--thaw: cannot read %s: %s",
		    state_path(conf->state_dir), strerror(-r));
		return 1;
	}
	if (r == 0) {
		printf("nothing to thaw: no state file %s\n",
		    state_path(conf->state_dir));
		return 0;
	}
	n = freeze_thaw(plan);
	for (i = 0; i < plan->n; i++) {
		t = &plan->t[i];
		if (t->state == TARGET_THAWED && t->err == 0)
			printf("thawed %s\n", t->point);
		else if (t->state == TARGET_THAWED)
			printf("%s was not frozen\n", t->point);
		else {
			printf("%s: could not thaw: %s\n", t->point,
			    strerror(t->err ? t->err : ENOENT));
			stuck++;
		}
	}
	printf("%zu filesystems thawed\n", n);
	if (hooks.n > 0) {
		if (hook_phase_start(EV_DEFAULT, &hooks, HOOK_THAW, hooks.n,
			NULL, conf->hook_timeout, conf->hook_kill_grace,
			fsm_offline_hooks_cb, &o) != NULL)
			ev_run(EV_DEFAULT, 0);
		printf("%zu thaw hooks run, %zu failed\n", hooks.n, o.nfailed);
	}
	if (stuck == 0 && (r = state_remove(conf->state_dir)) < 0 &&
	    r != -ENOENT)
		printf("cannot remove %s: %s\n", state_path(conf->state_dir),
		    strerror(-r));
	freeze_plan_free(plan);
	hook_set_clear(&hooks);
	return stuck > 0 ? 1 : 0;
}

/* ------------------------------------------------------------ --check */

int
fsm_check(struct conf *conf)
{
	struct agent a;
	struct freeze_plan *plan = NULL;
	struct hook_set hooks = { 0 };
	const struct freeze_target *t;
	size_t i, nplanned = 0;
	int r, bad = 0;

	memset(&a, 0, sizeof a);
	a.conf = conf;
	printf("configuration: %s\n",
	    conf->file != NULL ? conf->file : "built-in defaults");
	if ((r = fsm_plan(&a, NULL, 0, &plan)) < 0) {
		printf(
		    "error: cannot read the mount table: %s\n", strerror(-r));
		return 1;
	}
	(void)freeze_plan_open(plan);
	printf("\nfilesystems a freeze would freeze, in order:\n");
	for (i = 0; i < plan->n; i++) {
		t = &plan->t[i];
		if (t->state == TARGET_PLANNED) {
			nplanned++;
			printf("  freeze  %-30s %-8s %s (wave %u)\n", t->point,
			    t->fstype, t->source, t->wave);
		} else
			printf("  skip    %-30s %-8s unreachable (%s)\n",
			    t->point, t->fstype, strerror(t->err));
	}
	if (nplanned == 0)
		printf("  (none)\n");
	printf("\nmounts skipped:\n");
	for (i = 0; i < plan->nskip; i++)
		printf("  skip    %-30s %-8s %s\n", plan->skip[i].point,
		    plan->skip[i].fstype, plan->skip[i].reason);
	freeze_plan_free(plan);

	if ((r = hook_scan(&conf->hook_dirs, &hooks)) < 0) {
		printf("error: cannot read the hook directories: %s\n",
		    strerror(-r));
		return 1;
	}
	printf("\nhooks, in freeze order (thaw runs them in reverse):\n");
	for (i = 0; i < hooks.n; i++)
		printf("  run     %s\n", hooks.v[i].path);
	if (hooks.n == 0)
		printf("  (none)\n");
	for (i = 0; i < hooks.nskip; i++) {
		printf("  %s %s: %s\n",
		    hooks.skip[i].refused ? "REFUSED" : "skip   ",
		    hooks.skip[i].path, hooks.skip[i].reason);
		if (hooks.skip[i].refused)
			bad = 1;
	}
	hook_set_clear(&hooks);
	if (bad)
		printf("\na freeze would fail: a hook is refused\n");
	else
		printf("\nconfiguration OK\n");
	return bad ? 1 : 0;
}
