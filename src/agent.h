/* SPDX-License-Identifier: ISC */
/* The one internal header: shared structs, enums and prototypes by file. */

#ifndef AGENT_H
#define AGENT_H

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ev.h>

#define AGENT_NAME "fsfreeze-agent"
#define REPORT_COMMAND "__io.github.fsfreeze-agent_report"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef RUNSTATEDIR
#define RUNSTATEDIR "/run"
#endif

#define PRINTFLIKE(n, m) __attribute__((format(printf, n, m)))
#define NORETURN __attribute__((noreturn))

#ifndef container_of
#define container_of(p, type, member) \
	((type *)(void *)((char *)(p)-offsetof(type, member)))
#endif

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

struct agent;
struct conf;
struct jval;
struct request;

/* xmalloc.c */
/* All fatal on out of memory; xfree-style NULL tolerance is free()'s own. */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);
int xvasprintf(char **, const char *, va_list) PRINTFLIKE(2, 0);

/* buf.c */
/*
 * A byte buffer with a hard cap: buf_add() past the cap fails with
 * -ENOBUFS and leaves the buffer as it was. cap 0 means no cap (only for
 * buffers whose growth is bounded elsewhere). Data lives in
 * [data + off, data + len).
 */
struct buf {
	char *data;
	size_t off;
	size_t len;
	size_t size;
	size_t cap;
	size_t peak; /* the most len has been since the last buf_shrink() */
	int mapped;  /* buf_init_mapped(): data is a mapping of cap bytes */
};
void buf_init(struct buf *, size_t cap);
void buf_init_mapped(struct buf *, size_t cap);
void buf_free(struct buf *);
void buf_shrink(struct buf *, size_t keep);
void buf_reset(struct buf *);
size_t buf_used(const struct buf *);
const char *buf_head(const struct buf *);
int buf_add(struct buf *, const void *, size_t);
int buf_addc(struct buf *, char);
int buf_adds(struct buf *, const char *);
int buf_addf(struct buf *, const char *, ...) PRINTFLIKE(2, 3);
int buf_addvf(struct buf *, const char *, va_list) PRINTFLIKE(2, 0);
void buf_consume(struct buf *, size_t);

/* fdutil.c */
int fd_set_nonblock(int);
int fd_set_cloexec(int);
/* Closes fd if >= 0, keeps errno, returns -1 for "fd = safe_close(fd)". */
int safe_close(int);
/* Monotonic seconds, independent of libev's cached loop time. */
double mono_now(void);

/* log.c */
/*
 * Logging never blocks: syslog goes through our own non-blocking datagram
 * socket to /dev/log (or $FSFREEZE_AGENT_LOG_SOCKET for tests), stderr (-v
 * or no syslog) is written non-blocking, and whatever cannot go now waits
 * in a preallocated ring that log_w flushes. While held (fs-freezing until
 * the last FITHAW) nothing is sent; the release flushes in order with the
 * original timestamps and says how many lines were dropped.
 */
#define LOG_TO_SYSLOG 0x1
#define LOG_TO_STDERR 0x2
void log_init(int to, int facility, int level);
void log_set_level(int level);
void log_set_facility(int facility);
int log_get_level(void);
/* Start the flush watchers; before it, lines wait in the ring. */
void log_start(struct ev_loop *);
void log_stop(void);
/* Hold (1) or release (0) output; release flushes what was held. */
void log_hold(int);
/* Try to send everything queued now, without blocking. */
void log_flush(void);
/* Called by fatal()/fatalx() before exit: the emergency thaw. */
void log_set_fatal_hook(void (*)(void));
void log_warn(const char *, ...) PRINTFLIKE(1, 2);
void log_warnr(int r, const char *, ...) PRINTFLIKE(2, 3);
void log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void log_notice(const char *, ...) PRINTFLIKE(1, 2);
void log_info(const char *, ...) PRINTFLIKE(1, 2);
void log_debug(const char *, ...) PRINTFLIKE(1, 2);
void log_errx(const char *, ...) PRINTFLIKE(1, 2);
void fatal(const char *, ...) PRINTFLIKE(1, 2) NORETURN;
void fatalx(const char *, ...) PRINTFLIKE(1, 2) NORETURN;

