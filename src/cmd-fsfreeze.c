/* SPDX-License-Identifier: ISC */
/* The freeze commands and the report; the work is fsm.c's. */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "agent.h"

static const struct cmd_arg freeze_list_args[] = {
	{ .name = "mountpoints", .type = ARG_STRLIST, .optional = 1 },
	{ .name = NULL },
};

static void
cmd_freeze_exec(struct agent *a, struct request *rq)
{
	fsm_freeze(a, rq, NULL, 0);
}

static void
cmd_freeze_list_exec(struct agent *a, struct request *rq)
{
	const struct jval *mp = jval_get(rq->args, "mountpoints");
	struct strlist list = { 0 };
	size_t i;

	/* Without mountpoints qemu-ga freezes everything; so do we. */
	if (mp == NULL) {
		fsm_freeze(a, rq, NULL, 0);
		return;
	}
	for (i = 0; i < mp->n; i++)
		strlist_add(&list, mp->v[i]->s);
	fsm_freeze(a, rq, &list, 1);
	strlist_clear(&list);
}

static void
cmd_thaw_exec(struct agent *a, struct request *rq)
{
	fsm_thaw(a, rq);
}

static void
cmd_report_exec(struct agent *a, struct request *rq)
{
	fsm_report(a, cmd_reply_begin(a, rq));
	cmd_reply_end(a, rq);
	cmd_done(a, rq);
}

const struct command cmd_fsfreeze_freeze = {
	.name = "guest-fsfreeze-freeze",
	.exec = cmd_freeze_exec,
	.states = FSM_BIT(FSM_THAWED),
	.success_response = 1,
};
const struct command cmd_fsfreeze_freeze_list = {
	.name = "guest-fsfreeze-freeze-list",
	.exec = cmd_freeze_list_exec,
	.states = FSM_BIT(FSM_THAWED),
	.success_response = 1,
	.args = freeze_list_args,
};
const struct command cmd_fsfreeze_thaw = {
	.name = "guest-fsfreeze-thaw",
	.exec = cmd_thaw_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
};
/* A downstream extension, named by QAPI's rule: __RFQDN_name. */
const struct command cmd_report = {
	.name = REPORT_COMMAND,
	.exec = cmd_report_exec,
	.states = FSM_AT_REST,
	.success_response = 1,
};
