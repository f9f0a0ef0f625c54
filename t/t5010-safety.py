#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""Never leave a guest frozen, never block while frozen.

Root only, on the test's own loop filesystems (see freezetest.Rig):
logging to a /dev/log nobody reads, auto-thaw, SIGKILL and adoption,
SIGTERM while frozen and while a freeze hook runs, and --thaw.
"""

import os
import re
import signal
import socket
import subprocess
import time

from agenttest import TAP, Agent
from freezetest import Rig

t = TAP()
rig = Rig(t, fstypes=("ext4", "ext4"))
rig.hook(0, "10-a")
rig.hook(1, "20-b")
statefile = os.path.join(rig.state, "state")


def wait_gone(path, timeout=10):
    """The state file goes after the last thaw hook: wait for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(path):
        time.sleep(0.05)
    return not os.path.exists(path)


# --- a /dev/log that nobody reads: the freeze cycle still completes
logsock = os.path.join(rig.dir, "log.sock")
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
log.bind(logsock)
t.cleanup(log.close)
a = rig.start(env={"FSFREEZE_AGENT_LOG_SOCKET": logsock})
t0 = time.time()
a.send('{"execute":"guest-fsfreeze-freeze"}\n')
r = a.replies(1, timeout=20)
t.eq([x[1] for x in r], [{"return": 2}], "freeze completes while /dev/log is not read")
time.sleep(1.2)
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}', 20), {"return": 2},
     "thaw completes too")
t.eq(rig.frozen(), [False, False], "thawed")
lines = []
log.settimeout(1.0)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        lines.append(log.recv(4096).decode(errors="replace"))
    except socket.timeout:
        break
frozen_lines = [l for l in lines if "frozen in" in l]
t.ok(len(frozen_lines) >= 2, "the lines held while frozen arrive afterwards (%d lines)" % len(lines))
stamp = re.compile(r"^<\d+>(\w{3} [ \d]\d \d\d:\d\d:\d\d) ")
m = stamp.match(frozen_lines[0]) if frozen_lines else None
if m:
    logged = time.strptime(time.strftime("%Y ") + m.group(1), "%Y %b %d %H:%M:%S")
    t.ok(abs(time.mktime(logged) - t0) < 1.5,
         "with their original timestamps (%s, freeze at %s)" % (m.group(1), time.strftime("%H:%M:%S", time.localtime(t0))))
else:
    t.ok(False, "held lines carry a syslog timestamp: %r" % frozen_lines[:1])
t.ok(any("ident" in l or "fsfreeze-agent[" in l for l in lines), "ident fsfreeze-agent")
t.eq(a.stop(), 0, "exit 0")
rig.records()

# --- auto-thaw at the deadline; the next thaw reports it
a = rig.start(extra="max_frozen = 2s\n")
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2}, "frozen")
t.eq(rig.frozen(), [True, True], "kernel: frozen")
time.sleep(2.5)
t.ok(wait_gone(statefile), "auto-thaw finished")
t.eq(rig.frozen(), [False, False], "auto-thaw at max_frozen thawed them")
t.eq(rig.records(), ["10-a freeze", "20-b freeze", "20-b thaw", "10-a thaw"],
     "and ran the thaw hooks in reverse")
t.eq(a.request('{"execute":"guest-fsfreeze-status"}'), {"return": "thawed"}, "status thawed")
r = a.request('{"execute":"guest-fsfreeze-thaw"}')
desc = r.get("error", {}).get("desc", "")
t.ok("thawed itself" in desc and "consistent" in desc,
     "the next thaw says the guest thawed itself: %s" % desc)
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}'), {"return": 0}, "once")
rep = a.request('{"execute":"__io.github.fsfreeze-agent_report"}')["return"]
t.ok(rep["last"]["auto_thawed"] is True, "the report says it auto-thawed")
t.eq(a.stop(), 0, "exit 0")

# --- SIGKILL while frozen; a restarted agent adopts the state
a = rig.start(extra="max_frozen = 60s\n")
t.eq(a.request({"execute": "guest-fsfreeze-freeze-list",
                "arguments": {"mountpoints": [rig.fs[0].mount_point]}}, 20),
     {"return": 1}, "freeze-list: one of two")
