# SPDX-License-Identifier: ISC
"""Loop filesystems for the root-only integration tests.

    ok, why = can_loop()            # False and a reason: skip_all(why)
    fs = LoopFS(tmpdir, "ext4")     # image, mkfs, mount -o loop
    fs.mount_point, fs.dev          # "MAJ:MIN" of the mount's st_dev
    fs.is_frozen()                  # FIFREEZE probe, never a write
    fs.thaw_all(); fs.cleanup()     # FITHAW until EINVAL; umount, rm
    env.update(guard_env([fs.dev])) # run the agent under t/fsguard.so

Frozen state is probed with FIFREEZE: EBUSY means frozen; success means it
was not, and it is thawed again at once. Every LoopFS registers itself so
cleanup_all() (also run at exit and on SIGTERM/SIGINT) thaws and unmounts
whatever is left, newest first. Only the standard library is used.
"""

import atexit
import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878

# Sizes below which mkfs refuses (sparse images: they cost nothing).
MIN_MB = {"ext4": 16, "ext2": 16, "xfs": 300, "btrfs": 128}

MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-E",
             "lazy_itable_init=0,lazy_journal_init=0"],
    "ext2": ["mkfs.ext2", "-q", "-F"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
}

_live = []


def _which(prog):
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        p = os.path.join(d, prog)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(prog)


def can_loop(fstypes=("ext4",)):
    """(True, "") when loop filesystems of these types can be made here."""
    if os.geteuid() != 0:
        return False, "needs root (loop mounts, FIFREEZE)"
    if not os.access("/dev/loop-control", os.W_OK):
        return False, "no /dev/loop-control"
    for prog in ["mount", "umount", "truncate"] + \
            [MKFS[t][0] for t in fstypes]:
        if _which(prog) is None:
            return False, "needs %s" % prog
    return True, ""


def devstr(st_dev):
    return "%d:%d" % (os.major(st_dev), os.minor(st_dev))


def _ioctl(fd, req):
    """0, or the errno."""
    try:
        fcntl.ioctl(fd, req, 0)
        return 0
    except OSError as e:
        return e.errno


class LoopFS:
    """A filesystem on a sparse image in tmpdir, mounted with -o loop.

    dev is the st_dev of the mount point, which is what FIFREEZE on an fd
    opened there acts on and what t/fsguard.so checks (for btrfs that is
    the subvolume's anonymous device, not the loop device).
    """

    def __init__(self, tmpdir, fstype="ext4", size_mb=64, name=None,
                 imgdir=None):
        if fstype not in MKFS:
            raise ValueError("unsupported fstype %r" % fstype)
        self.fstype = fstype
        name = name or "%s%d" % (fstype, len(_live))
        self.image = os.path.join(imgdir or tmpdir, name + ".img")
        self.mount_point = os.path.join(tmpdir, name)
        self.mounted = False
        self.fd = -1
        # Registered first: a failing mkfs or mount still gets cleaned up.
        _live.append(self)
        size_mb = max(size_mb, MIN_MB.get(fstype, 16))
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        _run(MKFS[fstype] + [self.image])
        os.makedirs(self.mount_point, exist_ok=True)
        _run(["mount", "-o", "loop", self.image, self.mount_point])
        self.mounted = True
        # Kept open: probes and thaws work even when something is
        # mounted over the mount point later.
        self.fd = os.open(self.mount_point, os.O_RDONLY | os.O_DIRECTORY |
                          os.O_CLOEXEC)
        self.dev = devstr(os.fstat(self.fd).st_dev)

    def is_frozen(self):
        """FIFREEZE probe: EBUSY -> True; success -> thaw back, False."""
        e = _ioctl(self.fd, FIFREEZE)
        if e == 0:
            e = _ioctl(self.fd, FITHAW)
            if e != 0:
                raise OSError(e, "probe could not thaw %s" %
                              self.mount_point)
            return False
        if e == errno.EBUSY:
            return True
        raise OSError(e, "FIFREEZE probe of %s" % self.mount_point)

    def thaw_all(self):
        """FITHAW until EINVAL (never blocks); the number of thaws."""
        n = 0
        while self.fd >= 0 and n < 64 and _ioctl(self.fd, FITHAW) == 0:
            n += 1
        return n

    def cleanup(self):
        """Thaw, unmount (the loop device autoclears), remove the image."""
        self.thaw_all()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.mounted:
            _umount(self.mount_point)
            self.mounted = False
        for p in (self.image,):
            try:
                os.unlink(p)
            except OSError:
                pass
        try:
            os.rmdir(self.mount_point)
        except OSError:
            pass
        if self in _live:
            _live.remove(self)


def _run(argv):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" %
                           (" ".join(argv), r.returncode,
                            r.stdout.decode(errors="replace")))


def _umount(path):
    # A loop device below another one is released asynchronously.
    for _ in range(300):
        r = subprocess.run(["umount", path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if r.returncode == 0:
            return
        err = r.stderr.decode(errors="replace")
        if "not mounted" in err or "no mount point" in err:
            return
        if "busy" not in err:
            break
        time.sleep(0.01)
    subprocess.run(["umount", "-l", path], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cleanup_all():
    """Thaw every live LoopFS first, then unmount them newest first."""
    for fs in list(_live):
        try:
            fs.thaw_all()
        except OSError:
            pass
    for fs in reversed(list(_live)):
        try:
            fs.cleanup()
        except Exception as e:  # cleanup must go on
            sys.stderr.write("loopfs cleanup %s: %r\n" % (fs.mount_point, e))


def _on_signal(sig, frame):
    cleanup_all()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)


atexit.register(cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    if signal.getsignal(_sig) in (signal.SIG_DFL, signal.default_int_handler):
        signal.signal(_sig, _on_signal)


def guard_path():
    top = os.environ.get("top_builddir") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..")
    return os.path.join(top, "t", "fsguard.so")


def guard_env(devs, log=None):
    """Environment for a process run under t/fsguard.so: FIFREEZE only
    on devs ("MAJ:MIN" strings, e.g. LoopFS.dev); log, if given, records
    every FIFREEZE/FITHAW/syncfs as "PID OP MAJ:MIN RC ERRNO"."""
    so = guard_path()
    if not os.path.exists(so):
        raise RuntimeError("%s is not built (make check builds it)" % so)
    pre = os.environ.get("LD_PRELOAD", "")
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {
        "LD_PRELOAD": so + (":" + pre if pre else ""),
        "FSFREEZE_GUARD_DEVS": ",".join(devs),
        # An ASan build would refuse a preload ahead of its runtime.
        "ASAN_OPTIONS": (asan + ":" if asan else "") +
        "verify_asan_link_order=0",
    }
    if log is not None:
        env["FSFREEZE_GUARD_LOG"] = log
    return env
