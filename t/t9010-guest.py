# SPDX-License-Identifier: ISC
"""t9010: the agent built from this tree in a real guest, over virtio-serial.

One QEMU guest (TCG unless KVM really works) boots a busybox initramfs whose
init starts the agent as the shipped service does,
"fsfreeze-agent -c /etc/fsfreeze-agent.conf" (channel and port left at their
defaults), and respawns it. The host talks to it through QEMU's socket for
the port org.qemu.guest_agent.0 and looks inside the guest through a root
shell on a second port. Every freeze happens inside the guest, on its own
disks /data and /data2 (image files in this test's directory).

Environment: AGENT (the binary), FSFA_VM_CACHE (kernel cache, default
/var/tmp/fsfreeze-agent-vm), FSFA_VM_ACCEL (auto|tcg|kvm),
FSFA_VM_AGENT=qemu-ga (run Debian's qemu-ga in the guest instead, to check
the rig itself: the checks for what qemu-ga gets wrong then fail),
FSFA_VM_KEEP=1 (keep the directory), FSFA_SKIP_GUEST=REASON (skip).
"""

import atexit
import os
import re
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "vm"))
from agenttest import TAP  # noqa: E402
import vmrun  # noqa: E402
from qgaclient import Timeout  # noqa: E402

# What the agent's error replies must say (protocol.md 6.12: qemu-ga's text
# first, then the hook's name).
FAILED_HOOK_RE = r"failed with status 3.*30-ctl|30-ctl.*failed with status 3"
HUNG_HOOK_RE = r"30-ctl.*(timed out|timeout)|(timed out|timeout).*30-ctl"
# The thaw after the guest thawed itself at [freeze] max_frozen.
AUTOTHAW_RE = r"(?i)(thawed (itself|automatically|on its own)|auto-?thaw|" \
    r"max_frozen)"
FROZEN_RE = r"has been disabled: the agent is in frozen state"

COMMANDS = {"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info",
            "guest-fsfreeze-status", "guest-fsfreeze-freeze",
            "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw"}
HOOK_TIMEOUT = 3.0
KILL_GRACE = 1.0
HOLD = 2.0            # seconds /data stays frozen while a write waits
AUTOTHAW = 3.0        # [freeze] max_frozen for the auto-thaw check
RECONNECT_MAX = 1.25  # "answers within 1 s", plus TCG's round trip
# CPU time an idle agent may use in 5 s without a host (schedstat): a 1 s
# retry timer costs about a millisecond under TCG, a 100 ms poll (qemu-ga)
# tens of them, a spin all 5000.
CPU_IDLE_MS = 10

CONF = """\
# The t9010 guest. [channel] keeps its defaults: virtio-serial on
# /dev/virtio-ports/org.qemu.guest_agent.0. state_dir is the packaged
# default, spelled out for builds configured without --runstatedir=/run.
[agent]
state_dir = /run/fsfreeze-agent

[hooks]
dir = /etc/fsfreeze-agent/hooks.d
timeout = %ds
kill_grace = %ds

[freeze]
exclude = /data2
max_frozen = %s
"""

t = TAP()
# Cleanups (QEMU, the domain, the daemons, /dev/kvm) run on any exit: an
# exception or a SIGTERM from the harness as well as done() and bail().
atexit.register(t.run_cleanups)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
if os.environ.get("FSFA_VM_AGENT") == "qemu-ga":
    AGENT = "/usr/sbin/qemu-ga"
    AGENT_CMD = ("/usr/sbin/qemu-ga -m virtio-serial -p "
                 "/dev/virtio-ports/org.qemu.guest_agent.0 "
                 "-F/etc/qemu/fsfreeze-hook -t /run")
else:
    AGENT = os.environ.get("AGENT") or ""
    AGENT_CMD = "/usr/sbin/fsfreeze-agent -c /etc/fsfreeze-agent.conf"
NAME = os.path.basename(AGENT_CMD.split()[0])

