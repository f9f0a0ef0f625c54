# SPDX-License-Identifier: ISC
"""t/loopfs.py and t/fsguard.so themselves: probe, thaw, guard, cleanup."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agenttest import TAP  # noqa: E402
import loopfs  # noqa: E402

ok, why = loopfs.can_loop(("ext4",))
if not ok:
    TAP.skip_all(why)

t = TAP()
tmp = tempfile.mkdtemp(prefix="t4030.")
t.cleanup(lambda: os.rmdir(tmp) if os.path.isdir(tmp) else None)
t.cleanup(loopfs.cleanup_all)

a = loopfs.LoopFS(tmp, "ext4", name="a")
b = loopfs.LoopFS(tmp, "ext4", name="b")
t.ok(os.path.ismount(a.mount_point), "LoopFS mounts")
st = os.stat(a.mount_point)
t.eq(a.dev, "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev)),
     "dev is the mount's st_dev")
t.ok(a.dev != b.dev, "two filesystems, two devices")
t.eq(a.is_frozen(), False, "fresh: not frozen")
t.eq(a.is_frozen(), False, "the probe thawed what it froze")

fd = os.open(a.mount_point, os.O_RDONLY | os.O_DIRECTORY)
t.eq(loopfs._ioctl(fd, loopfs.FIFREEZE), 0, "FIFREEZE")
t.eq(loopfs._ioctl(fd, loopfs.FIFREEZE), 16, "again: EBUSY")
t.eq(a.is_frozen(), True, "probe: frozen")
t.eq(b.is_frozen(), False, "the other one is not")
t.eq(a.thaw_all(), 1, "thaw_all: one FITHAW")
t.eq(a.is_frozen(), False, "thawed")
os.close(fd)

# The guard, in a child process: FIFREEZE only on the allowed device.
child = r"""
import fcntl, os, sys
ok = []
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, 0xC0045877, 0)
        fcntl.ioctl(fd, 0xC0045878, 0)
        ok.append("0")
    except OSError as e:
        ok.append(str(e.errno))
    os.close(fd)
print(" ".join(ok))
"""
log = os.path.join(tmp, "guard.log")
env = dict(os.environ)
env.update(loopfs.guard_env([b.dev], log=log))
r = subprocess.run([sys.executable, "-c", child, a.mount_point,
                    b.mount_point], env=env, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
t.eq(r.stdout.decode().split(), ["1", "0"],
     "guard: EPERM on a, allowed on b")
t.ok(b"fsguard: refused FIFREEZE on device " + a.dev.encode() in r.stderr,
     "and says so on stderr")
with open(log) as f:
    ops = [ln.split()[1:3] for ln in f]
t.eq(ops, [["FIFREEZE-refused", a.dev], ["FIFREEZE-begin", b.dev],
           ["FIFREEZE", b.dev], ["FITHAW", b.dev]], "guard log")
os.unlink(log)
t.eq(a.is_frozen() or b.is_frozen(), False, "neither left frozen")

env = dict(os.environ)
env.update(loopfs.guard_env([]))
r = subprocess.run([sys.executable, "-c", child, b.mount_point], env=env,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
t.eq(r.stdout.decode().split(), ["1"], "empty allow list: all refused")

mp = a.mount_point
fd = os.open(mp, os.O_RDONLY | os.O_DIRECTORY)
loopfs._ioctl(fd, loopfs.FIFREEZE)
loopfs._ioctl(fd, loopfs.FIFREEZE)
os.close(fd)
a.cleanup()
t.ok(not os.path.ismount(mp) and not os.path.exists(a.image),
     "cleanup of a frozen one: thawed, unmounted, removed")
b.cleanup()
t.ok(not loopfs._live, "nothing left registered")
t.done()
