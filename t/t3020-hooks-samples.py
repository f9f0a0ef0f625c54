# SPDX-License-Identifier: ISC
"""t3020: the hook samples in hooks.d/, run as the agent runs hooks.

Each sample is installed as a hook would be (a copy without .sample, mode
0755, its CONFIG line pointing at a file in our directory) and run with a
clean environment, stdin from /dev/null, in a new session, from /. The
server-side checks use private servers that this test starts in its own
directory: MariaDB (mariadb-install-db + mariadbd on a socket, no network)
and PostgreSQL (initdb + pg_ctl as user postgres on a private socket
directory). A section skips when its server is not installed or we are not
root; nothing outside our directory is touched.

Debian packages: mariadb-server mariadb-client postgresql.
"""

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from agenttest import TAP

TOP = os.environ.get("top_srcdir") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..")
SAMPLES = os.path.join(TOP, "hooks.d")
# What the agent puts in a hook's PATH.
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYS_PATH = HOOK_PATH + ":" + os.environ.get("PATH", "")

t = TAP()
tmp = tempfile.mkdtemp(prefix="fsfa-t3020-")
t.cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))


def which(*names):
    for n in names:
        p = shutil.which(n, path=SYS_PATH)
        if p:
            return p
    return None


def run(argv, timeout=60, **kw):
    """Run a helper command; (status, output)."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, cwd="/",
                       **kw)
    return p.returncode, p.stdout.decode(errors="replace")


def install_hook(sample, name, conf=None):
    """Copy hooks.d/SAMPLE to tmp/hooks.d/NAME, reading CONFIG=conf."""
    src = os.path.join(SAMPLES, sample)
    with open(src) as f:
        text = f.read()
    text, n = re.subn(r"^CONFIG=/etc/fsfreeze-agent/[a-z]+\.conf$",
                      "CONFIG=%s" % conf, text, flags=re.M)
    d = os.path.join(tmp, "hooks.d")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    if conf is not None:
        t.eq(n, 1, "%s: exactly one CONFIG= line to point at our settings" %
             sample)
    return path


def write_conf(path, **kv):
    with open(path, "w") as f:
        for k, v in kv.items():
            f.write("%s='%s'\n" % (k, v))
    os.chmod(path, 0o644)


def run_hook(path, phase, undo=None, timeout=60, sig_after=None):
    """Run a hook as the agent does; (status, output, seconds).

    status is the exit status, -N when killed by signal N, None on timeout.
    With sig_after=(seconds, test) the hook's process group gets SIGTERM
    once test() is true, as the agent's timeout would do.
    """
    env = {"PATH": HOOK_PATH, "LANG": "C", "FSFREEZE_PHASE": phase,
           "FSFREEZE_HOOK": os.path.basename(path)}
    if undo is not None:
        env["FSFREEZE_UNDO"] = undo
    outp = os.path.join(tmp, "hook.out")
    t0 = time.monotonic()
    with open(outp, "wb") as out:
        p = subprocess.Popen([path, phase], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, env=env,
                             cwd="/", start_new_session=True)
    if sig_after is not None:
        limit, cond = sig_after
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and p.poll() is None:
            if cond():
                os.killpg(p.pid, signal.SIGTERM)
                break
            time.sleep(0.05)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        rc = None
    secs = time.monotonic() - t0
    with open(outp, "rb") as f:
        text = f.read().decode(errors="replace")
    if rc != 0:
        t.diag("%s %s: status %s: %s" % (os.path.basename(path), phase, rc,
                                          text.strip()))
    return rc, text, secs


def gone(pid):
    """True if process pid no longer runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return True
    return st.rsplit(")", 1)[1].split()[0] in ("Z", "X", "x")