if os.environ.get("FSFA_SKIP_GUEST"):
    TAP.skip_all(os.environ["FSFA_SKIP_GUEST"])
miss = vmrun.missing_tools()
if miss:
    TAP.skip_all("needs " + ", ".join(miss))
if not AGENT or not os.access(AGENT, os.X_OK):
    TAP.skip_all("no agent binary (AGENT=%r)" % AGENT)

T0 = time.monotonic()
work = tempfile.mkdtemp(prefix="fsfa-t9010-")
if os.environ.get("FSFA_VM_KEEP") != "1":
    t.cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
else:
    t.diag("keeping " + work)

try:
    kdir = vmrun.fetch_kernel()
except RuntimeError as e:
    t.bail(str(e))
initrd = os.path.join(work, "initrd.gz")
vmrun.build_initrd(initrd, kdir, AGENT, AGENT_CMD,
                   CONF % (HOOK_TIMEOUT, KILL_GRACE, "60s"),
                   disks=("data", "data2"))
data = vmrun.make_disk(os.path.join(work, "data.img"), "data", "64M")
data2 = vmrun.make_disk(os.path.join(work, "data2.img"), "data2", "32M")
vm = vmrun.VM(work, kdir, initrd, [(data, "raw"), (data2, "raw")])
t.cleanup(vm.kill)
conns = []


def connect():
    c = vm.agent(timeout=10)
    conns.append(c)
    return c


def show_failure():
    """What a reader of a failed run needs: traffic, console, syslog."""
    for c in conns[-1:]:
        for _, way, raw in c.transcript[-8:]:
            t.diag("%s %r" % (way, raw[:300]))
    t.diag("console:")
    t.diag(vm.console_tail(15))
    try:
        t.diag("guest syslog:")
        t.diag(sh.out("tail -n 15 /run/messages", 5))
    except Exception:  # noqa: BLE001 - only diagnostics
        pass


def check(cond, name):
    if not t.ok(cond, name):
        show_failure()
    return cond


# --- guest-side helpers ------------------------------------------------


def agent_pid():
    # Not its freeze workers: forks of the same binary, named fsfa-worker.
    out = sh.out("for p in $(pidof %s); do [ \"$(cat /proc/$p/comm)\" = %s ] "
                 "&& echo $p; done" % (NAME, NAME)).split()
    return int(out[0]) if len(out) == 1 else None