/* conf.c */
enum channel_method {
	CHANNEL_VIRTIO_SERIAL,
	CHANNEL_ISA_SERIAL,
	CHANNEL_UNIX_LISTEN,
	CHANNEL_VSOCK_LISTEN,
	CHANNEL_METHOD_MAX
};
struct strlist {
	char **v;
	size_t n;
};
struct conf {
	char *file; /* the file it was read from, or NULL */
	/* [agent] */
	char *state_dir;
	/* [channel] */
	enum channel_method method;
	char *path; /* NULL: the method's default */
	/* [hooks] */
	struct strlist hook_dirs;
	double hook_timeout;	/* seconds */
	double hook_kill_grace; /* seconds between SIGTERM and SIGKILL */
	/* [freeze] */
	struct strlist include;
	struct strlist exclude;
	struct strlist exclude_type;
	double max_frozen; /* seconds, 0 = off */
	/* [log] */
	int facility; /* LOG_DAEMON, ... */
	int level;    /* LOG_INFO, ... */
};
/* The file read when conf_load() is given NULL. */
#define CONF_FILE SYSCONFDIR "/" AGENT_NAME ".conf"
const char *conf_method_name(enum channel_method);
int conf_method_parse(const char *, enum channel_method *);
const char *conf_default_path(enum channel_method);
/* A conf with every built-in default. */
struct conf *conf_new(void);
/*
 * Read file into a new conf. A missing file is not an error when
 * !required (built-in defaults). Errors are printed as "FILE:LINE: reason"
 * through log_errx and give -EINVAL (or -errno for an unreadable file).
 */
int conf_load(const char *file, int required, struct conf **);
void conf_free(struct conf *);
/* Parse "30s", "2m", "1h", "500ms", "10" (seconds); -EINVAL when bad. */
int conf_parse_duration(const char *, double *);
/* "CID:PORT" in decimal as qemu-ga takes it; CID -1 is VMADDR_CID_ANY. */
int conf_parse_vsock(const char *, uint32_t *cid, uint32_t *port);
/* Append c in the file's syntax, every key (conf_load() reads it back). */
void conf_print(const struct conf *, struct buf *);
/* Appends a copy; v stays NULL-terminated. */
void strlist_add(struct strlist *, const char *);
void strlist_clear(struct strlist *);
/* s is in l (l may be NULL). */
int strlist_has(const struct strlist *, const char *);

/* json.c */
/*
 * A small JSON value tree for requests (never yajl_tree in the daemon).
 * Numbers keep their token text, so ids are echoed exactly; integer
 * members say whether the token is an int64 / uint64.
 */
enum jtype {
	JV_NULL,
	JV_BOOL,
	JV_NUMBER,
	JV_STRING,
	JV_ARRAY,
	JV_OBJECT,
};
#define JV_NUM_INT64 0x1  /* i is valid */
#define JV_NUM_UINT64 0x2 /* u is valid */
struct jval {
	enum jtype type;
	int b;
	int numflags;
	int64_t i;
	uint64_t u;
	double d;
	char *s; /* STRING: NUL-terminated modified UTF-8, as
		  * QEMU holds it (U+0000 is C0 80); NUMBER:
		  * its token */
	size_t slen;
	/* ARRAY, OBJECT: n members; keys[] only for OBJECT */
	struct jval **v;
	char **keys;
	size_t *keylens;
	size_t n;
};
void jval_free(struct jval *);
/* Object member by exact key, or NULL. */
struct jval *jval_get(const struct jval *, const char *key);
/* Append v as QEMU writes it: ": " and ", " separators, object members in
 * QEMU's QDict order (not insertion order), ASCII only, upper-case \uXXXX
 * escapes, numbers canonical (never inf/nan). */
void json_put_val(struct buf *, const struct jval *);
/* Append a string value in QEMU's escaping; invalid UTF-8 -> \uFFFD. */
void json_put_str(struct buf *, const char *, size_t);
void json_put_cstr(struct buf *, const char *);
/* A deep copy. */
struct jval *jval_dup(const struct jval *);

/* proto.c */
/*
 * The streaming request parser: yajl_parse fed whatever bytes arrive.
 * Each complete top-level JSON text becomes one proto_msg_fn call with
 * the parsed value; each malformed message becomes exactly one call with
 * v == NULL and desc set to qemu-ga's text for it ("JSON parse error,
 * ..."), after which the parser resynchronises (protocol.md 6.1). A 0xFF
 * or 0xFE byte silently drops any half-read message. Limits: message size
 * and nesting depth. The callback owns v.
 */
