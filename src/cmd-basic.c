/* SPDX-License-Identifier: ISC */
/* The commands that answer at once: sync, sync-delimited, ping, info, status.
 */

#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent.h"

static const struct cmd_arg sync_args[] = {
	{ .name = "id", .type = ARG_INT64 },
	{ .name = NULL },
};

static void
cmd_sync_exec(struct agent *a, struct request *rq)
{
	const struct jval *id = jval_get(rq->args, "id");
	char num[32];

	/* Checked by cmd_check_args: an int64. */
	(void)snprintf(num, sizeof num, "%" PRId64, id->i);
	cmd_reply_return(a, rq, num);
	cmd_done(a, rq);
}

static void
cmd_ping_exec(struct agent *a, struct request *rq)
{
	cmd_reply_return(a, rq, "{}");
	cmd_done(a, rq);
}

static void
cmd_info_exec(struct agent *a, struct request *rq)
{
	const struct command *c;
	struct buf *b = cmd_reply_begin(a, rq);
	size_t i;

	(void)buf_adds(b, "{\"version\": ");
	json_put_cstr(b, PACKAGE_VERSION);
	(void)buf_adds(b, ", \"supported_commands\": [");
	/* Reverse registration order, as qemu-ga lists them. */
	for (i = cmd_table_n; i-- > 0;) {
		c = cmd_table[i];
		(void)buf_addf(b,
		    "{\"enabled\": %s, \"name\": \"%s\", "
		    "\"success-response\": %s}%s",
		    (c->states & FSM_BIT(a->state)) ? "true" : "false", c->name,
		    c->success_response ? "true" : "false", i > 0 ? ", " : "");
	}
	(void)buf_adds(b, "]}");
	cmd_reply_end(a, rq);
	cmd_done(a, rq);
}

static void
cmd_status_exec(struct agent *a, struct request *rq)
{
	cmd_reply_return(a, rq, fsm_frozen(a) ? "\"frozen\"" : "\"thawed\"");
	cmd_done(a, rq);
}

const struct command cmd_sync_delimited = {
	.name = "guest-sync-delimited",
	.exec = cmd_sync_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
	.delimited = 1,
	.args = sync_args,
};
const struct command cmd_sync = {
	.name = "guest-sync",
	.exec = cmd_sync_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
	.args = sync_args,
};
const struct command cmd_ping = {
	.name = "guest-ping",
	.exec = cmd_ping_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
};
const struct command cmd_info = {
	.name = "guest-info",
	.exec = cmd_info_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
};
const struct command cmd_fsfreeze_status = {
	.name = "guest-fsfreeze-status",
	.exec = cmd_status_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
};