def new_agent_pid(old, timeout=15.0):
    """Wait for init to start another agent than pid old."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = agent_pid()
        if pid is not None and pid != old:
            return pid
        time.sleep(0.1)
    return None


def frozen(mp):
    """The kernel's view, by a FIFREEZE in the guest: a frozen file system
    answers EBUSY; a thawed one freezes, and is thawed again at once."""
    out = sh.out("fsfreeze --freeze %s 2>&1 && fsfreeze --unfreeze %s && "
                 "echo THAWED" % (mp, mp))
    if out.strip() == "THAWED":
        return False
    if "busy" in out.lower():
        return True
    raise RuntimeError("FIFREEZE probe on %s: %s" % (mp, out.strip()))


def bg_write(mp, tag):
    """Start a write to mp in the background; done(tag) says if it ended."""
    sh.run("rm -f /run/w-%s; setsid sh -c 'echo %s >>%s/probe-%s && "
           "touch /run/w-%s' </dev/null >/dev/null 2>&1 &"
           % (tag, tag, mp, tag, tag))


def done(tag):
    return sh.run("test -e /run/w-%s" % tag)[0] == 0


def wait_done(tag, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if done(tag):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def hooks_log():
    return [x for x in sh.out("cat /run/hooks.log 2>/dev/null").splitlines()
            if x]


def reset_hooks(ctl=None):
    if ctl:
        sh.run("echo %s >/run/hookctl; : >/run/hooks.log" % ctl)
    else:
        sh.run("rm -f /run/hookctl; : >/run/hooks.log")


FREEZE_HOOKS = ["10-a freeze", "20-b freeze", "30-ctl freeze"]
THAW_HOOKS = ["30-ctl thaw", "20-b thaw", "10-a thaw"]


def is_error(r, regex=None):
    if not (isinstance(r, dict) and isinstance(r.get("error"), dict)):
        return False
    return regex is None or re.search(regex, r["error"].get("desc", ""))


# --- boot --------------------------------------------------------------

vm.start()
t.diag("QEMU %s, accel %s" % (" ".join(vm.command()[:1]), vm.accel))
try:
    a = connect()
    boot = a.sync(timeout=90)
    t.ok(True, "guest booted; the agent answers guest-sync-delimited "
         "(%.1f s after QEMU started)" % (time.monotonic() - vm.t_start))
except (Timeout, OSError) as e:
    t.ok(False, "guest booted; the agent answers guest-sync-delimited")
    t.diag(str(e))
    t.diag(vm.console_tail(40))
    t.bail("no agent in the guest")
sh = vm.shell()
alive = True


def phase(name, fn):
    """Run one group of checks; an exception is one failure, then the agent
    must answer a sync again or the rest is given up."""
    global alive, a
    if not alive:
        t.ok(False, "%s: not run, the agent stopped answering" % name)
        return
    t0 = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - reported as a failure
        t.ok(False, "%s: %s: %s" % (name, type(e).__name__, e))
        show_failure()
        try:
            # A hook left hanging (an agent without hook timeouts) keeps the
            # agent from answering; a frozen /data keeps the shell waiting.
            sh.start("rm -f /run/hookctl; kill $(cat /run/hang.pid)")
            a.close()
            a = connect()
            a.sync(timeout=20)
            a.ret("guest-fsfreeze-thaw", timeout=20)
            sh.run("true", 20)
        except Exception as e2:  # noqa: BLE001
            t.diag("agent gone: %s" % e2)
            alive = False
    t.diag("%s: %.1f s" % (name, time.monotonic() - t0))


def basics():
    pid = agent_pid()
    st = sh.out("tr '\\0' ' ' </proc/%d/cmdline; echo; "
                "awk '/^PPid/ { print $2 }' /proc/%d/status; "
                "ls -l /proc/%d/fd | grep -c \"$(readlink -f "
                "/dev/virtio-ports/org.qemu.guest_agent.0)\"" % (pid, pid, pid))
    cmdline, ppid, nport = (st.splitlines() + ["", "", ""])[:3]
    t.eq(cmdline.strip(), AGENT_CMD, "init started the agent with the "
         "shipped command line")
    t.eq(ppid.strip(), "1", "the agent is init's child (respawn)")
    t.ok(nport.strip() == "1", "the agent holds the port it found through "
         "/dev/virtio-ports/org.qemu.guest_agent.0 open")
    if NAME == "fsfreeze-agent":
        rc, out = sh.run("fsfreeze-agent -c /etc/fsfreeze-agent.conf "
                         "--check")
        check(rc == 0 and re.search(r"freeze +/data ", out) and
              not re.search(r"freeze +/data2 ", out),
              "fsfreeze-agent --check in the guest: the conf is valid and "
              "plans /data, not /data2")
        t.diag(out)
    check(a.ret("guest-ping") == {}, "guest-ping")
    r = a.ret("guest-info")
    names = {c.get("name") for c in r.get("supported_commands", [])
             if c.get("enabled")} if isinstance(r, dict) else set()
    if not check(COMMANDS <= names, "guest-info lists the eight commands, "
                 "enabled"):
        t.diag(repr(r)[:500])
    check(a.ret("guest-fsfreeze-status") == "thawed", "status thawed")
    st = sh.out("grep -c ' /data ext4 ' /proc/mounts; "
                "grep -c ' /data2 ext4 ' /proc/mounts; "
                "test -s /data/ticks && echo ticking")
    check(st.split() == ["1", "1", "ticking"],
          "the guest has /data and /data2 mounted and the ticker runs")


def freeze_thaw():
    reset_hooks()
    n = a.ret("guest-fsfreeze-freeze", timeout=30)
    check(n == 1, "guest-fsfreeze-freeze froze 1 file system (/data; "
          "/data2 is excluded): %r" % (n,))
    check(hooks_log() == FREEZE_HOOKS, "freeze hooks ran in name order: %r"
          % hooks_log())
    check(a.ret("guest-fsfreeze-status") == "frozen", "status frozen")
    check(a.ret("guest-ping") == {}, "guest-ping answered while frozen")
    check(frozen("/data"), "/data is frozen (FIFREEZE probe: EBUSY)")
    check(not frozen("/data2"), "/data2 ([freeze] exclude) is not frozen "
          "(FIFREEZE probe succeeds)")
    bg_write("/data2", "other")
    check(wait_done("other", 5) is not None, "a write to /data2 completes "
          "while /data is frozen")
    r = a.request("guest-fsfreeze-freeze")
    check(is_error(r, FROZEN_RE) and r["error"]["class"] ==
          "CommandNotFound", "a second freeze is refused like qemu-ga's: %r"
          % (r,))
    bg_write("/data", "hold")
    time.sleep(HOLD)
    check(not done("hold"), "a write to /data blocks while frozen "
          "(%.0f s)" % HOLD)
    t0 = time.monotonic()
    m = a.ret("guest-fsfreeze-thaw", timeout=30)
    t_thaw = time.monotonic() - t0
    check(m == 1, "guest-fsfreeze-thaw thawed 1: %r (%.0f ms)"
          % (m, t_thaw * 1000))
    dt = wait_done("hold", 5)
    check(dt is not None and dt < 2, "the blocked write completed right "
          "after the thaw (%s)" % ("%.2f s" % dt if dt is not None
                                   else "not in 5 s"))
    check(hooks_log() == FREEZE_HOOKS + THAW_HOOKS,
          "thaw hooks ran in reverse order: %r" % hooks_log()[3:])
    check(a.ret("guest-fsfreeze-status") == "thawed", "status thawed")
    check(not frozen("/data"), "/data is thawed (FIFREEZE probe)")
    time.sleep(0.3)
    gap = sh.out("awk 'NR > 1 { d = $1 - p; if (d > m) m = d } { p = $1 } "
                 "END { print m + 0 }' /data/ticks")
    check(float(gap) >= HOLD * 0.9, "the ticker shows the frozen window: "
          "longest gap %.2f s" % float(gap))
    lines = sh.out("grep -c '%s' /run/messages" % NAME).strip()
    check(lines.isdigit() and int(lines) > 0, "the agent logs to syslog "
          "(/dev/log): %s lines" % lines)
    t.diag(sh.out("grep '%s' /run/messages | tail -n 12" % NAME))


def freeze_list():
    reset_hooks()
    n = a.ret("guest-fsfreeze-freeze-list", {"mountpoints": ["/data"]})
    st = a.ret("guest-fsfreeze-status")
    fr = frozen("/data")
    m = a.ret("guest-fsfreeze-thaw")
    check((n, st, fr, m) == (1, "frozen", True, 1),
          "freeze-list [/data]: froze %r, status %r, kernel frozen %r, "
          "thawed %r" % (n, st, fr, m))
    check(hooks_log() == FREEZE_HOOKS + THAW_HOOKS, "freeze-list ran the "
          "hooks both ways")
    reset_hooks()
    n = a.ret("guest-fsfreeze-freeze-list", {"mountpoints": ["/data2"]})
    check(n == 0 and a.ret("guest-fsfreeze-status") == "thawed" and
          not frozen("/data2"), "freeze-list [/data2] (excluded) freezes "
          "nothing: %r" % (n,))
    check(hooks_log() == [], "... and runs no hook (nothing to freeze): %r"
          % hooks_log())
    check(a.ret("guest-fsfreeze-thaw") == 0 and hooks_log() == [],
          "thaw while thawed returns 0 and runs no hook")


def reconnect():
    global a
    a.close()
    pid = agent_pid()
    # Proxmox: a new connection per command, sync and command in one write,
    # no 0xFF, then the connection is closed.
    worst = 0.0
    ok = True
    for i in range(5):
        c = connect()
        sid = 4242000 + i
        c.send('{"arguments":{"id":%d},"execute":"guest-sync-delimited"}\n'
               '{"arguments":{},"execute":"guest-ping"}\n' % sid)
        c._sync_ids.add(sid)
        while True:
            line, v = c.read_line(10)
            if isinstance(v, dict) and v.get("return") == sid:
                break
        dt = time.monotonic() - c.t_connect
        ok = ok and line.startswith(b"\xff") and c.reply(5) == {
            "return": {}}
        worst = max(worst, dt)
        c.close()
    check(ok and worst < RECONNECT_MAX, "5 Proxmox-style connections "
          "(sync-delimited + ping in one write, then close) answered; "
          "slowest %.2f s" % worst)

    def cpu():
        """(utime + stime in clock ticks, time on a CPU in ns)"""
        out = sh.out("cat /proc/%d/stat /proc/%d/schedstat" % (pid, pid))
        stat, sched = out.strip().rsplit("\n", 1)
        f = stat.rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12]), int(sched.split()[0])

    time.sleep(0.5)
    c0 = cpu()
    time.sleep(5)
    c1 = cpu()
    ticks, ms = c1[0] - c0[0], (c1[1] - c0[1]) / 1e6
    check(ticks <= 2 and ms < CPU_IDLE_MS, "no CPU used while no host is "
          "connected: %d ticks, %.1f ms on a CPU in 5 s" % (ticks, ms))
    a = connect()
    dt = a.sync(timeout=10)
    check(dt < RECONNECT_MAX, "after 5 s without a host, a new connection "
          "is answered in %.2f s" % dt)
    check(agent_pid() == pid, "the same agent process throughout (pid %d)"
          % pid)


def bad_hooks():
    pid = agent_pid()
    reset_hooks("fail")
    r = a.request("guest-fsfreeze-freeze", timeout=30)
    check(is_error(r, FAILED_HOOK_RE), "a failing freeze hook: the host "
          "gets the error: %r" % (r,))
    check(a.ret("guest-fsfreeze-status") == "thawed" and
          not frozen("/data"), "... and nothing is frozen")
    check(hooks_log() == FREEZE_HOOKS[:2] + ["30-ctl freeze fail"] +
          THAW_HOOKS[1:], "... and the hooks that had frozen were undone, "
          "newest first: %r" % hooks_log())
    reset_hooks("hang")
    t0 = time.monotonic()
    r = a.request("guest-fsfreeze-freeze",
                  timeout=HOOK_TIMEOUT + KILL_GRACE + 10)
    dt = time.monotonic() - t0
    check(is_error(r, HUNG_HOOK_RE), "a hanging freeze hook: the host gets "
          "the error: %r" % (r,))
    check(HOOK_TIMEOUT - 0.5 < dt < HOOK_TIMEOUT + KILL_GRACE + 3,
          "... after the hook timeout (%.1f s; timeout %.0f s)"
          % (dt, HOOK_TIMEOUT))
    hp = sh.out("cat /run/hang.pid 2>/dev/null").strip()
    check(hp.isdigit() and sh.run("kill -0 %s" % hp)[0] != 0,
          "... the hung hook was killed")
    check(a.ret("guest-fsfreeze-status") == "thawed" and
          not frozen("/data"), "... and nothing is frozen")
    check(hooks_log() == FREEZE_HOOKS[:2] + ["30-ctl freeze hang"] +
          THAW_HOOKS[1:], "... and the hooks that had frozen were undone: "
          "%r" % hooks_log())
    reset_hooks()
    check(agent_pid() == pid, "the same agent process throughout")


def sigkill():
    global a
    reset_hooks()
    n = a.ret("guest-fsfreeze-freeze", timeout=30)
    check(n == 1, "freeze before the SIGKILL: %r" % (n,))
    pid = agent_pid()
    sh.run("kill -KILL %d" % pid)
    new = new_agent_pid(pid)
    check(new is not None, "init started the agent again after SIGKILL "
          "(pid %s -> %s)" % (pid, new))
    a.sync(timeout=15)
    check(a.ret("guest-fsfreeze-status") == "frozen", "the new agent "
          "adopted the state: status frozen")
    check(frozen("/data"), "/data stayed frozen")
    m = a.ret("guest-fsfreeze-thaw", timeout=30)
    check(m == 1, "thaw returns the recorded count: %r" % (m,))
    check(not frozen("/data") and a.ret("guest-fsfreeze-status") ==
          "thawed", "/data thawed, status thawed")
    check(hooks_log() == FREEZE_HOOKS + THAW_HOOKS, "the adopted freeze's "
          "thaw hooks ran: %r" % hooks_log()[3:])


def autothaw():
    global a
    sh.put("/etc/fsfreeze-agent.conf",
           CONF % (HOOK_TIMEOUT, KILL_GRACE, "%.0fs" % AUTOTHAW))
    pid = agent_pid()
    sh.run("kill -TERM %d" % pid)
    new = new_agent_pid(pid)
    check(new is not None, "SIGTERM: init started the agent again with "
          "max_frozen = %.0fs" % AUTOTHAW)
    a.sync(timeout=15)
    reset_hooks()
    n = a.ret("guest-fsfreeze-freeze", timeout=30)
    t0 = time.monotonic()
    check(n == 1, "freeze, and the host never thaws: %r" % (n,))
    bg_write("/data", "auto")
    dt = wait_done("auto", AUTOTHAW + 10)
    if dt is not None:
        dt = time.monotonic() - t0  # from the freeze reply
    check(dt is not None and AUTOTHAW - 0.5 < dt < AUTOTHAW + 3,
          "the guest thawed itself at max_frozen: the write completed %s "
          "after the freeze" % ("%.1f s" % dt if dt else "never"))
    check(a.ret("guest-fsfreeze-status") == "thawed", "status thawed after "
          "the auto-thaw")
    check(hooks_log() == FREEZE_HOOKS + THAW_HOOKS, "the auto-thaw ran the "
          "thaw hooks: %r" % hooks_log()[3:])
    r = a.request("guest-fsfreeze-thaw")
    check(is_error(r, AUTOTHAW_RE), "the host's late thaw gets an error "
          "saying the guest thawed itself: %r" % (r,))
    t.diag(sh.out("grep '%s' /run/messages | tail -n 6" % NAME))


phase("basics", basics)
phase("freeze and thaw", freeze_thaw)
phase("freeze-list", freeze_list)
phase("host away and back", reconnect)
phase("failing and hanging hooks", bad_hooks)
phase("SIGKILL while frozen", sigkill)
phase("auto-thaw", autothaw)

bad = [b for c in conns for b in c.bad_lines]
if not t.ok(not bad, "every line the agent wrote was one JSON object with "
            "return or error, 0xFF only before sync-delimited replies "
            "(%d lines)" % sum(1 for c in conns for x in c.transcript
                               if x[1] == "<<")):
    for why, line in bad[:10]:
        t.diag("%s: %r" % (why, line[:200]))
for c in conns:
    c.close()

t0 = time.monotonic()
clean = vm.poweroff(sh)
t.ok(clean, "the guest powered off cleanly (%.1f s)"
     % (time.monotonic() - t0))
for img in (data, data2):
    rc, out = vmrun.fsck(img)
    if not t.ok(rc == 0, "%s passes e2fsck -fn" % os.path.basename(img)):
        t.diag(out)
t.diag("t9010 took %.0f s" % (time.monotonic() - T0))
t.done()