typedef void proto_msg_fn(void *arg, struct jval *v, const char *desc);
struct proto_limits {
	size_t max_size;    /* bytes per message */
	unsigned max_depth; /* open { and [ */
};
#define PROTO_MAX_SIZE (64 * 1024)
#define PROTO_MAX_DEPTH 32
struct proto *proto_new(const struct proto_limits *, proto_msg_fn *, void *);
void proto_free(struct proto *);
/*
 * Returns the bytes taken: all n, unless the callback called proto_hold(),
 * which ends the feed right after the message (or error) it was called
 * for; the caller feeds the rest again later.
 */
size_t proto_feed(struct proto *, const void *, size_t);
void proto_hold(struct proto *);
/* Drop any half-read message (new client, host hang-up). */
void proto_reset(struct proto *);

/* channel.c */
/*
 * The channel owns the fd. Bytes read go to ch_data_fn, which returns how
 * many it took: the rest stays in the channel, nothing more is read, and
 * it is offered again from the loop once the channel is neither paused
 * nor congested. ch_reset_fn fires when a new client or host session
 * starts (the parser and the request queue begin afresh; bytes not taken
 * are dropped). Output goes through a capped queue and a write watcher;
 * while output is over its high-water mark reading stops, so a host that
 * never reads replies cannot grow our memory.
 */
typedef size_t ch_data_fn(void *arg, const char *, size_t);
typedef void ch_reset_fn(void *arg);
struct channel;
struct channel *channel_new(struct ev_loop *, enum channel_method,
    const char *path, ch_data_fn *, ch_reset_fn *, void *arg);
/* Open (and for -listen methods, bind and listen). -errno on failure. */
int channel_open(struct channel *);
void channel_free(struct channel *);
/* Queue a reply; dropped when no peer is connected. -ENOBUFS over cap. */
int channel_write(struct channel *, const void *, size_t);
/* Nonzero when output is over the high-water mark: stop executing. */
int channel_congested(const struct channel *);
/* Pause or resume reading (the request queue is full). */
void channel_pause(struct channel *, int);
/* Session counter: bumps on every reset, tags replies to a session. */
unsigned long channel_session(const struct channel *);
/* Called when the output queue drains below the low-water mark. */
void channel_set_drain_cb(struct channel *, void (*)(void *));
/*
 * A client that half-closed is closed once its output is written and
 * busy() says no request is queued or running; channel_idle() is how the
 * dispatcher says it has just become idle.
 */
void channel_set_busy_cb(struct channel *, int (*busy)(void *));
void channel_idle(struct channel *);

/* spawn.c */
/*
 * The only child processes. spawn_hook (posix_spawn where the C library
 * can, else fork): argv[0] absolute, stdin /dev/null, stdout and stderr
 * into a new pipe whose read end (O_NONBLOCK, O_CLOEXEC) is returned in
 * *outfd; own session and process group; every signal default and an
 * empty mask; every other descriptor closed; cwd /. A hook that cannot be
 * exec'd is -errno here under posix_spawn, exit 127 under fork. spawn_worker:
 * a forked child that runs fn(arg) and _exit()s with its return value
 * (0..255), for the kernel calls that can block (worker.c). Both return
 * the pid or -errno; the caller starts an ev_child for it before returning
 * to the loop.
 */
pid_t spawn_hook(char *const argv[], char *const envp[], int *outfd);
pid_t spawn_worker(int (*fn)(void *), void *arg);

/* worker.c */
/*
 * A pool of freeze workers (spawn_worker children) that run syncfs() or
 * FIFREEZE on an fd passed to them, one call at a time each, and report
 * the errno. worker_call() picks an idle worker or forks one and returns
 * 0 or -errno; done(arg, err) comes later from the loop, never from inside
 * worker_call(), with err 0, an errno, or WORKER_LOST (the worker died or
 * was killed during the call: it may or may not have made it). Workers
 * idle for WORKER_IDLE seconds exit.
 */
enum worker_op { WORKER_SYNCFS = 1, WORKER_FIFREEZE };
/*
 * Calls in flight at once. Independent filesystems freeze in parallel
 * because each FIFREEZE of a clean filesystem mostly waits for RCU grace
 * periods (~30 ms), which overlap; the cap keeps a guest with hundreds of
 * filesystems from forking hundreds of processes at once (its process
 * limit). Past it, a call waits for a worker to come free.
 */
