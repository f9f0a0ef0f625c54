/* SPDX-License-Identifier: ISC */
/*
 * The command table, the FIFO of requests and dispatch: requests are checked
 * the way qemu-ga 7.2 checks them, executed strictly in order (one in flight)
 * and answered in qemu-ga's byte layout.
 */

#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#define QMP_BUCKETS 512

const struct command *const cmd_table[] = {
	/* qemu-ga's registration order; guest-info lists it reversed. */
	&cmd_sync_delimited,
	&cmd_sync,
	&cmd_ping,
	&cmd_info,
	&cmd_fsfreeze_status,
	&cmd_fsfreeze_freeze,
	&cmd_fsfreeze_freeze_list,
	&cmd_fsfreeze_thaw,
	&cmd_report,
};
const size_t cmd_table_n = nitems(cmd_table);

static void cmd_exec(struct agent *, struct request *);

/*
 * qemu-ga checks a request's members, and reports leftover arguments, in the
 * iteration order of QEMU's QDict: by hash bucket (tdb_hash % 512), newest
 * first within a bucket. Which error wins when several members are wrong
 * depends on it ('bar' is reported before 'foo'), so we walk the same order.
 */
static unsigned int
qdict_bucket(const char *name)
{
	unsigned int value, i;

	value = 0x238F13AFU * (unsigned int)strlen(name);
	for (i = 0; name[i] != '\0'; i++)
		value += (unsigned int)(unsigned char)name[i] << (i * 5 % 24);
	return (1103515243U * value + 12345U) % QMP_BUCKETS;
}

/* Fill order[] with member indexes of an object in QDict order. */
static void
qdict_order(const struct jval *o, size_t *order)
{
	size_t i, j, k;
	unsigned int bi, bk;

	for (i = 0; i < o->n; i++)
		order[i] = i;
	/* Insertion sort: requests have a handful of members. */
	for (i = 1; i < o->n; i++) {
		k = order[i];
		bk = qdict_bucket(o->keys[k]);
		for (j = i; j > 0; j--) {
			bi = qdict_bucket(o->keys[order[j - 1]]);
			/* Same bucket: the later member comes first. */
			if (bi < bk || (bi == bk && order[j - 1] > k))
				break;
			order[j] = order[j - 1];
		}
		order[j] = k;
	}
}

static const struct command *
cmd_find(const char *name, size_t len)
{
	size_t i;

	if (strlen(name) != len)
		return NULL; /* a NUL in the name never matches */
	for (i = 0; i < cmd_table_n; i++) {
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	}
	return NULL;
}

static void
request_free(struct request *rq)
{
	if (rq == NULL)
		return;
	jval_free(rq->msg);
	free(rq->parse_error);
	free(rq);
}

void
cmd_input(struct agent *a, struct jval *v, const char *desc)
{
	struct request *rq;

	rq = xcalloc(1, sizeof *rq);
	rq->msg = v;
	if (v == NULL)
		rq->parse_error =
		    xstrdup(desc != NULL ? desc : "JSON parse error");
	rq->session = channel_session(a->ch);
	*a->rq_tail = rq;
	a->rq_tail = &rq->next;
	a->rq_len++;
	cmd_kick(a);
	/*
	 * It has to wait (a freeze is running, or the host is not reading
	 * replies): parse nothing more until it starts. What the host sends
	 * meanwhile waits unparsed in the channel and in the kernel, so the
	 * queue never holds more than this one request and memory does not
	 * grow with how far ahead a host pipelines.
	 */
	if (a->rq_head != NULL) {
		proto_hold(a->proto);
		channel_pause(a->ch, 1);
	}
}

void
cmd_kick(struct agent *a)
{
	struct request *rq;

	if (a->rq_kicking)
		return;
	a->rq_kicking = 1;
	/* A command starts only at rest: an auto-thaw runs on its own. */
	while (!a->rq_busy && (rq = a->rq_head) != NULL &&
	    (FSM_AT_REST & FSM_BIT(a->state)) && !channel_congested(a->ch)) {
		a->rq_head = rq->next;
		if (a->rq_head == NULL)
			a->rq_tail = &a->rq_head;
		a->rq_len--;
		if (a->rq_head == NULL)
			channel_pause(a->ch, 0); /* cmd_input() held it */
		rq->next = NULL;
		a->rq_busy = 1;
		a->rq_current = rq;
		cmd_exec(a, rq);
	}
	a->rq_kicking = 0;
	if (!a->rq_busy && a->rq_head == NULL) {
		/*
		 * A 64 KiB request can take a few MiB as a tree; give that
		 * back once nothing is queued, so RSS stays near idle
		 * whatever a host sent.
		 */
		if (a->rq_bytes_since_trim > RQ_TRIM_BYTES) {
			(void)malloc_trim(0);
			a->rq_bytes_since_trim = 0;
		}
		channel_idle(a->ch);
	}
}

