#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""The freeze engine through the built binary, on real loop filesystems.

Root only. The agent is restricted to the test's own mounts by
[freeze] include and runs under t/fsguard.so; frozen state is read from
the kernel with a FIFREEZE probe, never by writing.
"""

import json
import re
import os
import subprocess
import time

from agenttest import TAP
import loopfs
from freezetest import Rig

t = TAP()
rig = Rig(t, fstypes=("ext4", "xfs", "btrfs"))
ext4, xfs, btrfs = rig.fs

# A bind mount of ext4 and a btrfs subvolume: each superblock freezes once.
bind = os.path.join(rig.mnt, "ext4-bind")
os.mkdir(bind)
subprocess.run(["mount", "--bind", ext4.mount_point, bind], check=True)
t.cleanup(lambda: subprocess.run(["umount", "-l", bind]))
subprocess.run(["btrfs", "-q", "subvolume", "create",
                os.path.join(btrfs.mount_point, "sub")], check=True,
               stdout=subprocess.DEVNULL)
subvol = os.path.join(rig.mnt, "btrfs-sub")
os.mkdir(subvol)
with open("/proc/self/mounts") as f:
    btrfs_dev = [l.split()[0] for l in f if l.split()[1] == btrfs.mount_point][0]
subprocess.run(["mount", "-o", "subvol=sub", btrfs_dev, subvol], check=True)
t.cleanup(lambda: subprocess.run(["umount", "-l", subvol]))

rig.hook(0, "10-a")
rig.hook(1, "20-b")
rig.hook(0, "30-c")
rig.hook(1, "05-skipped.sample")
a = rig.start()


def req(s, timeout=20):
    return a.request(s if isinstance(s, str) else json.dumps(s), timeout)


# --- a full cycle
r = req('{"execute":"guest-fsfreeze-freeze"}')
t.eq(r, {"return": 3}, "freeze: 3 superblocks (bind mount and subvolume once)")
t.eq(rig.frozen(), [True, True, True], "the kernel says all three are frozen")
t.eq(rig.records(), ["10-a freeze", "20-b freeze", "30-c freeze"],
     "freeze hooks in byte order across both directories")
t.eq(req('{"execute":"guest-fsfreeze-status"}'), {"return": "frozen"}, "status frozen")

# --- the frozen allow-list
t.eq(req('{"execute":"guest-fsfreeze-freeze"}'),
     {"error": {"class": "CommandNotFound", "desc":
                "Command guest-fsfreeze-freeze has been disabled: the agent is in frozen state"}},
     "a second freeze is refused as qemu-ga refuses it")
t.eq(req('{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[]}}')
     ["error"]["class"], "CommandNotFound", "freeze-list disabled while frozen")
info = req('{"execute":"guest-info"}')["return"]["supported_commands"]
enabled = sorted(c["name"] for c in info if c["enabled"])
t.ok("guest-fsfreeze-freeze" not in enabled and "guest-fsfreeze-freeze-list" not in enabled
     and {"guest-ping", "guest-sync", "guest-sync-delimited", "guest-info",
          "guest-fsfreeze-status", "guest-fsfreeze-thaw"} <= set(enabled),
     "guest-info shows the allow-list enabled and the freezes disabled")
t.eq(req('{"execute":"guest-ping"}'), {"return": {}}, "ping answers while frozen")
rep = req('{"execute":"__io.github.fsfreeze-agent_report"}')["return"]
t.eq(rep["state"], "frozen", "report: state frozen")
t.eq(sorted(f["mountpoint"] for f in rep["last"]["filesystems"] if f["result"] == "frozen"),
     sorted([ext4.mount_point, xfs.mount_point, btrfs.mount_point]),
     "report: the frozen filesystems")
t.eq([(h["name"], h["phase"], h["ok"]) for h in rep["last"]["hooks"]],
     [("10-a", "freeze", True), ("20-b", "freeze", True), ("30-c", "freeze", True)],
     "report: the hooks with phase and result")

r = req('{"execute":"guest-fsfreeze-thaw"}')
t.eq(r, {"return": 3}, "thaw returns the number we froze")
t.eq(rig.frozen(), [False, False, False], "all thawed in the kernel")
t.eq(rig.records(), ["30-c thaw", "20-b thaw", "10-a thaw"], "thaw hooks in reverse")
t.eq(req('{"execute":"guest-fsfreeze-status"}'), {"return": "thawed"}, "status thawed")
t.ok(not os.path.exists(os.path.join(rig.state, "state")), "state file removed after thaw")

# --- freeze-list: exact match, only what was named
r = req({"execute": "guest-fsfreeze-freeze-list",
         "arguments": {"mountpoints": [xfs.mount_point, "/no/such", xfs.mount_point + "/"]}})
t.eq(r, {"return": 1}, "freeze-list: one match")
t.eq(rig.frozen(), [False, True, False], "only xfs frozen")
t.eq(req('{"execute":"guest-fsfreeze-thaw"}'), {"return": 1}, "thaw 1")
rig.records()

# --- a failing hook at each position, with its undo
for pos, name in enumerate(["10-a", "20-b", "30-c"]):
    d = 0 if name != "20-b" else 1
    rig.hook(d, name, "[ \"$1\" = freeze ] && exit 7; exit 0")
    r = req('{"execute":"guest-fsfreeze-freeze"}')
    desc = r.get("error", {}).get("desc", "")
    t.ok(desc.startswith("fsfreeze hook has failed with status 7") and name in desc,
         "hook %s failing: error names it and its status (%s)" % (name, desc))
    want = ["10-a freeze", "20-b freeze", "30-c freeze"][:pos + 1]
    want += ["%s thaw undo" % n for n in reversed(["10-a", "20-b", "30-c"][:pos])]
    t.eq(rig.records(), want, "hook %s failing: exactly the completed hooks undone" % name)
    t.eq(rig.frozen(), [False, False, False], "hook %s failing: nothing frozen" % name)
    rig.hook(d, name)
t.eq(req('{"execute":"guest-fsfreeze-status"}'), {"return": "thawed"}, "thawed after the failures")

# --- a hook that ignores SIGTERM past its timeout (2 s, then 1 s grace)
rig.hook(1, "20-b", "trap '' TERM; [ \"$1\" = freeze ] && sleep 30; exit 0")
t0 = time.monotonic()
a.send('{"execute":"guest-fsfreeze-freeze"}\n{"execute":"guest-ping","id":"queued"}\n')
got = a.replies(2, timeout=20)
elapsed = time.monotonic() - t0
t.ok(len(got) == 2 and "timed out" in got[0][1].get("error", {}).get("desc", ""),
     "a hook past its timeout fails the freeze (%r)" % (got[:1],))
t.ok(len(got) == 2 and got[1][1] == {"return": {}, "id": "queued"},
     "a ping queued behind the slow freeze is answered after it, in order")
t.ok(2.5 < elapsed < 10, "SIGKILL after the grace (%.1f s)" % elapsed)
t.eq(rig.records(), ["10-a freeze", "20-b freeze", "10-a thaw undo"],
     "the timed-out hook is undone up to what completed")
t.eq(rig.frozen(), [False, False, False], "nothing frozen after the timeout")
rig.hook(1, "20-b")

# --- a hook that leaves a daemon holding its stdout
pidfile = os.path.join(rig.dir, "daemon.pid")
rig.hook(0, "10-a", "if [ \"$1\" = freeze ]; then sleep 60 & echo $! > %s; fi; exit 0" % pidfile)
t0 = time.monotonic()
r = req('{"execute":"guest-fsfreeze-freeze"}')
t.eq(r, {"return": 3}, "a hook that leaves a background process does not stall the freeze")
t.ok(time.monotonic() - t0 < 5, "promptly")
with open(pidfile) as f:
    dpid = int(f.read())
try:
    os.kill(dpid, 0)
    alive = True
except OSError:
    alive = False
t.ok(alive, "and its background process was left alone")
t.eq(req('{"execute":"guest-fsfreeze-thaw"}'), {"return": 3}, "thaw")
os.kill(dpid, 9)
rig.hook(0, "10-a")
rig.records()

# --- refused hooks
p = rig.hook(1, "25-groupw")
os.chmod(p, 0o775)
r = req('{"execute":"guest-fsfreeze-freeze"}')
desc = r.get("error", {}).get("desc", "")
t.ok("25-groupw" in desc and "refused" in desc, "a group-writable hook is refused: %s" % desc)
t.eq(rig.records(), [], "no hook ran")
t.eq(rig.frozen(), [False, False, False], "nothing frozen")
os.unlink(p)

# --- someone else froze xfs: not counted, not thawed by us
os.close(os.open(xfs.mount_point, os.O_RDONLY))
fd = os.open(xfs.mount_point, os.O_RDONLY)
import fcntl
fcntl.ioctl(fd, loopfs.FIFREEZE, 0)
r = req('{"execute":"guest-fsfreeze-freeze"}')
t.eq(r, {"return": 2}, "a filesystem frozen by someone else is not counted")
t.eq(req('{"execute":"guest-fsfreeze-thaw"}'), {"return": 2}, "thaw returns ours only")
t.eq(rig.frozen(), [False, True, False], "the foreign freeze is still in place")
fcntl.ioctl(fd, loopfs.FITHAW, 0)
os.close(fd)
rig.records()

# --- all targets busy: 0 frozen, and the thaw hooks still run before the reply
fds = []
for f in rig.fs:
    fds.append(os.open(f.mount_point, os.O_RDONLY))
    fcntl.ioctl(fds[-1], loopfs.FIFREEZE, 0)
r = req('{"execute":"guest-fsfreeze-freeze"}')
t.eq(r, {"return": 0}, "all frozen by someone else: 0")
t.eq(rig.records(), ["10-a freeze", "20-b freeze", "30-c freeze",
                     "30-c thaw undo", "20-b thaw undo", "10-a thaw undo"],
     "0 frozen: the thaw hooks ran before the reply")
t.eq(req('{"execute":"guest-fsfreeze-status"}'), {"return": "thawed"}, "and thawed")
for fd in fds:
    fcntl.ioctl(fd, loopfs.FITHAW, 0)
    os.close(fd)

# --- over-mounted mount point: tmpfs over xfs
subprocess.run(["mount", "-t", "tmpfs", "none", xfs.mount_point], check=True)
r = req({"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": [xfs.mount_point]}})
t.eq(r, {"return": 0}, "freeze-list of an over-mounted xfs: 0 (tmpfs is not a candidate)")
t.eq(rig.frozen(), [False, False, False], "the xfs below is not frozen by accident")
subprocess.run(["umount", xfs.mount_point], check=True)
rig.records()

t.eq(a.stop(), 0, "SIGTERM: exit 0")

# --- exclusions
a = rig.start(extra="exclude = %s\nexclude_type = btrfs\n" % xfs.mount_point)
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 1},
     "exclude and exclude_type leave only ext4")
t.eq(rig.frozen(), [True, False, False], "only ext4 frozen")
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}', 20), {"return": 1}, "thaw 1")
t.eq(a.stop(), 0, "exit 0")

# --- --check: what a freeze would freeze and run, without freezing
p = subprocess.run([a.binary, "-c", a.conf, "--check"], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, env=dict(os.environ, **rig.env()), timeout=30)
out = p.stdout.decode()
t.eq(p.returncode, 0, "--check exits 0 for a good configuration")
planned = [l.split()[1] for l in out.splitlines() if l.startswith("  freeze ")]
t.eq(planned, [ext4.mount_point],
     "--check lists the filesystems a freeze would freeze (xfs, btrfs excluded)")
skipped = {l.split()[1]: l for l in out.splitlines() if l.startswith("  skip ")}
t.ok(xfs.mount_point in skipped and btrfs.mount_point in skipped,
     "--check lists the excluded ones as skipped")
t.ok(any(l.startswith("  skip ") and l.split()[1] == "/" for l in out.splitlines()),
     "--check lists / as skipped, with its reason")
t.eq([l.split()[1] for l in out.splitlines() if l.startswith("  run ")],
     [os.path.join(rig.hookdirs[0], "10-a"), os.path.join(rig.hookdirs[1], "20-b"),
      os.path.join(rig.hookdirs[0], "30-c")], "--check lists the hooks in run order")
t.ok("05-skipped.sample" in out, "--check names the skipped sample")
t.eq(rig.frozen(), [False, False, False], "--check froze nothing")
p = rig.hook(1, "40-worldw")
os.chmod(p, 0o757)
r = subprocess.run([a.binary, "-c", a.conf, "--check"], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, timeout=30)
t.ok(r.returncode != 0 and "REFUSED" in r.stdout.decode() and "40-worldw" in r.stdout.decode(),
     "--check fails and names a refused hook")
os.unlink(p)

# --- SIGHUP reloads; a bad file keeps the old configuration
a = rig.start(args=["-v"])
with open(a.conf, "a") as f:
    f.write("exclude = %s\n" % ext4.mount_point)
a.proc.send_signal(1)
time.sleep(0.5)
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2},
     "SIGHUP: the new exclude applies")
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}', 20), {"return": 2}, "thaw 2")
with open(a.conf, "a") as f:
    f.write("no_such_key = 1\n")
a.proc.send_signal(1)
time.sleep(0.5)
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2},
     "SIGHUP with a bad file: the old configuration stays")
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}', 20), {"return": 2}, "thaw 2")
t.ok(re.search(r"agent\.conf:\d+: .*no_such_key", a.stderr()) is not None,
     "the bad line is reported with its file and line")
t.eq(a.stop(), 0, "exit 0")
rig.records()

# --- the guard saw FIFREEZE only on our devices
with open(rig.guardlog) as f:
    devs = {l.split()[2] for l in f if " FIFREEZE " in l}
t.ok(devs <= {fs.dev for fs in rig.fs}, "FIFREEZE only ever reached the test's devices")
t.done()