#define WORKER_MAX 64
#define WORKER_LOST (-1)
#define WORKER_IDLE 5.0
struct worker;
typedef void worker_done_fn(void *arg, int err);
int worker_call(struct ev_loop *, enum worker_op, int fd, worker_done_fn *,
    void *arg, struct worker **);
/* Forget w's call and kill it (a call not yet in its ioctl does nothing). */
void worker_cancel(struct worker *);
/* Idle workers exit now; busy ones when their call is done. */
void worker_close_idle(void);
size_t worker_count(void);
void worker_set_idle(double secs);

/* hook.c */
enum hook_phase { HOOK_FREEZE, HOOK_THAW, HOOK_PHASE_MAX };
const char *hook_phase_name(enum hook_phase);
struct hook {
	char *path; /* absolute */
	char *name; /* base name: the sort key, byte order */
};
struct hook_skip {
	char *path;
	char *reason;
	int refused; /* a refused hook makes a freeze fail */
};
struct hook_set {
	struct hook *v;
	size_t n;
	struct hook_skip *skip;
	size_t nskip;
	size_t nrefused;
};
/*
 * Scan the directories into set (sorted by name), replacing what it held
 * (zeroed or used before); 0 or -errno. Symlinks are followed and their
 * target checked; a name in an earlier directory shadows the same name in
 * later ones (a link to /dev/null masks). Missing dirs are skipped.
 */
int hook_scan(const struct strlist *dirs, struct hook_set *);
/* Append one hook by path (state adoption); kept in the given order. */
void hook_set_add(struct hook_set *, const char *path);
void hook_set_clear(struct hook_set *);
struct hook_outcome {
	const char *name; /* borrowed from the set */
	const char *path;
	enum hook_phase phase;
	int spawn_err; /* -errno when it could not be started */
	int status;    /* wait status when it ran */
	int timed_out;
	double secs;
	char *tail; /* its last output lines, or NULL */
};
struct hook_phase_result {
	enum hook_phase phase;
	size_t ncompleted; /* FREEZE: v[0, ncompleted) exited 0;
			    * THAW: how many exited 0 */
	size_t nfailed;
	char *desc; /* first failure for the host, or NULL */
	struct hook_outcome *outcomes;
	size_t noutcomes;
};
typedef void hook_done_fn(void *arg, const struct hook_phase_result *);
struct hook_run;
/*
 * FREEZE runs set->v[0, count) ascending and stops at the first failure;
 * THAW runs set->v[0, count) descending and runs all of them. why, when
 * not NULL, says why a thaw is an undo (FSFREEZE_UNDO). done() fires later,
 * never inside; the result is valid during the call only. The set must
 * outlive the run. The run frees itself after done() returns: the pointer
 * is only a handle (never NULL). loop must be EV_DEFAULT (ev_child).
 */
struct hook_run *hook_phase_start(struct ev_loop *, const struct hook_set *,
    enum hook_phase, size_t count, const char *why, double timeout,
    double grace, hook_done_fn *, void *);
/* "exited 0", "failed with status 3", "killed by signal 9", ... */
void hook_outcome_str(const struct hook_outcome *, char *, size_t);

/* mounts.c */
struct mount {
	int id;
	int parent;
	unsigned int major;
	unsigned int minor;
	char *root;
	char *point; /* octal escapes decoded */
	char *opts;
	char *fstype;
	char *source;
	char *super_opts;
	int readonly;
};
struct mount_table {
	struct mount *v;
	size_t n;
};
/* NULL path: /proc/self/mountinfo. 0 or -errno. */
int mounts_read(const char *path, struct mount_table *);
void mounts_free(struct mount_table *);
/* Decode mountinfo's octal escapes (\040 ...) into a new string. */
char *mounts_unescape(const char *);

/* freeze.c */
enum target_state {
	TARGET_PLANNED,
	TARGET_FROZEN,
	TARGET_UNSUPPORTED, /* EOPNOTSUPP: skipped */
	TARGET_BUSY,	    /* EBUSY: someone else froze it */
	TARGET_UNOPENED, /* ENOENT, EACCES, ENXIO, EIO; EXDEV: over-mounted */
	TARGET_FAILED,	 /* any other errno: rolls back */
	TARGET_THAWED,
	TARGET_STATE_MAX
};
struct freeze_target {
	char *point;
	char *fstype;
	char *source;
	dev_t dev; /* mountinfo's; once opened, the fd's st_dev */
	int mnt_id;
	int fd;
	unsigned int wave; /* 0 freezes first */
	enum target_state state;
	int err; /* errno of a skip or failure */
	double secs;
};
struct plan_skip {
	char *point;
	char *fstype;
	char *reason;
	int warn; /* found by freeze_plan_open: log as a warning */
};
struct freeze_policy {
	const struct strlist *include;
	const struct strlist *exclude;
	const struct strlist *exclude_type;
	const struct strlist *list; /* freeze-list mount points */
	int has_list;
};
/*
 * t[] is in freeze order: wave by wave, reverse mountinfo order within a
 * wave; thaw goes backwards (a filesystem on a loop device whose file is
 * on another must freeze first and thaw last). Keep that order when a plan
 * is stored and read back. Unopened targets have their reason in skip[].
 */