def wait_for(cond, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# --------------------------------------------------------------- static
samples = sorted(os.path.basename(p)
                 for p in glob.glob(os.path.join(SAMPLES, "*.sample")))
t.eq(samples, ["mariadb.sample", "postgresql.sample", "template.sample"],
     "hooks.d ships the three samples, all named *.sample (skipped by the "
     "agent)")
for s in samples:
    with open(os.path.join(SAMPLES, s)) as f:
        first = f.readline()
    t.eq(first, "#!/bin/sh\n", "%s: a POSIX sh script" % s)
    rc, out = run(["sh", "-n", os.path.join(SAMPLES, s)])
    t.ok(rc == 0, "%s: sh -n finds no syntax error" % s) or t.diag(out)
    dash = which("dash")
    if dash:
        rc, out = run([dash, "-n", os.path.join(SAMPLES, s)])
        t.ok(rc == 0, "%s: dash -n finds no syntax error" % s) or t.diag(out)
    checker = which("shellcheck")
    if checker:
        rc, out = run([checker, "-s", "sh", os.path.join(SAMPLES, s)])
        t.ok(rc == 0, "%s: shellcheck -s sh is clean" % s) or t.diag(out)
    else:
        t.skip(1, "%s: shellcheck not installed" % s)

tpl = install_hook("template.sample", "50-template")
rc, out, _ = run_hook(tpl, "freeze")
t.eq(rc, 0, "template: freeze exits 0")
rc, out, _ = run_hook(tpl, "thaw", undo="hook '60-x' failed")
t.eq(rc, 0, "template: thaw exits 0")
t.ok("undo: hook '60-x' failed" in out, "template: an undo thaw sees "
     "FSFREEZE_UNDO") or t.diag(out)
rc, out, _ = run_hook(tpl, "bogus")
t.eq(rc, 2, "template: an unknown phase exits 2")


# -------------------------------------------------------------- MariaDB
class MariaDB:
    def __init__(self, d):
        self.dir = d
        self.sock = os.path.join(d, "mysqld.sock")
        self.client = which("mariadb", "mysql")
        self.proc = None

    def start(self):
        server = which("mariadbd", "mysqld")
        installdb = which("mariadb-install-db", "mysql_install_db")
        data = os.path.join(self.dir, "data")
        rc, out = run([installdb, "--no-defaults", "--datadir=" + data,
                       "--user=root", "--skip-test-db",
                       "--auth-root-authentication-method=socket"])
        if rc != 0:
            t.diag(out)
            return False
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [server, "--no-defaults", "--datadir=" + data,
             "--socket=" + self.sock, "--skip-networking", "--user=root",
             "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
             "--log-error=" + os.path.join(self.dir, "error.log"),
             "--innodb-buffer-pool-size=32M"],
            stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
        t.cleanup(self.stop)
        return wait_for(lambda: self.sql("SELECT 1")[0] == 0 or
                        self.proc.poll() is not None, 60) and \
            self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def sql(self, stmt, timeout=30):
        return run([self.client, "--no-defaults", "--socket=" + self.sock,
                    "--user=root", "--batch", "--skip-column-names", "-e",
                    stmt], timeout=timeout)

    def write(self, table="fsfa.t"):
        """An INSERT that waits 1 s at most for a lock: (ok, output)."""
        rc, out = self.sql("SET SESSION lock_wait_timeout = 1; "
                           "INSERT INTO %s VALUES (1)" % table)
        return rc == 0, out

    def holders(self):
        """Ids of sessions that run the hook's SLEEP or its FLUSH."""
        rc, out = self.sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE "
            "INFO LIKE 'SELECT SLEEP(%) AS fsfreeze_agent_hold' OR "
            "INFO = 'FLUSH TABLES WITH READ LOCK'")
        return out.split() if rc == 0 else None

    def lock_table(self):
        """Another session holding LOCK TABLES fsfa.t WRITE."""
        p = subprocess.Popen([self.client, "--no-defaults",
                              "--socket=" + self.sock, "--user=root",
                              "--batch", "--skip-column-names",
                              "--unbuffered"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, cwd="/")
        p.stdin.write(b"LOCK TABLES fsfa.t WRITE;\nSELECT 'table-locked';\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if line.strip() != b"table-locked":
            t.diag("LOCK TABLES: %r" % line)

        def unlock():
            if p.poll() is None:
                p.stdin.write(b"UNLOCK TABLES;\n")
                p.stdin.close()
                p.wait(30)
        t.cleanup(unlock)
        return unlock


def holder_pid(rundir, name):
    try:
        with open(os.path.join(rundir, "hook-%s.pid" % name)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def mariadb_tests():
    if os.geteuid() != 0:
        t.skip(1, "MariaDB: hooks run as root; not root")
        return
    if not (which("mariadbd", "mysqld") and which("mariadb", "mysql") and
            which("mariadb-install-db", "mysql_install_db")):
        t.skip(1, "MariaDB: server not installed (apt-get install "
               "mariadb-server mariadb-client)")
        return
    d = os.path.join(tmp, "mariadb")
    os.mkdir(d)
    db = MariaDB(d)
    if not t.ok(db.start(), "MariaDB: a private server runs on %s" %
                db.sock):
        t.diag(db.sql("SELECT 1")[1])
        return
    rc, out = db.sql(
        "CREATE DATABASE fsfa; "
        "CREATE TABLE fsfa.t (x INT) ENGINE=InnoDB; "
        "CREATE TABLE fsfa.m (x INT) ENGINE=MyISAM; "
        "CREATE USER weak@localhost IDENTIFIED BY 'weak'; "
        "GRANT SELECT ON *.* TO weak@localhost")
    t.ok(rc == 0, "MariaDB: test tables and a user without RELOAD") or \
        t.diag(out)

    rundir = os.path.join(d, "run")
    conf = os.path.join(d, "mariadb.conf")
    name = "10-mariadb"
    hook = install_hook("mariadb.sample", name, conf)
    base = {"MYSQL_OPTS": "--no-defaults --socket=%s --user=root" %
            db.sock, "RUNDIR": rundir, "MAX_HOLD": "600",
            "LOCK_TIMEOUT": "20"}
    write_conf(conf, **base)
    pidfile = os.path.join(rundir, "hook-%s.pid" % name)

    # freeze: the hook returns, the lock stays.
    rc, out, secs = run_hook(hook, "freeze")
    t.eq(rc, 0, "mariadb freeze: exits 0")
    t.ok(secs < 10, "mariadb freeze: returns promptly (%.2f s)" % secs)
    t.ok(re.search(r"read lock held by session \d+", out),
         "mariadb freeze: says the lock is held") or t.diag(out)
    pid = holder_pid(rundir, name)
    t.ok(pid is not None and not gone(pid), "mariadb freeze: the background "
         "session outlives the hook (pid %s)" % pid)
    t.eq(len(db.holders() or []), 1, "mariadb freeze: the server lists the "
         "holding session")
    ok, out = db.write()
    t.ok(not ok and "1205" in out, "mariadb frozen: an InnoDB INSERT times "
         "out on the lock") or t.diag(out)
    ok, out = db.write("fsfa.m")
    t.ok(not ok and "1205" in out, "mariadb frozen: a MyISAM INSERT times "
         "out on the lock") or t.diag(out)
    rc, out = db.sql("SELECT COUNT(*) FROM fsfa.t")
    t.eq(rc, 0, "mariadb frozen: reads still work")

    # thaw: the lock goes, and is seen to go.
    rc, out, secs = run_hook(hook, "thaw")
    t.eq(rc, 0, "mariadb thaw: exits 0")
    t.ok("read lock released" in out, "mariadb thaw: says the lock is "
         "released") or t.diag(out)
    t.ok(pid is None or gone(pid), "mariadb thaw: the background client "
         "is gone")
    t.eq(db.holders(), [], "mariadb thaw: the session is gone from the "
         "server")
    t.ok(not os.path.exists(pidfile), "mariadb thaw: the pid file is "
         "removed")
    ok, out = db.write()
    t.ok(ok, "mariadb thawed: the INSERT succeeds") or t.diag(out)
    rc, out, _ = run_hook(hook, "thaw")
    t.ok(rc == 0 and "nothing to release" in out, "mariadb: a second thaw "
         "is harmless") or t.diag(out)

    # undo: the same thaw call, with FSFREEZE_UNDO.
    rc, out, _ = run_hook(hook, "freeze")
    t.eq(rc, 0, "mariadb undo: freeze exits 0")
    rc, out, _ = run_hook(hook, "thaw", undo="hook '20-app' failed")
    t.ok(rc == 0 and "undo: hook '20-app' failed" in out,
         "mariadb undo: thaw exits 0 and names the undo") or t.diag(out)
    ok, out = db.write()
    t.ok(ok, "mariadb undo: the lock is released") or t.diag(out)

    # A freeze while an earlier one's lock is recorded (a lost thaw).
    run_hook(hook, "freeze")
    first = holder_pid(rundir, name)
    rc, out, _ = run_hook(hook, "freeze")
    second = holder_pid(rundir, name)
    t.ok(rc == 0 and "earlier freeze" in out, "mariadb: a second freeze "
         "releases the earlier lock first") or t.diag(out)
    t.ok(first is not None and gone(first) and second is not None and
         not gone(second), "mariadb: ... and holds a new one")
    t.eq(len(db.holders() or []), 1, "mariadb: one holding session, not two")
    run_hook(hook, "thaw")
    t.ok(db.write()[0], "mariadb: writes work after its thaw")

    # MAX_HOLD: the lock ends by itself when no thaw comes.
    write_conf(conf, **dict(base, MAX_HOLD="3"))
    rc, out, _ = run_hook(hook, "freeze")
    t.eq(rc, 0, "mariadb MAX_HOLD=3: freeze exits 0")
    t.ok(not db.write()[0], "mariadb MAX_HOLD=3: writes blocked at first")
    pid = holder_pid(rundir, name)
    t.ok(pid is not None and wait_for(lambda: gone(pid), 10),
         "mariadb MAX_HOLD=3: the session ends by itself")
    t.ok(wait_for(lambda: db.write()[0], 10), "mariadb MAX_HOLD=3: writes "
         "work again without a thaw")
    rc, out, _ = run_hook(hook, "thaw")
    t.ok(rc == 0 and "already ended" in out, "mariadb MAX_HOLD=3: the late "
         "thaw exits 0 and says the lock had ended") or t.diag(out)

    # Lock refused: a user without the RELOAD privilege.
    write_conf(conf, **dict(base, MYSQL_OPTS="--no-defaults --socket=%s "
                            "--user=weak --password=weak" % db.sock))
    rc, out, _ = run_hook(hook, "freeze")
    t.eq(rc, 1, "mariadb without RELOAD: freeze exits 1 (the freeze fails)")
    t.ok("FLUSH TABLES WITH READ LOCK failed" in out and "RELOAD" in out,
         "mariadb without RELOAD: says why") or t.diag(out)
    t.ok(not os.path.exists(pidfile) and db.holders() == [],
         "mariadb without RELOAD: nothing left behind")

    # Lock not granted in time: another session holds a table lock.
    write_conf(conf, **dict(base, LOCK_TIMEOUT="1"))
    unlock = db.lock_table()
    rc, out, secs = run_hook(hook, "freeze")
    t.eq(rc, 1, "mariadb lock wait: freeze exits 1 after LOCK_TIMEOUT=1")
    t.ok("Lock wait timeout" in out, "mariadb lock wait: says why") or \
        t.diag(out)
    t.ok(secs < 10, "mariadb lock wait: gives up in time (%.2f s)" % secs)
    t.ok(not os.path.exists(pidfile) and db.holders() == [],
         "mariadb lock wait: nothing left behind")
    unlock()
    t.ok(db.write()[0], "mariadb lock wait: writes work afterwards")

    # The agent's timeout: SIGTERM to the hook's group while it waits.
    write_conf(conf, **base)
    unlock = db.lock_table()
    rc, out, _ = run_hook(hook, "freeze", sig_after=(
        20, lambda: len(db.holders() or []) == 1))
    t.ok(rc not in (0, None), "mariadb SIGTERM while waiting: the hook "
         "fails (status %s)" % rc)
    t.eq(db.holders(), [], "mariadb SIGTERM while waiting: the waiting "
         "FLUSH session is gone from the server")
    t.ok(not os.path.exists(pidfile), "mariadb SIGTERM while waiting: the "
         "pid file is removed")
    unlock()
    t.ok(db.write()[0], "mariadb SIGTERM while waiting: writes work "
         "afterwards")

    # Server not running: nothing to flush, not an error.
    write_conf(conf, **dict(base, MYSQL_OPTS="--no-defaults --socket=%s "
                            "--user=root" % os.path.join(d, "none.sock")))
    rc, out, _ = run_hook(hook, "freeze")
    t.ok(rc == 0 and "server not running" in out, "mariadb not running: "
         "freeze exits 0 and says so") or t.diag(out)
    rc, out, _ = run_hook(hook, "thaw")
    t.eq(rc, 0, "mariadb not running: thaw exits 0")


# ----------------------------------------------------------- PostgreSQL
def pg_bindir():
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs.sort(key=lambda p: int(p.split("/")[4]) if
              p.split("/")[4].isdigit() else 0)
    for p in reversed(dirs):
        if os.access(os.path.join(p, "initdb"), os.X_OK):
            return p
    p = which("initdb")
    return os.path.dirname(p) if p else None


def postgresql_tests():
    if os.geteuid() != 0:
        t.skip(1, "PostgreSQL: hooks run as root; not root")
        return
    bindir = pg_bindir()
    psql = which("psql")
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pw = None
    if not bindir or not psql or not which("pg_isready") or pw is None:
        t.skip(1, "PostgreSQL: server not installed (apt-get install "
               "postgresql)")
        return
    d = os.path.join(tmp, "pg")
    data = os.path.join(d, "data")
    sock = os.path.join(d, "sock")
    port = "54329"
    os.chmod(tmp, 0o711)
    os.mkdir(d)
    os.chmod(d, 0o711)
    for p in (data, sock):
        os.mkdir(p)
        os.chown(p, pw.pw_uid, pw.pw_gid)
    asuser = ["runuser", "-u", "postgres", "--"]
    if run(asuser + ["test", "-w", data])[0] != 0:
        t.skip(1, "PostgreSQL: user postgres cannot reach %s (TMPDIR?)" % d)
        return
    rc, out = run(asuser + [os.path.join(bindir, "initdb"), "-D", data,
                            "-A", "trust", "--no-sync"])
    if not t.ok(rc == 0, "PostgreSQL: initdb of a private cluster"):
        t.diag(out)
        return
    pg_ctl = os.path.join(bindir, "pg_ctl")
    rc, out = run(asuser + [pg_ctl, "-D", data, "-l",
                            os.path.join(data, "server.log"), "-w", "-t",
                            "60", "-o", "-c port=%s -c "
                            "unix_socket_directories=%s -c "
                            "listen_addresses= -c fsync=off" % (port, sock),
                            "start"])
    t.cleanup(lambda: run(asuser + [pg_ctl, "-D", data, "-m", "immediate",
                                    "-w", "stop"]))
    if not t.ok(rc == 0, "PostgreSQL: a private server runs on %s" % sock):
        t.diag(out)
        return

    def lsn():
        rc, out = run([psql, "-X", "-A", "-t", "-h", sock, "-p", port, "-U",
                       "postgres", "-c",
                       "SELECT checkpoint_lsn FROM pg_control_checkpoint()"])
        m = re.match(r"^([0-9A-F]+)/([0-9A-F]+)$", out.strip())
        if rc != 0 or not m:
            t.diag("checkpoint_lsn: %s" % out)
            return None
        return int(m.group(1), 16) << 32 | int(m.group(2), 16)

    conf = os.path.join(d, "postgresql.conf")
    hook = install_hook("postgresql.sample", "20-postgresql", conf)
    target = "%s:%s" % (sock, port)
    write_conf(conf, PG_TARGETS=target)

    before = lsn()
    rc, out, _ = run_hook(hook, "freeze")
    after = lsn()
    t.eq(rc, 0, "postgresql freeze: exits 0")
    t.ok("%s: checkpoint done" % target in out, "postgresql freeze: says "
         "the checkpoint is done") or t.diag(out)
    t.ok(before is not None and after is not None and after > before,
         "postgresql freeze: a new checkpoint (redo LSN %s -> %s)" %
         (before, after))
    rc, out, _ = run_hook(hook, "thaw")
    t.eq(rc, 0, "postgresql thaw: exits 0")
    t.eq(lsn(), after, "postgresql thaw: no checkpoint on thaw")

    down = "%s:54000" % sock
    write_conf(conf, PG_TARGETS="%s %s" % (down, target))
    rc, out, _ = run_hook(hook, "freeze")
    third = lsn()
    t.ok(rc == 0 and "%s: server not running" % down in out,
         "postgresql: a server that is not running is skipped, exit 0") or \
        t.diag(out)
    t.ok(third is not None and after is not None and third > after,
         "postgresql: ... and the running one still gets its checkpoint")

    write_conf(conf, PG_TARGETS=target, PG_OPTS="-U nosuchrole")
    rc, out, _ = run_hook(hook, "freeze")
    t.ok(rc == 1 and "CHECKPOINT failed" in out, "postgresql: a failing "
         "CHECKPOINT fails the freeze") or t.diag(out)
    write_conf(conf, PG_TARGETS=target, PG_OPTS="-U nosuchrole",
               PG_STRICT="no")
    rc, out, _ = run_hook(hook, "freeze")
    t.ok(rc == 0 and "CHECKPOINT failed" in out, "postgresql PG_STRICT=no: "
         "the failure is reported, the freeze goes on") or t.diag(out)


# A settings file that others may write is refused, not sourced.
conf = os.path.join(tmp, "loose.conf")
hook = install_hook("postgresql.sample", "30-loose", conf)
with open(conf, "w") as f:
    f.write("PG_TARGETS=/nonexistent:1\n")
os.chmod(conf, 0o666)
rc, out, _ = run_hook(hook, "freeze")
t.ok(rc == 1 and "not read" in out, "a group/world-writable settings file "
     "fails the hook instead of being read") or t.diag(out)

mariadb_tests()
postgresql_tests()
t.done()