void
cmd_done(struct agent *a, struct request *rq)
{
	if (a->rq_current == rq)
		a->rq_current = NULL;
	request_free(rq);
	a->rq_busy = 0;
	cmd_kick(a);
}

void
cmd_reset(struct agent *a)
{
	/*
	 * A new client or host session. Requests the old one sent still run
	 * (the host asked for them: a thaw must never be lost), but their
	 * replies carry the old session and go nowhere.
	 */
	log_debug("new session %lu, %zu requests queued",
	    channel_session(a->ch), a->rq_len);
}

void
cmd_free_queue(struct agent *a)
{
	struct request *rq, *next;

	for (rq = a->rq_head; rq != NULL; rq = next) {
		next = rq->next;
		request_free(rq);
	}
	a->rq_head = NULL;
	a->rq_tail = &a->rq_head;
	a->rq_len = 0;
	if (a->rq_current != NULL) {
		request_free(a->rq_current);
		a->rq_current = NULL;
	}
	buf_free(&a->reply);
}

/* Keep the reply buffer between replies, unless one was unusually long. */
#define CMD_REPLY_KEEP ((size_t)8 * 1024)

/* Send the finished reply line if its session is still the current one. */
static void
cmd_send(struct agent *a, struct request *rq)
{
	struct buf *b = &a->reply;

	if (rq->session == channel_session(a->ch))
		(void)channel_write(a->ch, buf_head(b), buf_used(b));
	buf_reset(b);
	buf_shrink(b, CMD_REPLY_KEEP);
}

struct buf *
cmd_reply_begin(struct agent *a, struct request *rq)
{
	struct buf *b = &a->reply;

	buf_reset(b);
	if (rq->cmd != NULL && rq->cmd->delimited)
		(void)buf_addc(b, (char)0xff);
	(void)buf_adds(b, "{\"return\": ");
	return b;
}

void
cmd_reply_end(struct agent *a, struct request *rq)
{
	struct buf *b = &a->reply;

	if (rq->id != NULL) {
		(void)buf_adds(b, ", \"id\": ");
		json_put_val(b, rq->id);
	}
	(void)buf_adds(b, "}\n");
	cmd_send(a, rq);
}

void
cmd_reply_return(struct agent *a, struct request *rq, const char *json)
{
	(void)buf_adds(cmd_reply_begin(a, rq), json);
	cmd_reply_end(a, rq);
}

static void PRINTFLIKE(4, 0) cmd_reply_verror(struct agent *a,
    struct request *rq, const char *klass, const char *fmt, va_list ap)
{
	struct buf *b = &a->reply;
	char *desc;

	(void)xvasprintf(&desc, fmt, ap);
	buf_reset(b);
	(void)buf_addc(b, '{');
	if (rq->id != NULL) {
		(void)buf_adds(b, "\"id\": ");
		json_put_val(b, rq->id);
		(void)buf_adds(b, ", ");
	}
	(void)buf_adds(b, "\"error\": {\"class\": ");
	json_put_cstr(b, klass);
	(void)buf_adds(b, ", \"desc\": ");
	json_put_cstr(b, desc);
	(void)buf_adds(b, "}}\n");
	free(desc);
	cmd_send(a, rq);
}

void
cmd_reply_error(struct agent *a, struct request *rq, const char *klass,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmd_reply_verror(a, rq, klass, fmt, ap);
	va_end(ap);
}

/* Answer an error at once and finish the request. */
static void PRINTFLIKE(3, 4)
    cmd_fail(struct agent *a, struct request *rq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmd_reply_verror(a, rq, "GenericError", fmt, ap);
	va_end(ap);
	cmd_done(a, rq);
}