t.ok(os.path.exists(statefile), "the state file exists while frozen")
a.stop(signal.SIGKILL)
t.eq(rig.frozen(), [True, False], "SIGKILL leaves it frozen")
rig.records()
a = rig.start(extra="max_frozen = 60s\n")
t.eq(a.request('{"execute":"guest-fsfreeze-status"}'), {"return": "frozen"},
     "the restarted agent says frozen")
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}')["error"]["class"], "CommandNotFound",
     "only the allow-list is enabled")
t.eq(a.request('{"execute":"guest-fsfreeze-thaw"}', 20), {"return": 1},
     "thaw thaws exactly the recorded set")
t.eq(rig.frozen(), [False, False], "thawed")
t.eq(rig.records(), ["20-b thaw", "10-a thaw"], "the recorded hooks got their thaw")
t.ok(not os.path.exists(statefile), "state file removed")
t.eq(a.stop(), 0, "exit 0")

# --- restart after the deadline: thaws at once
a = rig.start(extra="max_frozen = 1s\n")
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2}, "frozen")
a.stop(signal.SIGKILL)
time.sleep(1.5)
t.eq(rig.frozen(), [True, True], "still frozen after SIGKILL, past the deadline")
rig.records()
a = rig.start(extra="max_frozen = 1s\n")
deadline = time.monotonic() + 5
while time.monotonic() < deadline and any(rig.frozen()):
    time.sleep(0.1)
t.eq(rig.frozen(), [False, False], "the restarted agent thaws at once")
t.ok(wait_gone(statefile), "and finishes its thaw")
t.eq(rig.records(), ["20-b thaw", "10-a thaw"], "and runs the owed thaw hooks")
t.ok("thawed itself" in a.request('{"execute":"guest-fsfreeze-thaw"}').get("error", {}).get("desc", ""),
     "and tells the host at its thaw")
t.eq(a.stop(), 0, "exit 0")

# --- SIGTERM while frozen: thaw, hooks, exit 0
a = rig.start()
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2}, "frozen")
rig.records()
t.eq(a.stop(signal.SIGTERM), 0, "SIGTERM while frozen: exit 0")
t.eq(rig.frozen(), [False, False], "everything thawed")
t.eq(rig.records(), ["20-b thaw", "10-a thaw"], "thaw hooks ran")
t.ok(not os.path.exists(statefile), "no state file left")

# --- SIGTERM while a freeze hook runs: the freeze is undone, exit 0
rig.hook(1, "20-b", "[ \"$1\" = freeze ] && sleep 1; exit 0")
a = rig.start()
a.send('{"execute":"guest-fsfreeze-freeze"}\n')
time.sleep(0.5)
t.eq(a.stop(signal.SIGTERM), 0, "SIGTERM during a freeze hook: exit 0")
t.eq(rig.frozen(), [False, False], "nothing frozen")
t.eq(rig.records(), ["10-a freeze", "20-b freeze", "20-b thaw undo", "10-a thaw undo"],
     "the hooks that froze were undone")
rig.hook(1, "20-b")

# --- --thaw with no agent running
a = rig.start()
t.eq(a.request('{"execute":"guest-fsfreeze-freeze"}', 20), {"return": 2}, "frozen")
a.stop(signal.SIGKILL)
rig.records()
p = subprocess.run([a.binary, "-c", a.conf, "--thaw"], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, env=dict(os.environ, **rig.env()), timeout=30)
out = p.stdout.decode()
t.eq(p.returncode, 0, "--thaw exits 0")
t.ok("2 filesystems thawed" in out, "--thaw says what it did: %r" % out)
t.eq(rig.frozen(), [False, False], "--thaw thawed them")
t.eq(rig.records(), ["20-b thaw", "10-a thaw"], "--thaw ran the owed thaw hooks")
p = subprocess.run([a.binary, "-c", a.conf, "--thaw"], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT, timeout=30)
t.ok(p.returncode == 0 and "nothing to thaw" in p.stdout.decode(),
     "--thaw again: nothing to thaw")
t.done()