struct freeze_plan {
	struct freeze_target *t;
	size_t n;
	struct plan_skip *skip;
	size_t nskip;
	unsigned int nwaves;
	struct strlist unmatched; /* freeze-list entries that matched none */
	double t_frozen;	  /* mono_now() at the first FIFREEZE */
	void *priv; /* freeze.c's own; NULL in a plan made elsewhere */
};
/*
 * Where freeze.c looks beyond mountinfo, for tests to point at fixtures:
 * sysfs_root ("/sys") holds dev/block/MAJ:MIN/loop/backing_file;
 * stat_source says whether a btrfs source is a block device (0 and its
 * device number, else -errno; the default stat()s paths under /dev only).
 */
struct freeze_ops {
	const char *sysfs_root;
	int (*stat_source)(const char *, dev_t *);
};
extern struct freeze_ops freeze_ops;
/*
 * Decide candidates from mountinfo fields alone: nothing is opened (sysfs
 * is read for loop devices' backing files). -ELOOP: they form a cycle.
 */
int freeze_plan_build(const struct mount_table *, const struct freeze_policy *,
    struct freeze_plan **);
/*
 * Open and verify each target; unopenable ones are skipped (reason in
 * skip[]). -errno only for an open error that is not about the mount.
 */
int freeze_plan_open(struct freeze_plan *);
void freeze_plan_free(struct freeze_plan *);
/* r is 0, or -errno of the first target that failed (see freeze_failed). */
typedef void freeze_done_fn(void *arg, int r);
/*
 * syncfs every target, then FIFREEZE wave by wave in workers; done later,
 * never inside. -EINVAL: not a freeze_plan_build() plan; -EALREADY.
 */
int freeze_start(
    struct ev_loop *, struct freeze_plan *, freeze_done_fn *, void *);
size_t freeze_count(const struct freeze_plan *);
const struct freeze_target *freeze_failed(const struct freeze_plan *);
/* FITHAW our frozen fds once each, last wave first; the number thawed. */
size_t freeze_thaw(struct freeze_plan *);
/* For fatal(): FITHAW whatever the plan holds frozen; no allocation. */
void freeze_emergency_thaw(struct freeze_plan *);
const char *target_state_name(enum target_state);

/* state.c */
/*
 * The state file in state_dir (a tmpfs) that outlives the agent: what we
 * froze (mount point, device, mount id), when, the auto-thaw deadline and
 * the hooks that completed freeze. Written before the first FIFREEZE and
 * again once the freeze is done, removed after the last thaw hook.
 */
struct state_info {
	time_t frozen_at; /* wall clock */
	time_t deadline;  /* wall clock; 0: no auto-thaw */
	int complete;	  /* 0: written before the freeze finished */
};
int state_write(const char *dir, const struct freeze_plan *,
    const struct hook_set *, size_t nhooks, const struct state_info *);
int state_remove(const char *dir);
/* Create dir if missing (0700) and give its device. */
int state_dir_dev(const char *dir, dev_t *);
/*
 * 0: no state file. 1: *planp holds the recorded targets as TARGET_FROZEN
 * with fds opened where the mount point still is that device (others are
 * TARGET_UNOPENED), hooks the recorded hooks. -errno on a bad file.
 */
int state_load(const char *dir, struct freeze_plan **, struct hook_set *,
    struct state_info *);
const char *state_path(const char *dir);