static const char *
cmd_argtype_name(enum cmd_argtype t)
{
	switch (t) {
	case ARG_INT64:
		return "integer";
	case ARG_STRLIST:
		return "array";
	}
	return "?";
}

/* Check arguments against the spec: 0, or -1 after replying the error. */
static int
cmd_check_args(struct agent *a, struct request *rq)
{
	const struct command *c = rq->cmd;
	const struct cmd_arg *arg;
	const struct jval *args = rq->args, *v;
	size_t i, j, *order;
	int known;

	for (arg = c->args; arg != NULL && arg->name != NULL; arg++) {
		v = args != NULL ? jval_get(args, arg->name) : NULL;
		if (v == NULL) {
			if (arg->optional)
				continue;
			cmd_fail(a, rq, "Parameter '%s' is missing", arg->name);
			return -1;
		}
		switch (arg->type) {
		case ARG_INT64:
			if (v->type == JV_NUMBER &&
			    (v->numflags & JV_NUM_INT64))
				continue;
			break;
		case ARG_STRLIST:
			if (v->type != JV_ARRAY)
				break;
			for (j = 0; j < v->n; j++) {
				if (v->v[j]->type != JV_STRING) {
					cmd_fail(a, rq,
					    "Invalid parameter type for "
					    "'%s[%zu]', expected: string",
					    arg->name, j);
					return -1;
				}
			}
			continue;
		}
		cmd_fail(a, rq, "Invalid parameter type for '%s', expected: %s",
		    arg->name, cmd_argtype_name(arg->type));
		return -1;
	}
	if (args == NULL || args->n == 0)
		return 0;
	order = xreallocarray(NULL, args->n, sizeof *order);
	qdict_order(args, order);
	for (i = 0; i < args->n; i++) {
		known = 0;
		for (arg = c->args; arg != NULL && arg->name != NULL; arg++) {
			if (strcmp(arg->name, args->keys[order[i]]) == 0)
				known = 1;
		}
		if (!known) {
			cmd_fail(a, rq, "Parameter '%s' is unexpected",
			    args->keys[order[i]]);
			free(order);
			return -1;
		}
	}
	free(order);
	return 0;
}

static void
cmd_exec(struct agent *a, struct request *rq)
{
	struct jval *m = rq->msg, *v, *exec = NULL;
	size_t i, *order;
	const char *k;

	if (rq->parse_error != NULL) {
		log_debug("request rejected: %s", rq->parse_error);
		cmd_fail(a, rq, "%s", rq->parse_error);
		return;
	}
	if (m->type != JV_OBJECT) {
		cmd_fail(a, rq, "QMP input must be a JSON object");
		return;
	}
	rq->id = jval_get(m, "id");
	order = xreallocarray(NULL, m->n ? m->n : 1, sizeof *order);
	qdict_order(m, order);
	for (i = 0; i < m->n; i++) {
		k = m->keys[order[i]];
		v = m->v[order[i]];
		if (strcmp(k, "execute") == 0) {
			if (v->type != JV_STRING) {
				free(order);
				cmd_fail(a, rq,
				    "QMP input member 'execute' "
				    "must be a string");
				return;
			}
			exec = v;
		} else if (strcmp(k, "arguments") == 0) {
			if (v->type != JV_OBJECT) {
				free(order);
				cmd_fail(a, rq,
				    "QMP input member 'arguments' "
				    "must be an object");
				return;
			}
			rq->args = v;
		} else if (strcmp(k, "id") != 0) {
			free(order);
			cmd_fail(
			    a, rq, "QMP input member '%s' is unexpected", k);
			return;
		}
	}
	free(order);
	if (exec == NULL) {
		cmd_fail(a, rq, "QMP input lacks member 'execute'");
		return;
	}
	if ((rq->cmd = cmd_find(exec->s, exec->slen)) == NULL) {
		cmd_reply_error(a, rq, "CommandNotFound",
		    "The command %s has not been found", exec->s);
		cmd_done(a, rq);
		return;
	}
	if (!(rq->cmd->states & FSM_BIT(a->state))) {
		cmd_reply_error(a, rq, "CommandNotFound",
		    "Command %s has been disabled: the agent is in frozen "
		    "state",
		    rq->cmd->name);
		cmd_done(a, rq);
		return;
	}
	if (cmd_check_args(a, rq) < 0)
		return;
	rq->cmd->exec(a, rq);
}
