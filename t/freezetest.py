# SPDX-License-Identifier: ISC
"""A frozen-filesystem fixture for the root-only integration tests.

Rig(t) makes a private directory with loop filesystems, two hook
directories, a record file the hooks append to, and a configuration that
restricts the agent to the rig's own mounts ([freeze] include) and runs it
under t/fsguard.so, which refuses FIFREEZE on any other device. Everything
is thawed and unmounted at the end, on failure too.
"""

import os
import shutil
import stat
import tempfile

import loopfs
from agenttest import Agent


class Rig:
    def __init__(self, t, fstypes=("ext4",), extra_conf="", hooks=True):
        ok, why = loopfs.can_loop(fstypes)
        if not ok:
            t.skip_all(why)
        if not os.path.exists(loopfs.guard_path()):
            t.skip_all("t/fsguard.so is not built")
        self.t = t
        self.dir = tempfile.mkdtemp(prefix="fsfa-freeze-")
        os.chmod(self.dir, 0o700)
        t.cleanup(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        t.cleanup(loopfs.cleanup_all)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt, 0o755)
        self.fs = [loopfs.LoopFS(self.mnt, ft, name="%s%d" % (ft, i))
                   for i, ft in enumerate(fstypes)]
        self.hookdirs = [os.path.join(self.dir, "hooks1"),
                         os.path.join(self.dir, "hooks2")]
        for d in self.hookdirs:
            os.mkdir(d, 0o755)
        self.record = os.path.join(self.dir, "record")
        self.state = os.path.join(self.dir, "state")
        self.guardlog = os.path.join(self.dir, "guard.log")
        self.extra_conf = extra_conf
        self.agent = None

    def conf(self, extra=""):
        return ("[agent]\nstate_dir = %s\n"
                "[hooks]\ndir = %s\ndir = %s\ntimeout = 2s\nkill_grace = 1s\n"
                "[freeze]\ninclude = %s/*\n%s%s" %
                (self.state, self.hookdirs[0], self.hookdirs[1], self.mnt,
                 self.extra_conf, extra))

    def hook(self, d, name, body="exit 0", mode=0o755):
        """A hook that records 'name phase' and then runs body."""
        path = os.path.join(self.hookdirs[d], name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho \"%s $1 ${FSFREEZE_UNDO:+undo}\" >> %s\n%s\n"
                    % (name, self.record, body))
        os.chmod(path, mode)
        return path

    def clear_hooks(self):
        for d in self.hookdirs:
            for n in os.listdir(d):
                os.unlink(os.path.join(d, n))

    def records(self):
        try:
            with open(self.record) as f:
                lines = [l.split() for l in f.read().splitlines()]
        except FileNotFoundError:
            return []
        os.unlink(self.record)
        return [" ".join(l) for l in lines]

    def env(self):
        return loopfs.guard_env([f.dev for f in self.fs], log=self.guardlog)

    def start(self, extra="", args=(), env=None):
        e = self.env()
        if env:
            e.update(env)
        self.agent = Agent(conf=self.conf(extra), args=args, env=e)
        self.t.cleanup(self.agent.cleanup)
        return self.agent

    def frozen(self):
        return [f.is_frozen() for f in self.fs]