/* fsm.c */
enum fsm_state {
	FSM_THAWED,
	FSM_HOOKS_FREEZING,
	FSM_FS_FREEZING,
	FSM_FROZEN,
	FSM_FS_THAWING,
	FSM_HOOKS_THAWING,
	FSM_STATE_MAX
};
#define FSM_BIT(s) (1U << (s))
#define FSM_AT_REST (FSM_BIT(FSM_THAWED) | FSM_BIT(FSM_FROZEN))
const char *fsm_state_name(enum fsm_state);
void fsm_init(struct agent *);
void fsm_free(struct agent *);
/* Adopt a state file left by an earlier agent: 0 none, 1 adopted, -errno. */
int fsm_adopt(struct agent *);
/* status: frozen from the first FIFREEZE until the last FITHAW. */
int fsm_frozen(const struct agent *);
/* Requests (the handlers answer rq when done). */
void fsm_freeze(
    struct agent *, struct request *, const struct strlist *list, int has_list);
void fsm_thaw(struct agent *, struct request *);
void fsm_report(struct agent *, struct buf *);
/* SIGTERM/SIGINT: thaw what we froze, run the owed hooks, then ev_break. */
void fsm_shutdown(struct agent *);
/* --thaw: thaw what the state file records; the exit status. */
int fsm_thaw_offline(struct conf *);
/* --check: what a freeze would freeze and run; the exit status. */
int fsm_check(struct conf *);

/* cmd.c */
/*
 * Requests run strictly in order: one in flight, the rest wait in a FIFO.
 * A handler either answers at once (cmd_reply_* before returning) or keeps
 * the request and answers later; then the next request starts.
 */
struct request {
	struct request *next;
	struct jval *msg;  /* the whole request object */
	struct jval *id;   /* borrowed from msg, or NULL */
	struct jval *args; /* borrowed from msg, or NULL */
	const struct command *cmd;
	char *parse_error; /* the parser's desc for a malformed message */
	unsigned long session;
};
typedef void cmd_exec_fn(struct agent *, struct request *);
struct command {
	const char *name;
	cmd_exec_fn *exec;
	unsigned int states; /* FSM_BIT()s in which it may run */
	int success_response;
	int delimited; /* reply preceded by 0xFF */
	/* argument spec: NULL-terminated */
	const struct cmd_arg *args;
};
enum cmd_argtype { ARG_INT64, ARG_STRLIST };
struct cmd_arg {
	const char *name;
	enum cmd_argtype type;
	int optional;
};
extern const struct command *const cmd_table[];
extern const size_t cmd_table_n;
/* Take one parsed message (or a parse error) from the parser. */
void cmd_input(struct agent *, struct jval *, const char *desc);
/* The session changed: drop queued requests' replies. */
void cmd_reset(struct agent *);
void cmd_reply_return(struct agent *, struct request *, const char *json);
/*
 * A reply built in place: cmd_reply_begin() gives the buffer to append the
 * return value to, cmd_reply_end() closes the line and sends it.
 */
struct buf *cmd_reply_begin(struct agent *, struct request *);
void cmd_reply_end(struct agent *, struct request *);
void cmd_reply_error(struct agent *, struct request *, const char *klass,
    const char *fmt, ...) PRINTFLIKE(4, 5);
/* The request is answered; start the next one. */
void cmd_done(struct agent *, struct request *);
/* Run queued requests if the head is free. */
void cmd_kick(struct agent *);
void cmd_free_queue(struct agent *);

/* cmd-basic.c */
extern const struct command cmd_sync, cmd_sync_delimited, cmd_ping, cmd_info,
    cmd_fsfreeze_status;
/* cmd-fsfreeze.c */
extern const struct command cmd_fsfreeze_freeze, cmd_fsfreeze_freeze_list,
    cmd_fsfreeze_thaw, cmd_report;

/* main.c and the agent */
struct agent {
	struct ev_loop *loop;
	struct conf *conf;
	const char *conf_file;
	int conf_required;
	struct channel *ch;
	struct proto *proto;
	/* the request FIFO: head is in flight when busy */
	struct request *rq_head;
	struct request **rq_tail;
	size_t rq_len;
	size_t rq_bytes_since_trim; /* input since the last malloc_trim */
	struct buf reply; /* the reply being built, kept for the next */
	int rq_busy;
	int rq_kicking;
	struct request *rq_current;
	enum fsm_state state;
	void *fsm; /* fsm.c's private state */
	int quitting;
	int reload; /* SIGHUP seen; reload once thawed */
	int verbose;
};
/* main.c */
/* Apply a pending SIGHUP reload if the agent is thawed and idle. */
void main_reload(struct agent *);
#define RQ_TRIM_BYTES (32 * 1024) /* input between malloc_trim()s */

#endif
