# SPDX-License-Identifier: ISC
"""The demo behind t/vm/demo.sh: one freeze/thaw cycle in a real guest.

Boots the t9 guest with the given agent binary (started by the guest's init
as the shipped service starts it) and the shipped hooks.d/template.sample
installed as a hook, then freezes and thaws /data from the host. Shows what
the host sent, what the agent answered, what happened inside the guest and
the agent's syslog lines; ends with "DEMO RESULT: PASS" or "FAIL".
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vmrun  # noqa: E402

TOP = os.path.dirname(os.path.dirname(HERE))
CONF = """\
[agent]
state_dir = /run/fsfreeze-agent

[hooks]
dir = /etc/fsfreeze-agent/hooks.d
timeout = 30s

[freeze]
max_frozen = 60s
"""
T0 = time.monotonic()
fails = []


def say(msg=""):
    print("[%5.1f s] %s" % (time.monotonic() - T0, msg) if msg else "",
          flush=True)


def check(ok, what):
    say("%s  %s" % ("ok  " if ok else "FAIL", what))
    if not ok:
        fails.append(what)
    return ok


def main():
    agent = sys.argv[1]
    miss = vmrun.missing_tools()
    if miss:
        print("this demo needs: " + ", ".join(miss))
        print("Debian: apt-get install qemu-system-x86 busybox-static "
              "e2fsprogs kmod")
        print("DEMO RESULT: FAIL (missing tools)")
        return 1
    work = tempfile.mkdtemp(prefix="fsfa-demo-")
    vm = None
    try:
        say("fetching the guest kernel (cached in %s)" % os.environ.get(
            "FSFA_VM_CACHE", "/var/tmp/fsfreeze-agent-vm"))
        kdir = vmrun.fetch_kernel()
        with open(os.path.join(TOP, "hooks.d", "template.sample"), "rb") as f:
            hook = f.read()
        initrd = os.path.join(work, "initrd.gz")
        vmrun.build_initrd(
            initrd, kdir, agent,
            "/usr/sbin/fsfreeze-agent -c /etc/fsfreeze-agent.conf", CONF,
            disks=("data",), hooks=[("50-template", hook)])
        data = vmrun.make_disk(os.path.join(work, "data.img"), "data")
        vm = vmrun.VM(work, kdir, initrd, [(data, "raw")])
        say("booting the guest (%s, accel %s): kernel %s, busybox, the "
            "agent %s" % ("QEMU", vm.accel, os.path.basename(kdir), agent))
        vm.start()
        a = vm.agent()
        a.sync(timeout=90, attempt=2.0)
        say("guest up: the agent answered %.1f s after QEMU started"
            % (time.monotonic() - vm.t_start))
        a.echo = lambda s: say("  " + s)
        a.sync()
        sh = vm.shell()
        pid = sh.out("pidof fsfreeze-agent").strip()
        say("inside the guest, init runs: " + sh.out(
            "tr '\\0' ' ' </proc/%s/cmdline" % pid).strip())
        say("hooks installed: " + " ".join(sh.out(
            "ls /etc/fsfreeze-agent/hooks.d").split()))
        say()
        say("--- host: ping and status")
        check(a.ret("guest-ping") == {}, "guest-ping answered")
        check(a.ret("guest-fsfreeze-status") == "thawed", "status thawed")
        say()
        say("--- host: freeze")
        t0 = time.monotonic()
        n = a.ret("guest-fsfreeze-freeze", timeout=60)
        check(isinstance(n, int) and n >= 1, "froze %r filesystem(s) in "
              "%.0f ms" % (n, (time.monotonic() - t0) * 1000))
        check(a.ret("guest-fsfreeze-status") == "frozen", "status frozen")
        out = sh.out("fsfreeze --freeze /data 2>&1 && "
                     "fsfreeze --unfreeze /data")
        check("busy" in out.lower(), "guest: a FIFREEZE probe on /data says "
              "it is frozen (EBUSY)")
        sh.run("rm -f /run/w; setsid sh -c 'echo demo >>/data/demo && touch "
               "/run/w' </dev/null >/dev/null 2>&1 &")
        say("guest: started 'echo demo >> /data/demo'; holding the freeze "
            "2 s")
        time.sleep(2)
        check(sh.run("test -e /run/w")[0] != 0, "guest: the write is still "
              "blocked")
        say()
        say("--- host: thaw")
        t0 = time.monotonic()
        m = a.ret("guest-fsfreeze-thaw", timeout=60)
        check(m == n, "thawed %r filesystem(s) in %.0f ms"
              % (m, (time.monotonic() - t0) * 1000))
        ok = False
        for _ in range(50):
            if sh.run("test -e /run/w")[0] == 0:
                ok = True
                break
            time.sleep(0.05)
        check(ok, "guest: the blocked write completed after the thaw")
        time.sleep(0.3)  # the tick after the gap
        gap = sh.out("awk 'NR > 1 { d = $1 - p; if (d > m) m = d } "
                     "{ p = $1 } END { print m + 0 }' /data/ticks").strip()
        check(float(gap or 0) >= 1.8, "guest: the 0.1 s ticker on /data "
              "shows a %s s gap" % gap)
        check(a.ret("guest-fsfreeze-status") == "thawed", "status thawed")
        check(not a.bad_lines, "every line the agent wrote was valid JSON")
        say()
        say("--- the agent's syslog lines inside the guest (/run/messages)")
        for line in sh.out("grep 'fsfreeze-agent\\[' /run/messages").splitlines():
            print("    " + line)
        say()
        a.close()
        t0 = time.monotonic()
        check(vm.poweroff(sh), "guest powered off (%.1f s)"
              % (time.monotonic() - t0))
        rc, _ = vmrun.fsck(data)
        check(rc == 0, "data disk passes e2fsck -fn")
    except Exception as e:  # noqa: BLE001 - the demo reports, then fails
        check(False, "%s: %s" % (type(e).__name__, e))
        if vm is not None:
            print(vm.console_tail(20))
    finally:
        if vm is not None:
            vm.kill()
        shutil.rmtree(work, ignore_errors=True)
    print()
    if fails:
        print("DEMO RESULT: FAIL (%d check(s) failed: %s)"
              % (len(fails), "; ".join(fails)))
        return 1
    print("DEMO RESULT: PASS (%.0f s)" % (time.monotonic() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
